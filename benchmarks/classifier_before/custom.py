"""Operator-defined data classes from the router config: keywords, regexes, document markers."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from classifier_before import checksums
from classifier_before.findings import Finding, trie_pattern

VALIDATORS: dict[str, Callable[[str], bool]] = {
    "luhn": checksums.luhn_ok,
    "mod97": checksums.iban_ok,
    "iban": checksums.iban_ok,
    "verhoeff": checksums.verhoeff_ok,
}

# separators an agent or a document puts inside a phrase: spaces and line breaks, hyphens (also soft and
# non-breaking ones), underscores
_SEP_RUN = re.compile(r"[\s\-_\u00ad\u2010\u2011\u2012\u2013]+")


class FoldedText:
    """A text with its word separators folded, so "Project\\nNightjar", "project-nightjar" and "Night-\\njar"
    read as "project nightjar", "projectnightjar" and "nightjar": a run of whitespace becomes one space, a run
    holding a hyphen or underscore joins the words. ``span`` maps a folded span back to the original text."""

    __slots__ = ("_folded_at", "_orig_at", "text")

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        folded_at: list[int] = []  # anchors: folded offset -> original offset, one per piece
        orig_at: list[int] = []
        pos = flen = 0
        for m in _SEP_RUN.finditer(text):
            folded_at.append(flen)
            orig_at.append(pos)
            parts.append(text[pos : m.start()])
            flen += m.start() - pos
            if m.group().isspace():
                folded_at.append(flen)
                orig_at.append(m.start())
                parts.append(" ")
                flen += 1
            pos = m.end()
        folded_at.append(flen)
        orig_at.append(pos)
        parts.append(text[pos:])
        self.text = "".join(parts)
        self._folded_at = folded_at
        self._orig_at = orig_at

    def _orig(self, pos: int) -> int:
        i = bisect.bisect_right(self._folded_at, pos) - 1
        return self._orig_at[i] + (pos - self._folded_at[i])

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self._orig(start), self._orig(end - 1) + 1


def fold_phrase(phrase: str) -> list[str]:
    """The forms of a keyword matched in folded text: as written (separators folded) and run together."""
    folded = FoldedText(phrase.strip()).text
    return sorted({folded, folded.replace(" ", "")})


@dataclass(frozen=True)
class CustomClass:
    """One operator class. ``keywords`` and ``markers`` (e.g. ``CONFIDENTIAL``) match whole words,
    case-insensitively unless ``case_sensitive``, also when a line wrap, a hyphen or an underscore breaks them
    and in the plural; ``regexes`` as written, optionally kept only when ``validate`` (luhn, mod97, verhoeff)
    passes on the match."""

    name: str
    keywords: Sequence[str] = ()
    regexes: Sequence[str] = ()
    markers: Sequence[str] = ()
    case_sensitive: bool = False
    validate: str | None = None
    score: float = 0.9
    _words: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _gates: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _compiled: list[re.Pattern[str]] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        phrases = [p for p in (*self.keywords, *self.markers) if p.strip()]
        if not self.case_sensitive:
            phrases = [p.lower() for p in phrases]
        forms = sorted({f for p in phrases for f in fold_phrase(p)})
        if forms:
            # a plural or possessive ending may follow; nothing else may ("nightjars", not "nightjarring")
            rx = re.compile(rf"(?:{trie_pattern(forms)})(?:'s|’s|es|s)?(?![\w])")
            object.__setattr__(self, "_words", rx)
            # a phrase can only be in the text if its first or last three characters are (one break at most
            # splits one of them); short phrases are always looked for
            gates: list[str] = []
            for f in forms:
                if len(f.replace(" ", "")) < 6:
                    gates = []
                    break
                gates += [f[:3], f[-3:]]
            object.__setattr__(self, "_gates", tuple(gates))
        object.__setattr__(self, "_compiled", [re.compile(rx) for rx in self.regexes])

    def detect(self, text: str, lower: str | None = None) -> Iterator[Finding]:
        if self._words is not None:
            yield from self._detect_words(text, lower)
        check = VALIDATORS.get(self.validate) if self.validate else None
        for rx in self._compiled:
            for m in rx.finditer(text):
                if m.end() == m.start():
                    continue
                if check is not None and not check(m.group()):
                    continue
                yield Finding(self.name, m.start(), m.end(), self.score, m.group(), 3)

    def _detect_words(self, text: str, lower: str | None) -> Iterator[Finding]:
        assert self._words is not None
        haystack = text if self.case_sensitive else (lower if lower is not None else text.lower())
        if self._gates and not any(g in haystack for g in self._gates):
            return
        folded = FoldedText(haystack)
        ftext = folded.text
        for m in self._words.finditer(ftext):
            if m.start() > 0 and (ftext[m.start() - 1].isalnum() or ftext[m.start() - 1] == "_"):
                continue
            start, end = folded.span(m.start(), m.end())
            yield Finding(self.name, start, end, self.score, text[start:end], 3)
