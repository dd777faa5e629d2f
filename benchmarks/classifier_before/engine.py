"""Runs the detectors over a text and resolves overlapping findings into one list."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

from classifier_before import credential_pairs, health, names_addresses, patterns, secrets
from classifier_before.custom import CustomClass
from classifier_before.decode import decoded_tokens
from classifier_before.findings import BUILTIN_TYPES, NATIONAL_IDS, SECRETS, Doc, Finding
from classifier_before.normalize import normalized_view

Detector = Callable[[Doc], Iterator[Finding]]


def _always(doc: Doc) -> bool:
    return True


def _has_numbers(doc: Doc) -> bool:
    return bool(doc.digits.text)


# (detector, the types it can emit, a cheap precondition): a detector whose precondition fails cannot find
# anything, and skipping it is what keeps short prompts in the tens of microseconds
_DETECTORS: tuple[tuple[Detector, frozenset[str], Callable[[Doc], bool]], ...] = (
    (patterns.detect_email, frozenset({"email"}), lambda d: "@" in d.text),
    (patterns.detect_phone, frozenset({"phone"}), _has_numbers),
    (patterns.detect_credit_card, frozenset({"credit_card"}), _has_numbers),
    (patterns.detect_iban, frozenset({"iban"}), _has_numbers),
    (patterns.detect_national_ids, frozenset(NATIONAL_IDS), lambda d: d.has_digit),
    (patterns.detect_ip, frozenset({"ip_address"}), lambda d: d.has_digit and ("." in d.text or ":" in d.text)),
    (patterns.detect_dob, frozenset({"date_of_birth"}), lambda d: d.has_digit),
    (secrets.detect_secrets, frozenset(SECRETS) - {"password"}, _always),
    (secrets.detect_passwords, frozenset({"password"}), _always),
    (credential_pairs.detect_credential_pairs, frozenset({"password"}), lambda d: " /" in d.text),
    (names_addresses.detect_names, frozenset({"person_name"}), _always),
    (names_addresses.detect_addresses, frozenset({"street_address"}), _always),
    (health.detect_health, frozenset({"medical_record_number", "health_info"}), _always),
)


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the strongest finding where spans overlap: higher priority (more specific detector), then
    higher score, then the longer span. Returns findings sorted by start offset."""
    ranked = sorted(findings, key=lambda f: (-f.priority, -f.score, f.start - f.end, f.start))
    starts: list[int] = []  # kept spans, disjoint, sorted by start
    ends: list[int] = []
    kept: list[Finding] = []
    for f in ranked:
        i = bisect.bisect_left(starts, f.end)  # kept spans starting before f ends are at i-1 and below
        if i > 0 and ends[i - 1] > f.start:
            continue
        starts.insert(i, f.start)
        ends.insert(i, f.end)
        kept.append(f)
    kept.sort(key=lambda f: (f.start, f.end))
    return kept


class Classifier:
    """The default, offline classifier. Thread-safe and reusable: all patterns are compiled at import."""

    def __init__(
        self,
        *,
        min_score: float = 0.5,
        disabled: Iterable[str] = (),
        custom: Sequence[CustomClass] = (),
        extra_engines: Sequence[Callable[[str], Iterable[Finding]]] = (),
    ) -> None:
        self.min_score = min_score
        self.disabled = frozenset(disabled)
        unknown = self.disabled - set(BUILTIN_TYPES)
        if unknown:
            raise ValueError(f"unknown classifier types to disable: {', '.join(sorted(unknown))}")
        self.custom = tuple(custom)
        self.extra_engines = tuple(extra_engines)
        self._detectors = [(fn, pre) for fn, types, pre in _DETECTORS if types - self.disabled]

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for t in BUILTIN_TYPES if t not in self.disabled) + tuple(c.name for c in self.custom)

    def classify(self, text: str) -> list[Finding]:
        """Findings in ``text``, with spans into ``text``: from the text as written, from its normalised view
        (NFKC, invisible characters removed, homoglyphs folded) and from the encoded tokens in it, decoded
        once (base64, hex, URL, JSON escapes; a finding there covers the whole token)."""
        if not text:
            return []
        found = self._detect_all(text)
        for engine in self.extra_engines:
            found.extend(f for f in engine(text) if f.score >= self.min_score and f.type not in self.disabled)
        found.extend(self._in_decoded_tokens(text))
        return resolve_overlaps(found)

    def _in_decoded_tokens(self, text: str) -> Iterator[Finding]:
        """Findings in the decoded tokens, each reported over its whole encoded token. The decoded texts are
        classified together, one per line, so that thousands of small tokens cost one pass, not one each."""
        tokens = list(decoded_tokens(text))
        if not tokens:
            return
        joined = "\n".join(plain for _, _, plain in tokens)
        starts = list(itertools.accumulate((len(plain) + 1 for _, _, plain in tokens), initial=0))
        for f in self._detect_all(joined):
            first = bisect.bisect_right(starts, f.start) - 1
            last = bisect.bisect_right(starts, f.end - 1) - 1
            for start, end, _ in tokens[first : last + 1]:
                yield Finding(f.type, start, end, f.score, text[start:end], f.priority)

    def _detect_all(self, text: str) -> list[Finding]:
        found = self._detect(text)
        view = normalized_view(text)
        if view is not None:
            for f in self._detect(view.text):
                start, end = view.to_original(f.start, f.end)
                found.append(Finding(f.type, start, end, f.score, text[start:end], f.priority))
        return found

    def _detect(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        doc = Doc(text)
        for fn, pre in self._detectors:
            if pre(doc):
                found.extend(f for f in fn(doc) if f.score >= self.min_score and f.type not in self.disabled)
        for cls in self.custom:
            found.extend(cls.detect(text, doc.lower))
        return found
