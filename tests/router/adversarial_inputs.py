"""Adversarial inputs for the classifier's regexes: the shapes that make backtracking regexes super-linear.

Shared by tests/router/test_classifier_linear_time.py (does time grow linearly?) and
benchmarks/bench_classifier_worst.py (how slow is the worst shape at 10 KB / 100 KB?).

A shape is a trigger (a word or literal that starts some pattern's match: every context word the detectors
register, every vendor prefix and header) followed by a long run of a filler (spaces, digits, letters, dots,
separators) and a tail that makes the match fail, so a backtracking engine tries every way to split the run.
"""

from __future__ import annotations

from collections.abc import Callable

from clawfleet.router.classifier import findings
from clawfleet.router.classifier.engine import Classifier  # noqa: F401  (registers every detector's cue words)

# Reported by the adversarial review (issue 19, finding 9), each with the pattern it froze.
KNOWN_BAD: dict[str, Callable[[int], str]] = {
    "_ICD10 (icd10 + spaces)": lambda n: "icd10" + " " * n + "!",
    "_ICD10 (icd-10-cm code + spaces)": lambda n: "icd-10-cm" + " " * (n // 2) + "code" + " " * (n // 2) + "!",
    "_MRN_TAIL (mrn + spaces)": lambda n: "mrn" + " " * n + "!",
    "_MRN_TAIL (mrn + digit groups)": lambda n: "mrn: " + "1 " * (n // 2) + "!",
    "_CUED_TAIL (name + spaces)": lambda n: "name" + " " * n + "!",
    "_ASSIGNED_TAIL (secret + spaces)": lambda n: "secret" + " " * n + "!",
    "_ASSIGNED_TAIL (secret + tabs)": lambda n: 'secret"' + " \t" * (n // 2) + "!",
    "_PEM (header + base64 body, no END)": lambda n: "-----BEGIN RSA PRIVATE KEY-----\n" + "QUJD" * (n // 4) + "!",
    "_PEM (repeated headers)": lambda n: "-----BEGIN PRIVATE KEY-----!" * (n // 28),
    "jwt (repeated eyJ)": lambda n: "eyJ" * (n // 3) + "!",
    "column_header (phone-like pairs on one long line)": lambda n: "00 " * (n // 3) + "!",
    "decoder (thousands of tiny URL-encoded tokens)": lambda n: "%411 " * (n // 5) + "!",
}

# Literals that start the prefix-anchored patterns (secrets, phones, e-mail, IPs, health codes, names).
_LITERALS = (
    "@",
    "a@b",
    "+1 ",
    "+",
    "00",
    "(",
    "(0",
    "sk-",
    "sk-proj-",
    "sk-ant-api01-",
    "eyJ",
    "eyJhbGciOi.eyJ",
    "AKIA",
    "ghp_",
    "github_pat_",
    "xoxb-",
    "xoxb-1-",
    "https://hooks.slack.com/services/T",
    "AIza",
    "sk_live_",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----BEGIN",
    "-----END",
    "://",
    "://user:",
    "icd10",
    "icd-10-cm",
    "Dear",
    "Hi ",
    "Mr. ",
    "Ana",
    "Ana Lima",
    "Regards,\n",
    "12 ",
    "12 Main",
    "12 Main St",
    " Street",
    "dob,",
    "name,dob,",
    "1.",
    "1.1.1.",
    "a:",
    "::",
    "GB82",
    "AB12",
    "12345678",
    "%41",
    "\\u0041",
    "QUJDREVG",
)
# the last ones reach the normalised view (non-ASCII) and the decoder (escapes, base64/hex alphabets)
_FILLERS = (" ", "\t", "\n", "1", "a", "A", "Ab ", ".", "1 ", "1-", "-", ":", "=", "a.", "/", "Q+", "1.1")
_FILLERS += ("\u200b", "５", "а", "%4", "%41", "\\u004", "\\u0041", "QUJD", "4142")


def triggers(*, one_per_group: bool = False) -> list[str]:
    """Every registered context word (each starts a tail match) and every literal above. With
    ``one_per_group``, one word per detector group: a group's words all start the same tail pattern."""
    if one_per_group:
        per_group: dict[str, str] = {}
        for word in sorted(findings._CUE_GROUPS):  # the registry is module-private
            for group in sorted(findings._CUE_GROUPS[word]):
                per_group.setdefault(group, word)
        words = sorted(set(per_group.values()))
    else:
        words = sorted(findings._CUE_GROUPS)
    return words + list(_LITERALS)


def _run(trigger: str, filler: str) -> Callable[[int], str]:
    return lambda n: trigger + filler * max(1, (n - len(trigger)) // len(filler)) + "!"


def _repeat(trigger: str, filler: str) -> Callable[[int], str]:
    return lambda n: (trigger + filler) * max(1, n // len(trigger + filler)) + "!"


def shape_makers(trigger_words: list[str]) -> list[tuple[str, Callable[[int], str]]]:
    """(label, size -> text) for every trigger x filler, as one long run after one trigger and as the trigger
    repeated with one filler between (many match starts sharing one run), then the reported inputs."""
    makers: list[tuple[str, Callable[[int], str]]] = []
    for trigger in trigger_words:
        for filler in _FILLERS:
            makers.append((f"{trigger!r} + {filler!r}*n + '!'", _run(trigger, filler)))
            makers.append((f"({trigger!r} + {filler!r})*n + '!'", _repeat(trigger, filler)))
    makers.extend(KNOWN_BAD.items())
    return makers


def prose(size: int) -> str:
    """Ordinary, non-sensitive agent traffic of about ``size`` characters: the peer for the adversarial shapes."""
    base = (
        "Please review this function and suggest a faster approach. The build failed on the second stage, "
        "see the log below for details.\n"
        "def merge(a, b):\n    out = []\n    for x in a:\n        if x not in b:\n            out.append(x)\n"
        "    return out + list(b)\n"
        "2025-01-14T10:22:31Z INFO worker-3 finished job 8812 in 412 ms (queue depth 17, retries 0)\n"
        "The meeting notes mention that the release moves to next quarter, pending the load test results.\n"
    )
    return (base * (size // len(base) + 1))[:size]
