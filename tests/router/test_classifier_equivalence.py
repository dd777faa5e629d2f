"""The faster classifier (issue 16) finds exactly what the classifier before it found.

``benchmarks/classifier_before`` is a frozen copy of the classifier as of commit 056c3d2. Every text of every
evaluation set, the benchmark texts (100 KB PII-dense and clean), every adversarial shape at 2 KB and random
texts built from corpus fragments, separators, obfuscation and encodings must give the same findings, compared
whole (type, span, score, value, detector priority), at the default threshold and with ``min_score=0`` (every
candidate a detector scores, so a change below the threshold shows too). The context-word scan, now one RE2
pass, is also compared with the trie regex it replaced.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawfleet.router.classifier import Classifier, credential_pairs, decode, findings, normalize, patterns, secrets

from .adversarial_inputs import prose, shape_makers, triggers
from .eval.dataset import load, load_fn_dev, load_fn_holdout, load_holdout, load_recall_holdout

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import classifier_before

_CORPUS = [r["text"] for r in load() + load_holdout() + load_fn_dev() + load_fn_holdout() + load_recall_holdout()]
_PAIRS = [
    (Classifier(), classifier_before.Classifier()),
    (Classifier(min_score=0.0), classifier_before.Classifier(min_score=0.0)),
]


def _same(text: str) -> None:
    for new, old in _PAIRS:
        got, want = new.classify(text), old.classify(text)
        assert [_key(f) for f in got] == [_key(f) for f in want], text[:200]


def _key(f: Any) -> tuple[object, ...]:
    return (f.type, f.start, f.end, f.score, f.value, f.priority)


def _dense(size: int) -> str:
    text = "\n".join(_CORPUS)
    return (text * (size // len(text) + 1))[:size]


def test_every_corpus_text_gives_the_same_findings() -> None:
    for text in _CORPUS:
        _same(text)


@pytest.mark.parametrize("size", [2_048, 100 * 1024])
def test_benchmark_texts_give_the_same_findings(size: int) -> None:
    _same(_dense(size))
    _same(prose(size))


def test_adversarial_shapes_give_the_same_findings() -> None:
    for _label, make in shape_makers(triggers(one_per_group=True)):
        _same(make(2_000))


_FRAGMENTS = st.sampled_from(_CORPUS).flatmap(
    lambda t: st.integers(0, len(t)).flatmap(lambda i: st.integers(i, len(t)).map(lambda j: t[i:j]))
)
_NOISE = st.sampled_from(
    [" ", "\n", "\t", ", ", " / ", "-", ".", ":", "=", "@", "+", "(", ")", "\u200b", "５", "а", "Е", "İ",
     "%40", "\\u0040", "QUJDREVGR0hJSktMTU5PUA==", "4142434445464748", "\ud800", "🙂", "é"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_FRAGMENTS, _NOISE, st.text(max_size=12)), max_size=12))
def test_random_texts_from_corpus_fragments_give_the_same_findings(parts: list[str]) -> None:
    _same("".join(parts))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(sorted(findings._CUE_GROUPS)), _NOISE, st.text(max_size=6)), max_size=20))
def test_cue_scan_matches_the_trie_regex(parts: list[str]) -> None:
    lower = findings.lowered("".join(parts))
    want = [m.span() for m in findings._cue_regex().finditer(lower)]
    assert list(findings._cue_spans(lower)) == want


_TOKEN_PARTS = st.sampled_from(
    ["%", "%41", "%4", "\\u0041", "\\", "u", " ", "\n", '"', "'", "<", ">", "\u2003", "\x1c", "a", "QUJD", "4142",
     "=", "x" * 15, "y" * 16, "QUJDREVGR0hJSktMTU5PUA=="]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TOKEN_PARTS, st.text(max_size=4)), max_size=30))
def test_encoded_token_candidates_match_the_token_loop(parts: list[str]) -> None:
    text = "".join(parts)
    assert list(decode._candidates(text)) == list(classifier_before.decode._candidates(text))


_PAIR_PARTS = st.sampled_from(
    [" ", "\t", "/", " / ", "\t/\t", "admin", "Gr4nite-77!", "pass ", "password\t", "pw ", "x" * 40, "a", ",", ")",
     "\n", ".", "@", "-", "é", "Zz9!" * 10]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PAIR_PARTS, st.text(max_size=4)), max_size=16))
def test_credential_pair_windows_match_the_whole_text_scan(parts: list[str]) -> None:
    text = "".join(parts)
    want = [(m.span(), m.groups()) for m in credential_pairs._PAIR.finditer(text)]
    assert [(m.span(), m.groups()) for m in credential_pairs._pair_matches(text)] == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_NOISE, st.text(max_size=6)), max_size=20))
def test_normalised_view_is_none_exactly_when_normalising_changes_nothing(parts: list[str]) -> None:
    text = "".join(parts)
    view = normalize.normalized_view(text)
    unchanged = text.isascii() or normalize.NormalizedView(text).text == text
    assert (view is None) == unchanged


# both ways of listing the distinct characters (few non-ASCII ones: findall; many: set of the text), each with a
# text that folds and one that does not
@pytest.mark.parametrize(
    "text",
    ["a" * 100 + "é", "a" * 100 + "５", "a" * 100 + "\u200b", "é" * 100, "é" * 100 + "а", "12 Main" + "\u200b" * 500,
     "x" * 30 + "\ud800" + "é" * 3, "x" * 10 + "\ud800é"],
)  # fmt: skip
def test_normalised_view_skip_check_on_sparse_and_dense_non_ascii(text: str) -> None:
    view = normalize.normalized_view(text)
    unchanged = normalize.NormalizedView(text).text == text
    assert (view is None) == unchanged
    assert normalize._distinct_non_ascii(text) >= set(normalize._NON_ASCII.findall(text))
    _same(text)


_NEEDLE_PARTS = st.sampled_from(["sk-", "sk-ant-", "sk_live_", "gh", "ghp_", "AKIA", "eyJ", "hvs.", "xox", "é", " "])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_NEEDLE_PARTS, st.text(max_size=4)), max_size=16))
def test_vendor_needles_found_as_by_the_trie_regex(parts: list[str]) -> None:
    text = "".join(parts)
    assert secrets._needles_present(text) == set(secrets._NEEDLES.findall(text))


_PREFILTERED = [v for v in vars(patterns).values() if isinstance(v, findings.Prefiltered)]
_DIGIT_PARTS = st.sampled_from(
    ["1", "2", "9", "0", "123", "4111", "-", ".", "/", " ", "  ", "(", ")", "+", "A", "B", "D", "X", "Z", "a", "AB",
     "٥", "５", "\x00", "\n", "\u00a0", "é"]
)  # fmt: skip


def test_every_prefiltered_pattern_is_covered() -> None:
    assert len(_PREFILTERED) >= 7


@settings(max_examples=400, deadline=None)
@given(st.lists(_DIGIT_PARTS, max_size=40))
def test_prefiltered_patterns_find_what_re_finds(parts: list[str]) -> None:
    text = "".join(parts)
    for p in _PREFILTERED:
        want = [(m.span(), m.groups()) for m in p.rx.finditer(text)]
        assert [(m.span(), m.groups()) for m in p.finditer(text)] == want, p.pattern


@pytest.mark.parametrize("digits", ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "0123456789"[::-1]])
def test_prefiltered_patterns_on_the_corpus_in_other_digits(digits: str) -> None:
    # Python's \d is Unicode: a prefilter reading only ASCII digits would miss these (and fail here)
    text = _dense(100 * 1024).translate(str.maketrans("0123456789", digits))
    for p in _PREFILTERED:
        want = [(m.span(), m.groups()) for m in p.rx.finditer(text)]
        assert [(m.span(), m.groups()) for m in p.finditer(text)] == want, p.pattern


def test_re2_fast_loop_matches_the_wrappers_finditer() -> None:
    raw = _dense(20_000).lower().encode("utf-8", "surrogatepass")
    rx = findings._cue_regex_re2()
    assert findings._UNANCHORED is not None  # the pinned google-re2: the fast loop is the one in use
    assert list(findings.byte_spans(rx, raw)) == [m.span() for m in rx.finditer(raw)]


_CSV_PARTS = st.sampled_from(["name,phone,dob", "a,b,c", "x|y|z", "1;2;3", ",", "\t", "|", ";", "\n", "Phone", "DOB",
                              "555-0100", " ", '"tel"'])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_CSV_PARTS, st.text(max_size=3)), max_size=30), st.data())
def test_column_header_cache_changes_nothing(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    cache: dict[tuple[int, str, int], list[str]] = {}
    for start in data.draw(st.lists(st.integers(0, len(text)), max_size=10)):
        assert findings.column_header(text, start, cache=cache) == findings.column_header(text, start)


@pytest.mark.parametrize("unit", ["bday５", "dob,", "dob ", "aws а", "ssn ", "née "])
def test_cue_scan_on_dense_cues_switches_to_re_without_a_difference(unit: str) -> None:
    lower = findings.lowered(unit * 3_000 + "!")
    want = [m.span() for m in findings._cue_regex().finditer(lower)]
    assert list(findings._cue_spans(lower)) == want
    assert findings._scan_cues(lower) == findings._scan_cues_reference(lower)


# needles every few characters switch the vendor-needle scan to ``findall`` (a needle seen only after the switch,
# in ASCII and non-ASCII text, must still be found, and one split by the switch point must not be invented)
@pytest.mark.parametrize("unit", ["xoxb-\u200b", "xoxb-", "eyJ.", "sk-ant-é", "AKIASIA", "ghp_ ", "hvs.hvb."])
@pytest.mark.parametrize("tail", ["", " sk_live_x", " gh\u200bp_ AKIA", "é github_pat_"])
def test_vendor_needle_scan_on_dense_needles_switches_to_re_without_a_difference(unit: str, tail: str) -> None:
    text = unit * 3_000 + tail + "!"
    assert secrets._needles_present(text) == set(secrets._NEEDLES.findall(text))


# a long token made of URL escapes (``"Ana" + "%41" * n``): its marks are skipped without a step each; the tokens
# must be the ones the token loop before gave, with short escaped tokens before, between and after long ones
@pytest.mark.parametrize(
    "text",
    [
        "Ana" + "%41" * 3_000 + "!",
        "%41 " + "Ana" + "%41" * 500 + " %41%42 x\\u0041 " + "\\u0041" * 300 + '"%4' + "é%41" * 200 + " %41",
        "\\u0041" * 2_000 + "\\",
        "%" * 40 + " %41 " + "a" * 15 + "%",
    ],
)
def test_escape_marks_inside_long_tokens_change_no_candidate(text: str) -> None:
    assert list(decode._candidates(text)) == list(classifier_before.decode._candidates(text))
    _same(text)


@pytest.mark.parametrize("unit", ["５", "1", "123-45-6789 ", "4111 1111 1111 1111 ", "12 34 56 A ", "(415) 555-2671 "])
def test_prefiltered_patterns_on_dense_candidates(unit: str) -> None:
    text = "x " + unit * (20_000 // len(unit)) + "!"
    for p in _PREFILTERED:
        want = [(m.span(), m.groups()) for m in p.rx.finditer(text)]
        assert [(m.span(), m.groups()) for m in p.finditer(text)] == want, p.pattern


def test_cue_state_built_once_under_concurrent_first_use() -> None:
    lower = findings.lowered(_dense(20_000))
    want = findings._scan_cues(lower)
    findings._cue_state.clear()  # as register_cues leaves it: the next scan builds the words' state again
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: findings._scan_cues(lower), range(16)))
    assert all(r == want for r in results)


# ASCII texts take RE2 paths for the long-token scan and the digit clusters (issue 16, router latency): the same
# spans as the ``re`` patterns they stand in for, on texts dense in delimiters, digits and runs around 16
_ASCII_PARTS = st.sampled_from(
    [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", '"', "'", "<", ">", "=", "%41", "\\u0041", "a", "Z",
     "x" * 15, "y" * 16, "z" * 17, "1", "12", "123456", "-", ".", "/", "(", ")", "+", "\x00", "\x7f"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_ASCII_PARTS, st.text(st.characters(max_codepoint=127), max_size=6)), max_size=40))
def test_ascii_fast_paths_find_what_re_finds(parts: list[str]) -> None:
    text = "".join(parts)
    assert text.isascii()
    raw = text.encode("ascii")
    assert list(findings.byte_spans(decode._LONG_TOKEN_ASCII, raw)) == [
        m.span() for m in decode._LONG_TOKEN.finditer(text)
    ]
    for gap, min_digits in ((3, 6), (1, 2), (0, 4)):
        assert list(findings.byte_spans(findings._cluster_ascii(gap, min_digits), raw)) == [
            m.span() for m in findings._cluster_rx(gap, min_digits).finditer(text)
        ]
    assert list(decode._candidates(text)) == list(classifier_before.decode._candidates(text))
