"""Credentials written as a pair without a password keyword: ``login is deploy / Gr4nite-Kettle-77``,
``creds: admin / hunter2Zeta!``, ``user admin / pass Vt5!ophW2r``.

The secret (the part after `` / ``) is reported when the line also holds a login cue (login, creds,
account, user, sign in, their es/fr/de/it/pt forms) within 60 characters before the pair or 30 after, and
the secret looks like a password: 6 to 64 characters with a letter and a digit or symbol (so ``input /
output`` and ``3 / 4`` stay out). Paths (``/usr / local``) are excluded by the slash before the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from clawfleet.router.classifier.findings import Doc, Finding

# linear: one name token, bounded blanks, one secret token; a name starting inside a word or path is refused
_PAIR = re.compile(
    r"(?<![\w/.\-@])([A-Za-z][\w.@\-]{0,40})[ \t]{1,3}/[ \t]{1,3}(?:pass(?:word)?[ \t]{1,3}|pw[ \t]{1,3})?"
    r"([^\s/]{6,64})(?=[\s,;)]|$)"
)
_CUE = re.compile(
    r"(?i)log ?in|log ?on|sign ?in|\bcreds?\b|credential|credenciales|identifiants|zugangsdaten|\baccount\b|"
    r"\bcuenta\b|\bcompte\b|\bkonto\b|\bconta\b|\buser(?:name)?\b|\busuario\b|\butilisateur\b|\bbenutzer\b|"
    r"\butente\b|\busuário\b|\baccesso\b|\bacceso\b"
)
_DIGIT_OR_SYMBOL = re.compile(r"[\d!#$%&*+=?@^_~\-]")
_LETTER = re.compile(r"[A-Za-z]")
_PLACEHOLDER = re.compile(r"(?i)^(?:\*+|x+|<.*>|\{.*\}|\$\{?.*|.*(?:example|placeholder|changeme|password|secret).*)$")


# Every match holds its separator: a '/' right after a blank (the name holds neither). It starts at most
# 1 + 40 + 3 characters before that '/' and ends at most 1 + 3 + 11 + 64 after it, where the look-ahead reads
# one more. So _PAIR is run only over the windows around those separators (merged where they touch): the same
# matches as over the whole text (look-behind reads before a window, and a window ends past any match's look-
# ahead, so ``$`` at its end never applies), without trying every letter of a 100 KB text.
_SEPARATOR = re.compile(r"/(?<=[ \t]/)")  # starts with the literal: ``re`` finds each '/' in C
_BEFORE_SEP = 44
_AFTER_SEP = 81


def _pair_matches(text: str) -> Iterator[re.Match[str]]:
    n = len(text)
    windows: list[list[int]] = []
    for sep in _SEPARATOR.finditer(text):
        slash = sep.start()
        lo, hi = max(0, slash - _BEFORE_SEP), min(n, slash + _AFTER_SEP)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = hi
        else:
            windows.append([lo, hi])
    for lo, hi in windows:
        yield from _PAIR.finditer(text, lo, hi)


def detect_credential_pairs(doc: Doc) -> Iterator[Finding]:
    text = doc.text
    for m in _pair_matches(text):
        secret = m.group(2).rstrip(".,)")
        if len(secret) < 6 or not _LETTER.search(secret) or not _DIGIT_OR_SYMBOL.search(secret):
            continue
        if _PLACEHOLDER.match(secret) or secret.startswith(("http", "www.")):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        line_end = len(text) if line_end < 0 else line_end
        before = text[max(line_start, m.start() - 60) : m.start(2)]
        after = text[m.end() : min(line_end, m.end() + 30)]
        if not (_CUE.search(before) or _CUE.search(after)):
            continue
        yield Finding("password", m.start(2), m.start(2) + len(secret), 0.8, secret, 2)
