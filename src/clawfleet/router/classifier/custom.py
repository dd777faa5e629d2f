"""Operator-defined data classes from the router config: keywords, regexes, document markers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from clawfleet.router.classifier import checksums
from clawfleet.router.classifier.findings import Finding, trie_pattern

VALIDATORS: dict[str, Callable[[str], bool]] = {
    "luhn": checksums.luhn_ok,
    "mod97": checksums.iban_ok,
    "iban": checksums.iban_ok,
    "verhoeff": checksums.verhoeff_ok,
}


@dataclass(frozen=True)
class CustomClass:
    """One operator class. ``keywords`` match whole words, case-insensitively unless ``case_sensitive``;
    ``markers`` (e.g. ``CONFIDENTIAL``) always match case-sensitively; ``regexes`` as written, optionally
    kept only when ``validate`` (luhn, mod97, verhoeff) passes on the match."""

    name: str
    keywords: Sequence[str] = ()
    regexes: Sequence[str] = ()
    markers: Sequence[str] = ()
    case_sensitive: bool = False
    validate: str | None = None
    score: float = 0.9
    _compiled: list[re.Pattern[str]] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled: list[re.Pattern[str]] = []
        # keywords are matched on the lowercased text unless case_sensitive; markers always as written
        if self.keywords:
            words = self.keywords if self.case_sensitive else [w.lower() for w in self.keywords]
            compiled.append(re.compile(rf"(?:{trie_pattern(words)})(?![\w])"))
        if self.markers:
            compiled.append(re.compile(rf"(?:{trie_pattern(self.markers)})(?![\w])"))
        compiled.extend(re.compile(rx) for rx in self.regexes)
        object.__setattr__(self, "_compiled", compiled)

    def detect(self, text: str, lower: str | None = None) -> Iterator[Finding]:
        check = VALIDATORS.get(self.validate) if self.validate else None
        n_words = (1 if self.keywords else 0) + (1 if self.markers else 0)
        for i, rx in enumerate(self._compiled):
            is_regex = i >= n_words
            keyword_rx = i == 0 and bool(self.keywords)
            haystack = lower if keyword_rx and not self.case_sensitive and lower is not None else text
            if keyword_rx and not self.case_sensitive and lower is None:
                haystack = text.lower()
            for m in rx.finditer(haystack):
                if m.end() == m.start():
                    continue
                if (
                    not is_regex
                    and m.start() > 0
                    and (haystack[m.start() - 1].isalnum() or haystack[m.start() - 1] == "_")
                ):
                    continue
                if check is not None and is_regex and not check(m.group()):
                    continue
                yield Finding(self.name, m.start(), m.end(), self.score, text[m.start() : m.end()], 3)
