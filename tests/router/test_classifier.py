"""Detectors, checksums and false-positive guards."""

from __future__ import annotations

import string
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfleet.router.classifier import Classifier, CustomClass, checksums
from clawfleet.router.classifier.engine import resolve_overlaps
from clawfleet.router.classifier.findings import Finding

CLF = Classifier()


def types(text: str) -> list[str]:
    return [f.type for f in CLF.classify(text)]


def spans(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in CLF.classify(text)]


@pytest.mark.parametrize(
    ("fn", "good", "bad"),
    [
        (checksums.luhn_ok, "4539 1488 0343 6467", "4539 1488 0343 6468"),
        (checksums.iban_ok, "GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 33"),
        (checksums.us_ssn_ok, "536-22-8741", "666-22-8741"),
        (checksums.us_ssn_ok, "536-22-8741", "936-22-8741"),
        (checksums.us_ssn_ok, "536-22-8741", "536-00-8741"),
        (checksums.us_ssn_ok, "536-22-8741", "536-22-0000"),
        (checksums.nl_bsn_ok, "111222333", "111222334"),
        (checksums.es_dni_ok, "12345678Z", "12345678A"),
        (checksums.in_aadhaar_ok, "234567890124", "234567890125"),
        (checksums.it_codice_fiscale_ok, "RSSMRA85T10A562S", "RSSMRA85T10A562T"),
        (checksums.uk_nino_ok, "AB123456C", "QQ123456C"),
        (checksums.ca_sin_ok, "130692544", "130692545"),
    ],
)
def test_checksums(fn, good, bad):
    assert fn(good)
    assert not fn(bad)


def _luhn_complete(body: str) -> str:
    for d in string.digits:
        if checksums.luhn_ok(body + d):
            return body + d
    raise AssertionError


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.digits, min_size=14, max_size=14), st.sampled_from([" ", "-", ""]))
def test_any_valid_visa_in_context_is_found(digits, sep):
    number = _luhn_complete("4" + digits)
    shown = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    if len(set(number)) < 2:
        return
    found = spans(f"please charge card {shown} today")
    assert ("credit_card", shown) in found


@settings(max_examples=200, deadline=None)
@given(st.uuids(), st.binary(min_size=20, max_size=20))
def test_uuids_and_hashes_are_not_flagged(u, raw):
    text = f"request {u} commit {raw.hex()} id={uuid.UUID(bytes=raw[:16]).hex}"
    assert types(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "pip install torch==2.3.1 numpy==1.26.4 and python 3.11.9",
        "Upgrade from 1.2.3.4 to 10.0.19041.1",
        "listening on 127.0.0.1:8080 and 0.0.0.0:443",
        "TEST_CARD = '4111 1111 1111 1112'",
        "order #48291033 tracking 1Z999AA10123456784 at 2024-03-15T10:22:33Z",
        "OPENAI_API_KEY = 'sk-your-api-key-here'",
        "AKIAIOSFODNN7EXAMPLE is the documented example key",
        "password: ${DB_PASSWORD}",
        "if not password:\n    raise SystemExit(1)",
        "The password field is required.",
        "git@github.com:acme/router.git and logo@2x.png",
        "MAC 00:1A:2B:3C:4D:5E at 10:30:00",
        "Enter your SSN in the format XXX-XX-XXXX; 000-12-3456 is never issued.",
    ],
)
def test_hard_negatives(text):
    assert types(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail j.doe+x@mail.example.co.uk", ("email", "j.doe+x@mail.example.co.uk")),
        ("call +44 20 7946 0958", ("phone", "+44 20 7946 0958")),
        ("IBAN NL91 ABNA 0417 1643 00 please", ("iban", "NL91 ABNA 0417 1643 00")),
        ("SSN 536-22-8741", ("us_ssn", "536-22-8741")),
        ("from 203.0.113.45", ("ip_address", "203.0.113.45")),
        ("ip 2001:db8:85a3::8a2e:370:7334", ("ip_address", "2001:db8:85a3::8a2e:370:7334")),
        ("DOB: 1984-07-02", ("date_of_birth", "1984-07-02")),
        (
            "token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            ("github_token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        ),
        ("DB_PASS=Xk9#mq2!vL", ("password", "Xk9#mq2!vL")),
        ("redis://:f8Kd93jS0qPx@cache:6379", ("password", "f8Kd93jS0qPx")),
        ('client_secret = "9f8e7d6c5b4a39281726354a5b6c7d8e"', ("generic_secret", "9f8e7d6c5b4a39281726354a5b6c7d8e")),
        ("Dear Mr. Okonkwo,", ("person_name", "Mr. Okonkwo")),
        (
            "Ship to 742 Evergreen Terrace, Springfield, OR 97403.",
            ("street_address", "742 Evergreen Terrace, Springfield, OR 97403"),
        ),
        ("patient was diagnosed with epilepsy", ("health_info", "epilepsy")),
    ],
)
def test_positives(text, expected):
    assert expected in spans(text)


def test_private_key_block_is_one_finding():
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----"
    assert spans(f"here:\n{key}\nthanks") == [("private_key", key)]


def test_csv_column_headers_give_context():
    text = "name,phone,dob\nAna Silva,020 7946 0958,12.03.1980\n"
    found = dict((t, v) for t, v in spans(text))
    assert found["phone"] == "020 7946 0958"
    assert found["date_of_birth"] == "12.03.1980"


def test_overlaps_keep_the_more_specific_finding():
    a = Finding("generic_secret", 0, 40, 0.85, priority=1)
    b = Finding("aws_secret_key", 0, 40, 0.9, priority=4)
    c = Finding("phone", 50, 60, 0.8, priority=2)
    assert resolve_overlaps([a, b, c]) == [b, c]


def test_custom_classes_keywords_markers_and_validated_regexes():
    clf = Classifier(
        custom=[
            CustomClass("codename", keywords=["Project Nightjar"]),
            CustomClass("marking", markers=["CONFIDENTIAL"]),
            CustomClass("member_id", regexes=[r"\bM\d{15}\b"], validate="luhn"),
        ]
    )
    text = "project nightjar plan, CONFIDENTIAL, not confidential, ids M453914880343646 M453914880343647"
    got = [(f.type, text[f.start : f.end]) for f in clf.classify(text)]
    assert ("codename", "project nightjar") in got
    assert ("marking", "CONFIDENTIAL") in got
    # markers match in any case since issue 19 (a lowercased marking is still a marking); case_sensitive keeps
    # the old behaviour
    assert ("marking", "confidential") in got
    strict = Classifier(custom=[CustomClass("marking", markers=["CONFIDENTIAL"], case_sensitive=True)])
    assert [text[f.start : f.end] for f in strict.classify(text)] == ["CONFIDENTIAL"]
    member = [v for t, v in got if t == "member_id"]
    assert member == ["M453914880343646"] or member == []  # luhn over the digits of the match
    assert all(checksums.luhn_ok(v) for v in member)


def test_disabled_types_and_threshold():
    clf = Classifier(disabled=["email"], min_score=0.5)
    assert [f.type for f in clf.classify("a@b.example.com")] == []
    with pytest.raises(ValueError, match="unknown classifier types"):
        Classifier(disabled=["emails"])


def test_findings_serialise_without_the_value():
    [f] = CLF.classify("SSN 536-22-8741")
    assert f.to_dict() == {"type": "us_ssn", "start": 4, "end": 15, "score": 0.95}


def test_large_input_is_handled():
    text = ("lorem ipsum dolor sit amet 12345 " * 3000) + " mail me: someone@example.org"
    assert types(text) == ["email"]
