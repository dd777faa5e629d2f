"""Per-class precision/recall of the router's classifier on tests/router/eval, and Presidio's side by side.

    .venv/bin/python benchmarks/eval_classifier.py                # ours only
    .venv/bin/python benchmarks/eval_classifier.py --set fn-dev   # the false-negative kinds of issue 19
    bash benchmarks/setup-bench-venv.sh && .venv-bench/bin/python benchmarks/eval_classifier.py   # ours + Presidio

Scoring is per entity: a prediction is a true positive when it overlaps a labelled span of the same class.
Presidio runs with its default recognizers on a blank spaCy pipeline (no model download, as the router must run
offline); its types are mapped to ours, and its types with no counterpart here (DATE_TIME, URL, NRP, ...) are
ignored rather than counted as false positives. Classes Presidio has no recognizer for show as "-".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "router"))

from eval.dataset import load, load_fn_dev, load_fn_holdout, load_holdout, load_recall_holdout  # noqa: E402

from clawfleet.router.classifier import Classifier  # noqa: E402
from clawfleet.router.classifier.findings import SECRETS, STRUCTURED_PII, UNSTRUCTURED_PII  # noqa: E402

STRUCTURED = frozenset(STRUCTURED_PII) | frozenset(SECRETS)
PRESIDIO_MAP = {
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "credit_card", "IBAN_CODE": "iban",
    "US_SSN": "us_ssn", "UK_NINO": "uk_nino", "ES_NIF": "es_dni", "ES_NIE": "es_dni", "IN_AADHAAR": "in_aadhaar",
    "IT_FISCAL_CODE": "it_fiscal_code", "IP_ADDRESS": "ip_address", "PERSON": "person_name",
    "LOCATION": "street_address", "MEDICAL_LICENSE": "medical_record_number", "CA_SIN": "ca_sin",
}  # fmt: skip
PRESIDIO_SUPPORTED = frozenset(PRESIDIO_MAP.values())

Span = tuple[str, int, int]
SETS = {
    "dev": ("development (eval_set.jsonl + hard_cases.txt)", load),
    "holdout": ("held-out (holdout_cases.txt)", load_holdout),
    "fn-dev": ("false-negative kinds, development (fn_dev_cases.txt)", load_fn_dev),
    "fn-holdout": ("false-negative kinds, held-out (fnholdout_cases.txt)", load_fn_holdout),
    "recall-holdout": ("issue 18 kinds, held-out (recall_holdout_cases.txt)", load_recall_holdout),
}


def score(rows: list[dict], predict: Callable[[str], Iterable[Span]]) -> tuple[dict, float]:
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    t0 = time.perf_counter()
    for row in rows:
        gold = [(e["type"], e["start"], e["end"]) for e in row["entities"]]
        pred = list(predict(row["text"]))
        matched_gold: set[int] = set()
        for ptype, ps, pe in pred:
            hit = next((i for i, (gt, gs, ge) in enumerate(gold) if gt == ptype and ps < ge and gs < pe), None)
            if hit is None:
                stats[ptype][1] += 1
            else:
                if hit not in matched_gold:
                    stats[ptype][0] += 1
                matched_gold.add(hit)
        for i, (gt, _, _) in enumerate(gold):
            if i not in matched_gold:
                stats[gt][2] += 1
    return stats, time.perf_counter() - t0


def pr(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    return p, r


def fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def micro(stats: dict, classes: Iterable[str]) -> tuple[float | None, float | None, int]:
    tp = fp = fn = 0
    for c in classes:
        s = stats.get(c, [0, 0, 0])
        tp, fp, fn = tp + s[0], fp + s[1], fn + s[2]
    p, r = pr(tp, fp, fn)
    return p, r, tp + fn


def ours() -> Callable[[str], Iterable[Span]]:
    clf = Classifier()
    return lambda text: [(f.type, f.start, f.end) for f in clf.classify(text)]


def presidio() -> Callable[[str], Iterable[Span]] | None:
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError:
        return None

    class BlankSpacy(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    import tldextract
    from presidio_analyzer import predefined_recognizers as pr

    # offline: use tldextract's bundled public-suffix snapshot instead of fetching it (Presidio's e-mail check)
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

    engine = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    # Presidio registers some national-ID recognizers for their own languages only; give them English text too
    for cls in ("UkNinoRecognizer", "EsNifRecognizer", "EsNieRecognizer", "ItFiscalCodeRecognizer",
                "InAadhaarRecognizer", "CaSinRecognizer"):  # fmt: skip
        rec = getattr(pr, cls, None)
        if rec is not None and not any(
            type(r).__name__ == cls for r in analyzer.registry.get_recognizers("en", all_fields=True)
        ):
            analyzer.registry.add_recognizer(rec(supported_language="en"))

    def predict(text: str) -> list[Span]:
        out = []
        for r in analyzer.analyze(text=text, language="en"):
            mapped = PRESIDIO_MAP.get(r.entity_type)
            if mapped:
                out.append((mapped, r.start, r.end))
        return out

    return predict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-presidio", action="store_true")
    ap.add_argument("--holdout", action="store_true", help="same as --set holdout")
    ap.add_argument("--set", choices=sorted(SETS), default="dev", dest="which", help="which labelled set (default dev)")
    args = ap.parse_args()
    which = "holdout" if args.holdout else args.which
    label, loader = SETS[which]
    rows = loader()
    print("set:", label)
    n_ent = sum(len(r["entities"]) for r in rows)
    n_neg = sum(1 for r in rows if not r["entities"])
    print(f"evaluation set: {len(rows)} texts, {n_ent} labelled entities, {n_neg} texts without any")
    ours_stats, ours_s = score(rows, ours())
    systems = [("ours", ours_stats, ours_s)]
    pres = None if args.no_presidio else presidio()
    if pres is not None:
        pres(rows[0]["text"])  # warm-up
        p_stats, p_s = score(rows, pres)
        systems.append(("presidio", p_stats, p_s))
    else:
        print("(Presidio not importable here: run in .venv-bench for the side-by-side columns)")
    classes = sorted({c for _, st, _ in systems for c in st} | {e["type"] for r in rows for e in r["entities"]})
    head = f"{'class':<24}{'support':>8}"
    for name, _, _ in systems:
        head += f"  {name + ' P':>12}{name + ' R':>12}"
    print(head)
    print("-" * len(head))
    for c in classes:
        support = ours_stats.get(c, [0, 0, 0])[0] + ours_stats.get(c, [0, 0, 0])[2]
        line = f"{c:<24}{support:>8}"
        for name, st, _ in systems:
            if name == "presidio" and c not in PRESIDIO_SUPPORTED:
                line += f"  {'  -  ':>12}{'  -  ':>12}"
                continue
            p, r = pr(*st.get(c, [0, 0, 0]))
            line += f"  {fmt(p):>12}{fmt(r):>12}"
        print(line)
    print("-" * len(head))
    groups = [
        ("structured PII + secrets", STRUCTURED),
        ("  structured PII", frozenset(STRUCTURED_PII)),
        ("  secrets", frozenset(SECRETS)),
        ("unstructured (names, addresses, health)", frozenset(UNSTRUCTURED_PII)),
        ("classes Presidio supports", PRESIDIO_SUPPORTED),
    ]
    for label, cls in groups:
        line = f"{label:<40}"
        for name, st, _ in systems:
            p, r, support = micro(st, cls)
            line += f"  {name}: P {fmt(p)} R {fmt(r)} (n={support})"
        print(line)
    for name, _, secs in systems:
        print(f"{name}: {secs * 1000 / len(rows):.3f} ms per text on average ({secs:.2f} s total)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
