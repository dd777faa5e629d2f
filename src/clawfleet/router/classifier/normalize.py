"""A normalised view of a text, for matching, with a map from each of its characters back to the original.

Obfuscated PII reads the same to a model but not to a regex: fullwidth digits (``５３６-２２-８７４１``), a
zero-width space inside an e-mail address, a Cyrillic ``а`` in a keyword. The view applies NFKC per character,
drops invisible characters, maps other scripts' decimal digits and common Cyrillic/Greek homoglyphs to Latin.
Detectors run on the view; their spans are mapped back so that findings always point into the original text.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# zero-width space/non-joiner/joiner, word joiner, byte-order mark, soft hyphen
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
# letters that render like Latin ones (Unicode's confusables for the Latin alphabet, Cyrillic and Greek part)
_CONFUSABLES = str.maketrans(
    {
        **dict(zip("аеорсхуіјѕԁһԛԝ", "aeopcxyijsdhqw", strict=True)),
        **dict(zip("АВЕКМНОРСТХУІЈЅ", "ABEKMHOPCTXYIJS", strict=True)),
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
        **dict(zip("οιαρνκτυ", "oiapvktu", strict=True)),
    }
)

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@functools.lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    if ch in _INVISIBLE:
        return ""
    if ch.isdecimal() and not ch.isascii():
        return str(unicodedata.decimal(ch))
    out = unicodedata.normalize("NFKC", ch)
    return out.translate(_CONFUSABLES)


class NormalizedView:
    """``text``: the normalised text; ``to_original(start, end)``: the span of the original it came from."""

    __slots__ = ("_origin", "text")

    def __init__(self, original: str) -> None:
        parts: list[str] = []
        origin: list[int] = []  # origin[i]: index in the original of the character that produced text[i]
        pos = 0
        for m in _NON_ASCII.finditer(original):  # ASCII stretches are copied whole, in C
            i = m.start()
            parts.append(original[pos:i])
            origin.extend(range(pos, i))
            folded = _fold(m.group())
            parts.append(folded)
            origin.extend([i] * len(folded))
            pos = i + 1
        parts.append(original[pos:])
        origin.extend(range(pos, len(original)))
        self.text = "".join(parts)
        self._origin = origin

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        # the end maps through the last character of the span, so characters removed inside it stay inside
        return self._origin[start], self._origin[end - 1] + 1


def normalized_view(text: str) -> NormalizedView | None:
    """The view of ``text``, or None when normalising changes nothing (always so for ASCII text)."""
    if text.isascii():
        return None
    if all(_fold(ch) == ch for ch in _distinct_non_ascii(text)):
        return None  # every character folds to itself: the view would be the text (and its map costs ~4 ms/100 KB)
    view = NormalizedView(text)
    return None if view.text == text else view


def _distinct_non_ascii(text: str) -> set[str]:
    """The distinct characters of ``text``, at least its non-ASCII ones (an ASCII character folds to itself).

    ``findall`` builds a string per non-ASCII character: cheapest where they are few, but on a run of them (a
    zero-width space between every character, 100 KB) it cost 17 ms, which made such shapes slower than the
    classifier before (2026-12-07); ``set(text)`` reads every character in C, at about a tenth of that per
    character, so it serves texts where more than one character in 16 is non-ASCII (UTF-8's extra bytes tell)."""
    if len(text.encode("utf-8", "surrogatepass")) - len(text) > len(text) // 16:
        return set(text)
    return set(_NON_ASCII.findall(text))
