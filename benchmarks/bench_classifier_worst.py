"""Worst-case classifier time on adversarial inputs, against ordinary prose of the same size, in one run.

    .venv/bin/python benchmarks/bench_classifier_worst.py [--json] [--all-words]

Every adversarial shape (tests/router/adversarial_inputs.py: each detector's trigger followed by a long run of
spaces, digits, letters, dots, separators, escapes, and the trigger repeated; plus the inputs the review reported)
is classified at 10 KB and 100 KB. Printed per size: the slowest shape, its ms, ms per 100 KB, and prose of the
same size as the peer; then the worst 100KB/10KB ratio over all shapes (linear code: about 10, quadratic: 100).
CPU time (time.process_time), best of --repeats, so other load on the machine counts as little as possible.
By default one context word per detector group is used (a group's words share one tail pattern); --all-words
tries every registered word (about 5x longer).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "router"))

from adversarial_inputs import prose, shape_makers, triggers  # noqa: E402

from clawfleet.router.classifier import Classifier  # noqa: E402

SIZES = (10_000, 100_000)


def cpu_ms(clf: Classifier, text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        clf.classify(text)
        best = min(best, time.process_time() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--all-words", action="store_true", help="every registered context word, not one per group")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    clf = Classifier()
    makers = shape_makers(triggers(one_per_group=not args.all_words))
    per_shape: dict[str, dict[int, float]] = {}
    for label, make in makers:
        per_shape[label] = {size: cpu_ms(clf, make(size), args.repeats) for size in SIZES}
    result: dict[str, object] = {"python": platform.python_version(), "shapes": len(makers), "sizes": {}}
    for size in SIZES:
        worst = max(per_shape, key=lambda k: per_shape[k][size])
        peer = cpu_ms(clf, prose(size), max(3, args.repeats))
        result["sizes"][size] = {  # type: ignore[index]
            "worst_shape": worst,
            "worst_ms": round(per_shape[worst][size], 2),
            "worst_ms_per_100kb": round(per_shape[worst][size] * 100_000 / size, 2),
            "prose_ms": round(peer, 2),
            "worst_vs_prose": round(per_shape[worst][size] / peer, 1),
        }
    ratios = {k: v[SIZES[1]] / max(v[SIZES[0]], 1e-3) for k, v in per_shape.items()}
    worst_ratio = max(ratios, key=ratios.__getitem__)
    result["worst_ratio"] = {"shape": worst_ratio, "ratio_100kb_over_10kb": round(ratios[worst_ratio], 1)}
    result["median_ratio"] = round(sorted(ratios.values())[len(ratios) // 2], 1)
    slowest = sorted(per_shape, key=lambda k: -per_shape[k][SIZES[1]])[:5]
    result["slowest_at_100kb"] = [(k, round(per_shape[k][SIZES[1]], 1)) for k in slowest]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"classifier worst case over {len(makers)} adversarial shapes (Python {platform.python_version()}, CPU ms)")
    print(f"{'size':>8} {'worst ms':>10} {'ms/100KB':>10} {'prose ms':>10} {'x prose':>8}  worst shape")
    for size, row in result["sizes"].items():  # type: ignore[attr-defined]
        print(
            f"{size:>8} {row['worst_ms']:>10} {row['worst_ms_per_100kb']:>10} {row['prose_ms']:>10} "
            f"{row['worst_vs_prose']:>8}  {row['worst_shape']}"
        )
    wr: dict[str, object] = result["worst_ratio"]  # type: ignore[assignment]
    slow: list[tuple[str, float]] = result["slowest_at_100kb"]  # type: ignore[assignment]
    median = result["median_ratio"]
    print(f"100KB/10KB time ratio: worst {wr['ratio_100kb_over_10kb']} ({wr['shape']}), median {median}")
    print("slowest shapes at 100 KB:", "; ".join(f"{k}: {v} ms" for k, v in slow))


if __name__ == "__main__":
    main()
