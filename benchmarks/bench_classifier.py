"""Classifier time against the classifier before issue 16's faster pass, in one run.

    .venv/bin/python benchmarks/bench_classifier.py [--json] [--repeats N] [--no-shapes]

The peer is ``benchmarks/classifier_before`` (a frozen copy of the classifier as of commit 056c3d2), run in
the same process on the same texts, alternately with the current one, so load on the machine hits both alike:
2 KB and 100 KB of the PII-dense evaluation text (every development-set text joined, repeated; ~1150 findings
at 100 KB), 2 KB and 100 KB of clean agent traffic (code, logs, prose), and the adversarial shapes of
tests/router/adversarial_inputs.py (one trigger per detector group x every filler, and the inputs the review
reported): all of them at 10 KB (their sum and the slowest), then the five slowest of the old classifier at
100 KB. CPU time (``time.process_time``), best of ``--repeats``. Printed: old ms, new ms, old/new. Both must
find the same entities (checked here too; tests/router/test_classifier_equivalence.py asserts it).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "router"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from adversarial_inputs import prose, shape_makers, triggers  # noqa: E402
from eval.dataset import load  # noqa: E402

import classifier_before  # noqa: E402
from clawfleet.router.classifier import Classifier  # noqa: E402

Classify = Callable[[str], list]  # type: ignore[type-arg]


def dense_text(size: int) -> str:
    """PII-dense text: the development set's texts joined and repeated (as benchmarks/bench_router.py)."""
    text = "\n".join(r["text"] for r in load())
    return (text * (size // len(text) + 1))[:size]


def clean_text(size: int) -> str:
    """Ordinary, non-sensitive agent traffic (code, logs, prose)."""
    return prose(size)


def pair_ms(old: Classify, new: Classify, text: str, repeats: int) -> tuple[float, float]:
    """Best CPU ms of each, measured alternately."""
    best_old = best_new = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        old(text)
        t1 = time.process_time()
        new(text)
        t2 = time.process_time()
        best_old, best_new = min(best_old, t1 - t0), min(best_new, t2 - t1)
    return best_old * 1000, best_new * 1000


def _spans(found: list) -> list[tuple[str, int, int, float]]:  # type: ignore[type-arg]
    return [(f.type, f.start, f.end, f.score) for f in found]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-shapes", action="store_true", help="skip the adversarial shapes (about a minute)")
    args = ap.parse_args()
    old, new = classifier_before.Classifier().classify, Classifier().classify
    rows: list[dict[str, object]] = []

    def row(label: str, text: str, repeats: int) -> None:
        old_found, new_found = old(text), new(text)
        if _spans(old_found) != _spans(new_found):
            raise SystemExit(f"{label}: the classifiers disagree")
        o, n = pair_ms(old, new, text, repeats)
        rows.append({"text": label, "findings": len(new_found), "old_ms": round(o, 3), "new_ms": round(n, 3),
                     "old_over_new": round(o / max(n, 1e-6), 2)})  # fmt: skip

    row("2 KB PII-dense", dense_text(2048), args.repeats * 5)
    row("2 KB clean", clean_text(2048), args.repeats * 5)
    row("100 KB PII-dense", dense_text(100 * 1024), args.repeats)
    row("100 KB clean", clean_text(100 * 1024), args.repeats)
    if not args.no_shapes:
        makers = shape_makers(triggers(one_per_group=True))
        per_shape = {label: pair_ms(old, new, make(10_000), 1) for label, make in makers}
        total_old = sum(o for o, _ in per_shape.values())
        total_new = sum(n for _, n in per_shape.values())
        rows.append({"text": f"{len(makers)} adversarial shapes at 10 KB, sum", "findings": None,
                     "old_ms": round(total_old, 1), "new_ms": round(total_new, 1),
                     "old_over_new": round(total_old / total_new, 2)})  # fmt: skip
        slowest = sorted(per_shape, key=lambda k: -per_shape[k][0])[:5]
        for label in slowest:
            make = dict(makers)[label]
            row(f"100 KB {label}", make(100_000), max(2, args.repeats // 3))
    result = {"python": platform.python_version(), "machine": platform.machine(), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"classifier, old (056c3d2) vs new, CPU ms, best of {args.repeats} (Python {platform.python_version()})")
    print(f"{'text':<64} {'findings':>8} {'old ms':>9} {'new ms':>9} {'old/new':>8}")
    for r in rows:
        found = "" if r["findings"] is None else r["findings"]
        print(f"{r['text']!s:<64.64} {found!s:>8} {r['old_ms']:>9} {r['new_ms']:>9} {r['old_over_new']:>8}")


if __name__ == "__main__":
    main()
