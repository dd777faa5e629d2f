"""The finding type shared by every detector, and the data classes it can carry."""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Built-in entity types and the groups a routing rule may name instead of a type.
STRUCTURED_PII = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "us_ssn",
    "uk_nino",
    "es_dni",
    "nl_bsn",
    "in_aadhaar",
    "it_fiscal_code",
    "ca_sin",
    "ip_address",
    "date_of_birth",
    "medical_record_number",
)
UNSTRUCTURED_PII = ("person_name", "street_address", "health_info")
SECRETS = (
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "openai_api_key",
    "anthropic_api_key",
    "google_api_key",
    "stripe_key",
    "jwt",
    "private_key",
    "generic_secret",
    "password",
)
NATIONAL_IDS = ("us_ssn", "uk_nino", "es_dni", "nl_bsn", "in_aadhaar", "it_fiscal_code", "ca_sin")
# Pseudo class set by extraction when a body carries content the classifier cannot read (images, audio, files).
UNSCANNED = "unscanned_content"

BUILTIN_TYPES: tuple[str, ...] = (*STRUCTURED_PII, *UNSTRUCTURED_PII, *SECRETS)

GROUPS: dict[str, frozenset[str]] = {
    "pii": frozenset(STRUCTURED_PII + UNSTRUCTURED_PII),
    "structured_pii": frozenset(STRUCTURED_PII),
    "secret": frozenset(SECRETS),
    "national_id": frozenset(NATIONAL_IDS),
    "financial": frozenset({"credit_card", "iban"}),
    "health": frozenset({"medical_record_number", "health_info"}),
    "contact": frozenset({"email", "phone", "street_address"}),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected entity: its type, the [start, end) span in the scanned text, and a 0..1 score.

    ``value`` is the matched text, kept in memory for redaction only; it is never
    serialised by :meth:`to_dict` nor logged.
    """

    type: str
    start: int
    end: int
    score: float
    value: str = ""
    priority: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "start": self.start, "end": self.end, "score": round(self.score, 2)}


def lowered(text: str) -> str:
    """``text.lower()`` with the same length and offsets (a few characters, like 'İ', grow when lowered)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def before_ok(text: str, start: int, forbidden: str) -> bool:
    """True when the character before ``start`` is not alphanumeric/underscore nor one of ``forbidden``."""
    if start == 0:
        return True
    ch = text[start - 1]
    return not (ch.isalnum() or ch == "_" or ch in forbidden)


def shannon_entropy(text: str) -> float:
    """Bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def context_before(text: str, start: int, window: int = 48) -> str:
    return text[max(0, start - window) : start].lower()


def context_around(text: str, start: int, end: int, window: int = 48) -> str:
    return text[max(0, start - window) : end + window].lower()


_MAX_ROW = 4096  # characters: longer lines are not read as table rows


def column_header(text: str, start: int, max_lines: int = 50) -> str:
    """For a value inside a CSV/TSV/pipe table, the lowercased header cell of its column ('' if none).

    The header is the first line of the block of lines that use the same separator as the value's line.
    """
    line_start = text.rfind("\n", max(0, start - _MAX_ROW), start) + 1
    line_end = text.find("\n", start, start + _MAX_ROW)
    if (line_start == 0 and start > _MAX_ROW) or (line_end == -1 and len(text) - start > _MAX_ROW):
        return ""  # a line this long is not a table row; reading it whole for every value was quadratic
    line = text[line_start : line_end if line_end != -1 else len(text)]
    sep = next((s for s in (",", "\t", "|", ";") if line.count(s) >= 2), None)
    if sep is None:
        return ""
    col = text.count(sep, line_start, start)
    header_start = line_start
    for _ in range(max_lines):
        if header_start == 0:
            break
        prev_start = text.rfind("\n", 0, header_start - 1) + 1
        prev = text[prev_start : header_start - 1]
        if len(prev) > _MAX_ROW or prev.count(sep) < 2:
            break
        header_start = prev_start
    if header_start == line_start:
        return ""
    header_end = text.find("\n", header_start)
    cells = text[header_start:header_end].split(sep)
    return cells[col].strip().strip("\"'").lower() if col < len(cells) else ""


def trie_pattern(words: Iterable[str]) -> str:
    """A regex alternation of literal words factored into a trie (``abc|abd`` -> ``ab[cd]``).

    Python's ``re`` tries alternatives one by one; a trie lets it branch on each character instead,
    which keeps word lists of any size to roughly one pass over the text.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        branches = [(ch, build(child)) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        singles = [re.escape(ch) for ch, rest in branches if rest == ""]
        multi = [re.escape(ch) + rest for ch, rest in branches if rest != ""]
        alts = list(multi)
        if len(singles) == 1:
            alts.append(singles[0])
        elif singles:
            alts.append("[" + "".join(singles) + "]")
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:
            return f"(?:{body})?"
        return body

    return build(trie)


_DIGIT_RUN = re.compile(r"\d+")
_ANY_DIGIT = re.compile(r"\d")


@functools.lru_cache(maxsize=8)
def _cluster_rx(gap: int, min_digits: int) -> re.Pattern[str]:
    return re.compile(rf"\d(?:\D{{0,{gap}}}\d){{{min_digits - 1},}}")


class DigitView:
    """The parts of a text around its digits, joined into one shorter string (``\\x00`` between parts).

    Most identifiers (phones, cards, IBANs, national IDs, IPs, dates, house numbers) contain digits, and
    running a dozen regexes only over the neighbourhood of digits instead of the whole text is what keeps
    a 100 KB prompt of prose or code fast. ``finditer`` yields matches with offsets mapped back to the text.
    """

    __slots__ = ("_offsets", "_starts", "text")

    def __init__(self, text: str, *, before: int = 16, after: int = 28, gap: int = 3, min_digits: int = 6) -> None:
        # clusters of digits separated by at most ``gap`` other characters ("+44 20 7946", "536-22-8741")
        # holding at least ``min_digits`` digits: only those can be identifiers; found in one C-level pass
        cluster = _cluster_rx(gap, min_digits)
        windows: list[list[int]] = []
        n = len(text)
        for m in cluster.finditer(text):
            lo, hi = max(0, m.start() - before), min(n, m.end() + after)
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], hi)
            else:
                windows.append([lo, hi])
        parts: list[str] = []
        starts: list[int] = []  # start of each part in the view
        offsets: list[int] = []  # start of each part in the text
        pos = 0
        for lo, hi in windows:
            starts.append(pos)
            offsets.append(lo)
            parts.append(text[lo:hi])
            pos += hi - lo + 1
        self.text = "\x00".join(parts)
        self._starts = starts
        self._offsets = offsets

    def to_text(self, pos: int) -> int:
        i = bisect.bisect_right(self._starts, pos) - 1
        return self._offsets[i] + (pos - self._starts[i])

    def finditer(self, rx: re.Pattern[str]) -> Iterator[tuple[int, int, re.Match[str]]]:
        for m in rx.finditer(self.text):
            start = self.to_text(m.start())
            yield start, start + (m.end() - m.start()), m


