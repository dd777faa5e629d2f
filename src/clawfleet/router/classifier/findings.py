"""The finding type shared by every detector, and the data classes it can carry."""

from __future__ import annotations

import bisect
import functools
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import re2

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
    return -sum([c / n * math.log2(c / n) for c in Counter(text).values()])  # a list: same sum, no generator


def context_before(text: str, start: int, window: int = 48) -> str:
    return text[max(0, start - window) : start].lower()


def context_around(text: str, start: int, end: int, window: int = 48) -> str:
    return text[max(0, start - window) : end + window].lower()


_MAX_ROW = 4096  # characters: longer lines are not read as table rows


def column_header(
    text: str, start: int, max_lines: int = 50, cache: dict[tuple[int, str, int], list[str]] | None = None
) -> str:
    """For a value inside a CSV/TSV/pipe table, the lowercased header cell of its column ('' if none).

    The header is the first line of the block of lines that use the same separator as the value's line.
    ``cache`` (one per text; the caller's) keeps each line's header cells, so that the values of one table do
    not each walk up to ``max_lines`` lines to the same header.
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
    key = (line_start, sep, max_lines)
    cells = cache.get(key) if cache is not None else None
    if cells is None:
        cells = _header_cells(text, line_start, sep, max_lines)
        if cache is not None:
            cache[key] = cells
    return cells[col].strip().strip("\"'").lower() if col < len(cells) else ""


def _header_cells(text: str, line_start: int, sep: str, max_lines: int) -> list[str]:
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
        return []
    header_end = text.find("\n", header_start)
    return text[header_start:header_end].split(sep)


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


@functools.lru_cache(maxsize=8)
def _cluster_ascii(gap: int, min_digits: int) -> Any:
    """``_cluster_rx`` for ASCII texts, with RE2: in ASCII ``re``'s \\d is [0-9], and RE2's leftmost-first
    matching of this expression (no look-around, no back-reference) gives the spans ``re`` gives."""
    return re2_bytes(rf"[0-9](?:[^0-9]{{0,{gap}}}[0-9]){{{min_digits - 1},}}".encode())


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
        if text.isascii():
            clusters: Iterable[tuple[int, int]] = byte_spans(_cluster_ascii(gap, min_digits), text.encode("ascii"))
        else:
            clusters = (m.span() for m in _cluster_rx(gap, min_digits).finditer(text))
        windows: list[list[int]] = []
        n = len(text)
        for m_start, m_end in clusters:
            lo, hi = max(0, m_start - before), min(n, m_end + after)
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

    def finditer(self, rx: re.Pattern[str] | Prefiltered) -> Iterator[tuple[int, int, re.Match[str]]]:
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
_cue_re2: list[Any] = []  # the same alternation compiled with RE2, leftmost-longest, over UTF-8 bytes


def _cue_regex() -> re.Pattern[str]:
    """The context words as one trie regex for ``re``: the reference semantics (leftmost match, longest word
    there, non-overlapping), which :func:`_cue_spans` reproduces with RE2."""
    if not _cue_state:
        with _cue_lock:
            if not _cue_state:
                _build_cue_state()
    return _cue_state[0]


_cue_lock = threading.Lock()


def _build_cue_state() -> None:
    # everything the scan reads is built before the pattern is published: another thread that finds
    # ``_cue_state`` filled must find the prefixes and the plan complete
    _cue_prefixes.clear()
    for word in _CUE_GROUPS:
        _cue_prefixes[word] = sorted((w for w in _CUE_GROUPS if word.startswith(w)), key=len)
    _cue_plan.clear()
    for word, shorter in _cue_prefixes.items():
        _cue_plan[word] = tuple(
            (
                len(w),
                tuple(g for g in _CUE_GROUPS[w] if (g, w) not in _CUE_RIGHT_BOUNDED),
                tuple(g for g in _CUE_GROUPS[w] if (g, w) in _CUE_RIGHT_BOUNDED),
            )
            for w in shorter
        )
    _cue_re2.clear()
    _cue_state.append(re.compile(trie_pattern(_CUE_GROUPS)))


# matched word -> for it and each shorter registered word it starts with (shortest first): (length, the groups
# it counts for, the groups it counts for only when no letter, digit or '_' follows)
_cue_plan: dict[str, tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...]] = {}


def words_re2(words: Iterable[str]) -> Any:
    """Literal words as one RE2 expression over UTF-8 bytes that finds what ``re.compile(trie_pattern(words))``
    finds: the leftmost match, the longest word there, then on after it (RE2's leftmost-longest mode), in
    linear time with RE2's DFA instead of ``re`` trying the trie at every character."""
    opts = re2.Options()
    opts.longest_match = True
    opts.log_errors = False
    opts.max_mem = 64 << 20  # the DFA of ~700 words; a smaller budget falls back to the slower NFA
    pattern = "|".join(re2.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re2.compile(pattern.encode("utf-8"), opts)


def _cue_regex_re2() -> Any:
    _cue_regex()
    if not _cue_re2:
        _cue_re2.append(words_re2(_CUE_GROUPS))
    return _cue_re2[0]


def _cue_spans(lower: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the context words in ``lower``, as ``_cue_regex().finditer`` finds them, in one RE2
    pass over the UTF-8 bytes (linear time, and 5-10x faster than the trie in ``re`` on a 100 KB text).

    Where words come every few characters (``dob,dob,dob,...``) RE2's cost per match from Python (a search call,
    offsets mapped to characters) exceeds ``re``'s; once that shows, the scan goes on with the trie regex from
    the last match's end, which finds the same words from there (both: leftmost, longest, non-overlapping)."""
    for count, (start, end) in enumerate(re2_spans(_cue_regex_re2(), lower), 1):
        yield start, end
        if dense_scan(count, end):
            yield from (m.span() for m in _cue_regex().finditer(lower, end))
            return


# RE2 pays off per text, ``re`` per match: after every _DENSE_CHECK matches, a scan that found one match per fewer
# than _DENSE_CHARS characters so far goes on with ``re`` (a PII-dense 100 KB text has a context word every ~85)
_DENSE_CHECK = 256
_DENSE_CHARS = 32


def dense_scan(count: int, end: int) -> bool:
    """Whether an RE2 scan that has found ``count`` matches, the last ending at offset ``end``, should go on with
    ``re``: matches come so often that RE2's cost per match from Python outweighs its linear scan."""
    return count % _DENSE_CHECK == 0 and end < count * _DENSE_CHARS


def re2_spans(rx: Any, text: str) -> Iterator[tuple[int, int]]:
    """(start, end) in characters of the matches of ``rx`` (RE2 over UTF-8 bytes) in ``text``.

    The wrapper's own ``str`` mode maps offsets back through a dictionary per match; here the gaps between
    matches are decoded once, in order. Matches must start and end on character boundaries (they do for every
    expression built from whole characters: a UTF-8 lead byte never occurs inside a character)."""
    raw = text.encode("utf-8", "surrogatepass")
    spans = byte_spans(rx, raw)
    if len(raw) == len(text):  # ASCII: byte offsets are character offsets
        yield from spans
        return
    byte_pos = char_pos = 0
    for b_start, b_end in spans:
        char_pos += len(raw[byte_pos:b_start].decode("utf-8", "surrogatepass"))
        c_start = char_pos
        char_pos += len(raw[b_start:b_end].decode("utf-8", "surrogatepass"))
        byte_pos = b_end
        yield c_start, char_pos


_UNANCHORED = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)


def re2_bytes(pattern: bytes) -> Any:
    """An RE2 expression for :func:`byte_spans` (leftmost-first, like ``re``)."""
    opts = re2.Options()
    opts.log_errors = False
    return re2.compile(pattern, opts)


def byte_spans(rx: Any, raw: bytes) -> Iterator[tuple[int, int]]:
    """``m.span()`` for ``m`` in ``rx.finditer(raw)``, for expressions that never match the empty string.

    With the pinned google-re2 this calls the compiled RE2 object the wrapper's own ``finditer`` loop calls, without
    building a match object per match (a third of the cost on inputs with a match every few characters, such as
    a context word repeated); with any other wrapper, the public ``finditer``."""
    regexp = getattr(rx, "_regexp", None)
    if regexp is None or _UNANCHORED is None:
        yield from (m.span() for m in rx.finditer(raw))
        return
    unanchored = _UNANCHORED.UNANCHORED
    pos, n = 0, len(raw)
    while pos <= n:
        span = regexp.Match(unanchored, raw, pos, n)[0]
        if span[0] < 0:
            return
        yield span
        pos = span[1] if span[1] > span[0] else span[1] + 1


# RE2's \d and \s are ASCII; Python's are Unicode. A prefilter must find at least what ``re`` finds, so it reads
# "0-9 or any non-ASCII character" for \d and "ASCII blank or any non-ASCII character" for \s.
RE2_DIGIT = r"[0-9\x{80}-\x{10ffff}]"
RE2_SPACE = r"[\t\n\v\f\r\x1c-\x1f \x{80}-\x{10ffff}]"
_LOOKAROUND_REACH = 32  # characters a pattern's look-ahead may read past its match (the patterns read <= 2)


class Prefiltered:
    r"""A ``re`` pattern that runs only where an RE2 expression (``prefilter``) says a match can start.

    ``finditer(text)`` yields exactly the matches of ``rx.finditer(text)``, given that ``prefilter`` matches at
    every position where ``rx`` matches (it is ``rx`` without its look-arounds, back-references replaced by the
    group they repeat, ``\d``/``\s`` widened as above; a prefix of that is enough). Why: RE2's scan reports,
    for every start ``s`` of an ``rx`` match, a match ``[s1, e1)`` with ``s1 <= s < e1`` (or ``s1 == s``); the
    window ``[s1, e1 + longest rx match + reach)`` then holds that whole match and the characters its
    look-ahead reads. Windows that touch are merged, and ``rx`` runs over each with ``finditer(text, lo, hi)``:
    its look-behinds read before ``lo`` (``re`` keeps the whole string), and a match found in a window cannot
    owe its existence to the window's end, because ``prefilter`` matches at its start too, so the window
    reaches past it. Positions outside every window hold no match, so skipping them changes nothing.

    This turns ``re`` trying the pattern at each of the ~15,000 digits of a PII-dense 100 KB text into one
    RE2 pass plus ``re`` in a few hundred short windows.
    """

    __slots__ = ("_prefilter", "_reach", "pattern", "rx")

    def __init__(self, rx: re.Pattern[str], prefilter: str) -> None:
        self.rx = rx
        self.pattern = rx.pattern
        longest = _longest_match(rx)
        self._reach = longest + _LOOKAROUND_REACH
        opts = re2.Options()
        opts.log_errors = False
        self._prefilter = re2.compile(prefilter.encode("utf-8"), opts)

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        n = len(text)
        reach = self._reach
        windows: list[list[int]] = []
        dense = False
        for count, (start, end) in enumerate(re2_spans(self._prefilter, text), 1):
            hi = min(n, end + reach)
            if windows and start <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], hi)
            else:
                windows.append([start, hi])
            if count % _DENSE_CHECK == 0 and end < count * _DENSE_CHARS:
                dense = True  # candidates everywhere ("５５５５..."): re over the rest costs less than windows
                break
        if dense:
            open_lo = windows.pop()[0]
            for lo, hi in windows:
                yield from self.rx.finditer(text, lo, hi)
            # the windows before ended at or before open_lo and every match after it starts in a window or later
            yield from self.rx.finditer(text, open_lo)
            return
        for lo, hi in windows:
            yield from self.rx.finditer(text, lo, hi)


