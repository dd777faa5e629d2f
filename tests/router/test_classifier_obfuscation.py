"""PII hidden from a regex but not from the model: Unicode tricks and encoded payloads (issue 19, finding 11).

Each attack hides a value the plain classifier finds, and the test checks it is still found with a span into the
ORIGINAL text that covers the whole obfuscated value (redaction cuts the original at those offsets). Next to the
attacks, look-alikes that are not PII (hashes, random base64, ordinary non-Latin text) stay unflagged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse

import pytest

from clawfleet.router.classifier import Classifier

CLF = Classifier()

EMAIL = "ana.lima@example.org"
SSN = "536-22-8741"
CARD = "4539 1488 0343 6467"


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in CLF.classify(text)]


def test_the_plain_values_are_found() -> None:
    """The baseline the attacks below start from."""
    assert found(f"mail {EMAIL}") == [("email", EMAIL)]
    assert ("us_ssn", SSN) in found(f"my ssn is {SSN}")
    assert ("credit_card", CARD) in found(f"card {CARD}")


@pytest.mark.parametrize(
    ("kind", "hidden"),
    [
        ("email", "ana.lima@exa\u200bmple.org"),  # zero-width space
        ("email", "ana.lima\u2060@example.org"),  # word joiner
        ("email", "ana.l\u00adima@example.org"),  # soft hyphen
        ("email", "ana.lima@exam\ufeffple.org"),  # byte-order mark
        ("email", "аna.lima@еxample.org"),  # Cyrillic а and е
        ("email", "ana.lima＠example.org"),  # fullwidth commercial at
        ("us_ssn", "５３６-２２-８７４１"),  # fullwidth digits
        ("us_ssn", "٥٣٦-٢٢-٨٧٤١"),  # Arabic-Indic digits
        ("credit_card", "4539\u200b1488\u200b0343\u200b6467"),
        ("aws_access_key", "AKIAIOSFODNN7RΕALKEY"),  # Greek capital epsilon
    ],
)
def test_unicode_obfuscation_is_seen_through_with_spans_in_the_original(kind: str, hidden: str) -> None:
    text = f"record: {hidden} (end)"
    hits = [f for f in CLF.classify(text) if f.type == kind]
    assert hits, (kind, hidden, found(text))
    f = hits[0]
    # the span is in the original string and covers every character of the hidden value
    assert text[f.start : f.end] == f.value
    assert f.start <= text.index(hidden) and f.end >= text.index(hidden) + len(hidden.rstrip()), (f, hidden)


def test_ordinary_non_latin_text_is_not_flagged() -> None:
    """Folding homoglyphs must not turn plain Russian or Greek prose into findings."""
    prose = "Привет, как дела? Сегодня хорошая погода. Καλημέρα σας, τι κάνετε σήμερα; Ｈｅｌｌｏ ｗｏｒｌｄ"
    assert found(prose) == []


def _tool_result(payload: str) -> str:
    return json.dumps({"type": "tool_result", "tool_use_id": "toolu_01", "content": payload})


@pytest.mark.parametrize(
    ("kind", "value", "encode"),
    [
        ("email", EMAIL, lambda v: base64.b64encode(f"name,email\nAna,{v}\n".encode()).decode()),
        ("email", EMAIL, lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("=")),
        ("us_ssn", SSN, lambda v: base64.b64encode(f"ssn: {v}".encode()).decode()),
        ("credit_card", CARD, lambda v: base64.b64encode(f"card {v} exp 04/29".encode()).decode()),
        ("email", EMAIL, lambda v: v.encode().hex()),
        ("us_ssn", SSN, lambda v: f"social security number {v}".encode().hex().upper()),
        ("credit_card", CARD, lambda v: f"visa {v}".encode().hex()),
        ("email", EMAIL, lambda v: "https://crm.test/find?q=" + urllib.parse.quote(v, safe="")),
        ("us_ssn", SSN, lambda v: "lookup%3Fssn%3D" + "".join(f"%{b:02X}" for b in v.encode())),
        ("email", EMAIL, lambda v: "".join(f"\\u{ord(c):04x}" if c in "@." else c for c in v)),
        ("us_ssn", SSN, lambda v: "ssn\\u003a\\u0020" + "".join(f"\\u{ord(c):04x}" for c in v)),
    ],
)
def test_encoded_pii_in_a_tool_result_is_found_as_the_whole_token(kind: str, value: str, encode) -> None:  # type: ignore[no-untyped-def]
    token = encode(value)
    text = _tool_result(token)
    assert value not in text  # the plain value is really hidden
    hits = [f for f in CLF.classify(text) if f.type == kind]
    assert hits, (kind, token, found(text))
    # the whole encoded token, as it appears in the original text (JSON doubles an escape's backslash)
    assert text[hits[0].start : hits[0].end] == json.dumps(token)[1:-1]


@pytest.mark.parametrize(
    "blob",
    [
        base64.b64encode(hashlib.sha256(b"x").digest()).decode(),
        base64.b64encode(os.urandom(48)).decode(),
        hashlib.sha256(b"release-1.4.2").hexdigest(),
        hashlib.md5(b"abc").hexdigest(),
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        base64.b64encode(b"the build passed on all three runners, no action needed").decode(),
        "https://docs.test/search?q=rate%20limit%20headers",
    ],
)
def test_encoded_blobs_without_pii_are_not_flagged(blob: str) -> None:
    assert found(_tool_result(blob)) == []


def test_decoding_is_one_level_only() -> None:
    """base64 of base64 of an e-mail is not unwrapped twice: the cost of a text stays bounded."""
    inner = base64.b64encode(EMAIL.encode()).decode()
    outer = base64.b64encode(inner.encode()).decode()
    assert [t for t, _ in found(_tool_result(inner))] == ["email"]
    assert found(_tool_result(outer)) == []