class Doc:
    """A text being classified, with the derived forms detectors share (computed once, on demand)."""

    __slots__ = ("_cues", "_digits", "has_digit", "lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = lowered(text)
        self._digits: DigitView | None = None
        self.has_digit = _ANY_DIGIT.search(text) is not None
        self._cues: dict[str, list[tuple[int, int]]] | None = None

    def cues(self, group: str) -> list[tuple[int, int]]:
        """(start, end) of the context words of ``group`` in the text (one shared scan, on first use)."""
        if self._cues is None:
            self._cues = _scan_cues(self.lower)
        return self._cues.get(group, [])

    @property
    def digits(self) -> DigitView:
        if self._digits is None:
            self._digits = DigitView(self.text)
        return self._digits


# ---------------------------------------------------------------- shared context-word scan
# Detectors register the context words they look for (lowercase); one trie regex finds all of them in a
# single pass over the lowercased text, instead of one pass per detector.
_CUE_GROUPS: dict[str, set[str]] = {}
_CUE_RIGHT_BOUNDED: set[tuple[str, str]] = set()  # (group, word): must not be followed by a letter or digit
_cue_state: list[re.Pattern[str]] = []


def register_cues(group: str, words: Iterable[str], *, right_boundary: bool = False) -> None:
    for word in words:
        _CUE_GROUPS.setdefault(word, set()).add(group)
        if right_boundary:
            _CUE_RIGHT_BOUNDED.add((group, word))
    _cue_state.clear()


_cue_prefixes: dict[str, list[str]] = {}  # word -> the registered words it starts with (itself included)


def _cue_regex() -> re.Pattern[str]:
    if not _cue_state:
        _cue_prefixes.clear()
        for word in _CUE_GROUPS:
            _cue_prefixes[word] = sorted((w for w in _CUE_GROUPS if word.startswith(w)), key=len)
        _cue_state.append(re.compile(trie_pattern(_CUE_GROUPS)))
    return _cue_state[0]


def _scan_cues(lower: str) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    groups = _CUE_GROUPS
    bounded = _CUE_RIGHT_BOUNDED
    n = len(lower)
    for m in _cue_regex().finditer(lower):
        start = m.start()
        # the scan keeps the longest word at a position; shorter registered words there count too
        for word in _cue_prefixes[m.group()]:
            end = start + len(word)
            after_ok = end == n or not (lower[end].isalnum() or lower[end] == "_")
            for g in groups[word]:
                if after_ok or (g, word) not in bounded:
                    hits = out.setdefault(g, [])
                    if hits and hits[-1][0] == start:
                        hits[-1] = (start, end)  # same group, same start: keep the longer word
                    else:
                        hits.append((start, end))
    return out