def _longest_match(rx: re.Pattern[str]) -> int:
    """The longest text ``rx`` can match (look-arounds count 0), from ``re``'s own parser; it must be bounded."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]  # Python 3.11+
    except ImportError:  # pragma: no cover  (Python 3.10)
        import sre_parse
    longest = int(sre_parse.parse(rx.pattern, rx.flags).getwidth()[1])
    if longest >= 1 << 16:
        raise ValueError(f"pattern without a bounded match length: {rx.pattern!r}")
    return longest


def _scan_cues(lower: str) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    plan = _cue_plan
    n = len(lower)
    for start, m_end in _cue_spans(lower):
        # the scan keeps the longest word at a position; shorter registered words there count too
        for length, always, bounded in plan[lower[start:m_end]]:
            end = start + length
            if bounded and (end == n or not (lower[end].isalnum() or lower[end] == "_")):
                counted = always + bounded
            else:
                counted = always
            for g in counted:
                hits = out.get(g)
                if hits is None:
                    out[g] = [(start, end)]
                elif hits[-1][0] == start:
                    hits[-1] = (start, end)  # same group, same start: keep the longer word
                else:
                    hits.append((start, end))
    return out


def _scan_cues_reference(lower: str) -> dict[str, list[tuple[int, int]]]:
    """The scan before the per-word plan (kept for the equivalence test): same hits, same order per group."""
    out: dict[str, list[tuple[int, int]]] = {}
    groups = _CUE_GROUPS
    bounded = _CUE_RIGHT_BOUNDED
    n = len(lower)
    for m in _cue_regex().finditer(lower):
        start = m.start()
        for word in _cue_prefixes[m.group()]:
            end = start + len(word)
            after_ok = end == n or not (lower[end].isalnum() or lower[end] == "_")
            for g in groups[word]:
                if after_ok or (g, word) not in bounded:
                    hits = out.setdefault(g, [])
                    if hits and hits[-1][0] == start:
                        hits[-1] = (start, end)
                    else:
                        hits.append((start, end))
    return out
