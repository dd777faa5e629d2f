"""The classifier's work grows linearly with its input, even on inputs built to make regexes backtrack.

A request of 1 KB used to freeze the router for seconds ("icd10" + 1,000 spaces + "!", issue 19): nested or
adjacent unbounded quantifiers over overlapping classes let the regex engine try every split of a long run.
These tests do not assert a duration. They compare the time of the same adversarial shape at two sizes: linear
code takes about size-ratio times longer, quadratic code size-ratio squared. The measurements run in a child
process so that a catastrophic case on broken code fails after a deadline instead of hanging the suite.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

import pytest

from clawfleet.router.classifier import Classifier

from .adversarial_inputs import KNOWN_BAD, shape_makers, triggers

# the work on the big input may be at most this many times the work on the small one; linear is SCALE,
# quadratic SCALE**2: the threshold sits far from both so a noisy shared machine cannot flip the verdict
SCALE = 8
MAX_RATIO = 20
DEADLINE_S = 300  # a completion guard for broken (cubic) code, never reached by linear code


def _cpu(clf: Classifier, text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        clf.classify(text)
        best = min(best, time.process_time() - t0)
    return max(best, 1e-6)


def _ratios(cases: list[tuple[str, Callable[[int], str]]], small: int, conn) -> None:  # type: ignore[no-untyped-def]
    """In the child: (label, big/small CPU-time ratio) per case; suspects are measured again, min of 3."""
    clf = Classifier()
    out = []
    for label, make in cases:
        a, b = make(small), make(small * SCALE)
        ratio = _cpu(clf, b, 1) / _cpu(clf, a, 1)
        if ratio > MAX_RATIO:
            ratio = _cpu(clf, b, 3) / _cpu(clf, a, 3)
        out.append((label, ratio))
    conn.send(out)


def _measure(cases: list[tuple[str, Callable[[int], str]]], small: int) -> list[tuple[str, float]]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_ratios, args=(cases, small, child))
    proc.start()
    try:
        if not parent.poll(DEADLINE_S):
            pytest.fail(f"classifying {len(cases)} adversarial inputs did not finish in {DEADLINE_S} s: super-linear")
        return parent.recv()
    finally:
        proc.kill()
        proc.join()


def test_reported_inputs_scale_linearly_from_10_to_80kb() -> None:
    """Each input the review reported (ICD-10, MRN, name cue, assignment, PEM tails; repeated JWT starts)."""
    results = _measure(list(KNOWN_BAD.items()), 10_000)
    bad = [(label, round(r, 1)) for label, r in results if r > MAX_RATIO]
    assert not bad, f"work grows faster than linearly (x{SCALE} input -> xratio work): {bad}"
    assert len(results) == len(KNOWN_BAD)


def test_every_trigger_with_every_filler_scales_linearly() -> None:
    """Every detector's trigger followed by a long run of spaces, digits, letters, dots or separators and a
    failing tail, and the trigger repeated: the shapes that make backtracking regexes blow up."""
    cases = shape_makers(triggers(one_per_group=True))
    results = _measure(cases, 1_000)
    bad = [(label, round(r, 1)) for label, r in results if r > MAX_RATIO]
    assert not bad, f"work grows faster than linearly (x{SCALE} input -> xratio work): {bad}"
    assert len(results) == len(cases) > 1000


def test_the_linear_rewrites_still_find_what_they_found() -> None:
    """The bounded tails keep matching the ordinary spacing they were written for."""
    clf = Classifier()
    cases = {
        "ICD-10 code: F32.1 noted": ("health_info", "f32.1"),
        "MRN:   0012345 on file": ("medical_record_number", "0012345"),
        "Patient name:  Maria Lopez": ("person_name", "Maria Lopez"),
        'API_TOKEN = "a8F3kQ9zLm2Xw7Pq4R"': ("generic_secret", "a8F3kQ9zLm2Xw7Pq4R"),
        "password:  Tr0ub4dor&3x": ("password", "Tr0ub4dor&3x"),
    }
    for text, (kind, value) in cases.items():
        found = [(f.type, text[f.start : f.end]) for f in clf.classify(text)]
        assert (kind, value) in [(t, v if kind != "health_info" else v.lower()) for t, v in found], (text, found)
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----\ntrailer"
    found = [f for f in clf.classify(pem) if f.type == "private_key"]
    assert [pem[f.start : f.end] for f in found] == [pem[: pem.index("\ntrailer")]]
    jwt = "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok"
    assert [f.type for f in clf.classify(jwt)] == ["jwt"]


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("stripe_key", "rk_live_KTbU22C0hvmYSTsukjlpAMJs"),
        ("slack_token", "https://hooks.slack.com/services/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"),
        ("openai_api_key", "sk-Ab3dEf5hIj7lMn9pQr1tT3BlbkFJUv3wXy5zAb7cDe9fGh1jKl"),
        ("anthropic_api_key", "sk-ant-api03-dg-_LrE2NXyXT0C4P9eGGrPSCzUG4s7sst-DhpPL8q2mf1mtB_J6FD87FsPcNqyp"),
        ("github_token", "ghs_7viA46ZB0GkJsaPEHV9IVCLRTy2fpue0gvj7"),
        ("google_api_key", "AIzax2RTnACGhtHjNAmyLulIVHG_f8YphyY401X"),
        ("aws_access_key", "AKIA7HPB5F62WWBKT5DF"),
    ],
)
def test_vendor_keys_are_matched_from_where_they_start(kind: str, key: str) -> None:
    """Prefixed patterns are tried only at their start literals: each vendor's key is still found whole."""
    text = f"config: {key}\n"
    assert [(f.type, text[f.start : f.end]) for f in Classifier().classify(text)] == [(kind, key)]


# Two shapes of shape_makers (trigger x filler) on which the classifier was slower than the one before it at
# 100 KB (2026-12-07): a step in Python per vendor needle (RE2 prefilter) and per URL escape inside one long token.
# Time ratios against the old classifier are the benchmark's job (benchmarks/bench_classifier.py); here, the
# number of those steps, which does not depend on the machine's load.
def test_dense_vendor_needles_are_not_stepped_through_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from clawfleet.router.classifier import findings, secrets

    steps = 0

    def counted(rx, raw):  # type: ignore[no-untyped-def]
        nonlocal steps
        for span in findings.byte_spans(rx, raw):
            steps += 1
            yield span

    monkeypatch.setattr(secrets, "byte_spans", counted)
    text = ("xoxb-" + "\u200b") * (100_000 // 6) + "!"
    assert secrets._needles_present(text) == {"xox"}
    assert steps <= 256  # then findall goes on in C; there are 16,666 needles


def test_escapes_inside_one_long_token_are_not_stepped_through_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from clawfleet.router.classifier import decode

    searched: list[tuple[int, int]] = []
    real = decode._SHORT_MARKED

    class Counted:  # the short-token pattern, recording the gaps it is run over
        def finditer(self, text: str, lo: int, hi: int):  # type: ignore[no-untyped-def]
            searched.append((lo, hi))
            return real.finditer(text, lo, hi)

    monkeypatch.setattr(decode, "_SHORT_MARKED", Counted())
    text = "Ana" + "%41" * 33_332 + "!"
    assert list(decode._tokens(text)) == [(0, len(text))]
    assert searched == []  # every escape is inside the one long token
    text = "%41 " + text + " %42"
    assert list(decode._tokens(text)) == [(0, 3), (4, len(text) - 4), (len(text) - 3, len(text))]
    assert searched == [(0, 4), (len(text) - 4, len(text))]
