"""Credentials: provider API keys and tokens, JWTs, PEM private keys, passwords, high-entropy secrets.

Keys with a fixed vendor prefix are matched directly; everything else needs
context (an assignment to a name like ``secret`` or ``token``) plus enough
entropy, so hashes, UUIDs and placeholders like ``sk-your-key-here`` stay out.
Regexes start with a literal (the vendor prefix, or the context word found in
the lowercased text), which keeps a 100 KB prompt to a few milliseconds.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

from clawfleet.router.classifier.findings import (
    Doc,
    Finding,
    before_ok,
    byte_spans,
    dense_scan,
    register_cues,
    shannon_entropy,
    trie_pattern,
    words_re2,
)

# (type, pattern, score, the literals a match starts with: found with str.find, and the pattern tried only there)
_PREFIXED: tuple[tuple[str, re.Pattern[str], float, tuple[str, ...]], ...] = (
    (
        "aws_access_key",
        re.compile(r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
        0.95,
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA"),
    ),
    (
        "github_token",
        re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{50,255}"),
        0.97,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    ("slack_token", re.compile(r"xox[abposre]-(?:\d+-)?[A-Za-z0-9\-]{10,200}"), 0.95, ("xox",)),
    (
        "slack_token",
        re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}"),
        0.95,
        ("https://hooks.slack.com/",),
    ),
    ("anthropic_api_key", re.compile(r"sk-ant-(?:api|admin|oat|sid)\d{2}-[A-Za-z0-9_\-]{32,200}"), 0.98, ("sk-ant-",)),
    ("openai_api_key", re.compile(r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![\w\-])"), 0.99, ("sk-",)),
    ("google_api_key", re.compile(r"AIza[0-9A-Za-z_\-]{35}(?![\w\-])"), 0.95, ("AIza",)),
    (
        "stripe_key",
        re.compile(r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{20,99}(?![\w])"),
        0.95,
        tuple(f"{k}_{m}_" for k in ("sk", "rk", "pk") for m in ("live", "test")),
    ),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}(?![\w\-])"), 0.95, ("eyJ",)),
    # vendors without a type of their own (reported as generic_secret); the body must look random too, so
    # "hf_hub_download" or "npm_config_registry" stay out (see _RANDOM_BODY)
    ("generic_secret", re.compile(r"nvapi-[A-Za-z0-9_\-]{40,100}(?![\w\-])"), 0.95, ("nvapi-",)),
    ("generic_secret", re.compile(r"hf_[A-Za-z0-9]{30,40}(?![\w\-])"), 0.95, ("hf_",)),
    (
        "generic_secret",
        re.compile(r"gl(?:pat|ptt|dt|rt|cbt|soat|ft)-[A-Za-z0-9_\-]{20,64}(?![\w\-])"),
        0.95,
        ("glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glsoat-", "glft-"),
    ),
    ("generic_secret", re.compile(r"npm_[A-Za-z0-9]{36}(?![\w\-])"), 0.95, ("npm_",)),
    ("generic_secret", re.compile(r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![\w\-])"), 0.97, ("SG.",)),
    ("generic_secret", re.compile(r"pypi-AgE[A-Za-z0-9_\-]{50,300}(?![\w\-])"), 0.97, ("pypi-AgE",)),
    ("generic_secret", re.compile(r"hv[sbr]\.[A-Za-z0-9_\-]{24,300}(?![\w\-])"), 0.95, ("hvs.", "hvb.", "hvr.")),
    ("generic_secret", re.compile(r"gsk_[A-Za-z0-9]{48,60}(?![\w\-])"), 0.95, ("gsk_",)),
    ("generic_secret", re.compile(r"do[por]_v1_[a-f0-9]{64}(?![\w\-])"), 0.97, ("dop_v1_", "doo_v1_", "dor_v1_")),
    (
        "generic_secret",
        re.compile(r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}(?![\w\-])"),
        0.95,
        ("shpat_", "shpss_", "shpca_", "shppa_"),
    ),
    ("generic_secret", re.compile(r"xai-[A-Za-z0-9]{60,100}(?![\w\-])"), 0.95, ("xai-",)),
    ("generic_secret", re.compile(r"r8_[A-Za-z0-9]{37,40}(?![\w\-])"), 0.9, ("r8_",)),
    ("generic_secret", re.compile(r"pplx-[A-Za-z0-9]{40,56}(?![\w\-])"), 0.95, ("pplx-",)),
    ("generic_secret", re.compile(r"sq0(?:atp|csp)-[A-Za-z0-9_\-]{22,60}(?![\w\-])"), 0.95, ("sq0atp-", "sq0csp-")),
    ("generic_secret", re.compile(r"lin_(?:api|oauth)_[A-Za-z0-9]{40,64}(?![\w\-])"), 0.95, ("lin_api_", "lin_oauth_")),
)
# every literal some _PREFIXED pattern needs, found in one pass
_NEEDLES = re.compile(trie_pattern({n for *_, needles in _PREFIXED for n in needles}))  # the reference
_NEEDLES_RE2 = words_re2(n for *_, needles in _PREFIXED for n in needles)  # the same matches, one RE2 pass


def _needles_present(text: str) -> set[str]:
    """``set(_NEEDLES.findall(text))``: the needles are ASCII, so the matched bytes are the matched text.

    Where needles come every few characters (``xoxb-`` repeated) RE2's cost per match from Python exceeds
    ``re``'s (it made that shape 2.4x slower than the classifier before, which ran ``findall`` only): once that
    shows, ``findall`` goes on from the last match's end, which finds the same needles from there."""
    raw = text.encode("utf-8", "surrogatepass")
    found: set[str] = set()
    for count, (start, end) in enumerate(byte_spans(_NEEDLES_RE2, raw), 1):
        found.add(raw[start:end].decode("ascii"))
        if dense_scan(count, end):
            char_end = end if len(raw) == len(text) else len(raw[:end].decode("utf-8", "surrogatepass"))
            found.update(_NEEDLES.findall(text, char_end))
            break
    return found


_VENDOR_PREFIX = re.compile(r"^[A-Za-z0-9]{1,8}(?:_v1|_api|_oauth)?[_\-.]")
_OPENAI = re.compile(r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,200}(?![\w\-])")
# A PEM block is its header, then the first END line within 20,000 characters, else the base64 body that follows.
# Matched in three linear passes (headers, END lines, one body run per block) rather than one regex whose lazy
# 20,000-character scan restarted at every header: repeated headers made that quadratic (issue 19).
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s:,\-]*")
_PEM_MAX = 20000
# unarmoured private keys: base64 DER whose first bytes are a private key's version field (PKCS#1, PKCS#8,
# SEC1: INTEGER 0 or 1 right after the outer SEQUENCE), an OpenSSH key body, or any long base64 blob right after
# a "private key" cue. Certificates and public keys (SEQUENCE, SEQUENCE...) do not carry the version field.
_DER_VERSION_NEEDLES = ("IBAD", "IBAA", "AgEA", "CAQA", "CAQE", "AgEB", "b3BlbnNzaC1rZXktdjE")
_B64_WRAPPED = r"[A-Za-z0-9+/]{40,8000}={0,2}(?:\r?\n[A-Za-z0-9+/]{4,128}={0,2}){0,200}"
_DER_KEY = re.compile(rf"(?:M[A-Za-z0-9+/]{{2,7}}(?:IBAD|IBAA|AgEA|CAQA|CAQE|AgEB)|b3BlbnNzaC1rZXktdjE){_B64_WRAPPED}")
_B64_START = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{20}")
_B64_BLOB = re.compile(rf"(?=[A-Za-z0-9+/]{{60}}){_B64_WRAPPED}")
register_cues("privkey", ["private key", "private_key", "private-key", "privkey", "priv_key", "priv key", "privatekey"])
register_cues("aws", ["aws", "secret_access", "secret access", "secretaccesskey"])
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# context words of an assignment; the name may carry prefixes/suffixes (DB_CLIENT_SECRET_V2)
register_cues(
    "secret_word",
    [
        "api_key",
        "api-key",
        "apikey",
        "secret",
        "token",
        "access_key",
        "access-key",
        "accesskey",
        "private_key",
        "private-key",
        "auth_key",
        "credential",
        "signing_key",
        "encryption_key",
        "bearer",
    ],
)
# weaker names: any *_KEY / *.key variable, or a bare "key"; they need an assignment (no "key is ...") and
# skip names that are keys of a table or cache, and values that are UUIDs or (for a bare "key") hex digests
register_cues("key_word", ["_key", "-key", ".key", "key"], right_boundary=True)
_BENIGN_KEY_NAME = re.compile(
    r"(?:primary|foreign|sort|cache|partition|idempotency|public|unique|composite|row|range|hash|lookup|dict|map|"
    r"group|shard|routing|object|s3|bucket|file|table|dedup|api|ssh|gpg|pgp|host|license_public)[_\-.]?key$"
)
_KEY_ASSIGNED = re.compile(r"[\"']?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}[\"']?([A-Za-z0-9+/_.=\-~]{16,512})")
# "settings.title.main2", "USER_PROFILE_V2": identifiers made of words, not random values
_WORDY = re.compile(r"(?:(?:[A-Za-z]{1,24}\d{0,4}|\d{1,8})[._\-/:]){1,12}(?:[A-Za-z]{1,24}\d{0,4}|\d{1,8})")
_UUID_OR_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-fA-F]{32,128}")
# the blanks around the operator are bounded: unbounded runs on both sides of an optional separator let a long
# run of blanks be split every possible way (quadratic; issue 19)
_ASSIGNED_TAIL = re.compile(
    r"[\w.\-]{0,16}[\"']?[ \t]{0,8}(?::=|=>|[:=]|[ \t])[ \t]{0,8}[\"']?([A-Za-z0-9+/_.=\-~]{16,512})"
)
_BEARER_TAIL = re.compile(r"[ \t]+([A-Za-z0-9_\-.~+/]{20,512}=*)")
register_cues(
    "password",
    [
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "pass",
        "kennwort",
        "passwort",
        "contraseña",
        "contrasena",
        "clave",
        "mot de passe",
        "mdp",
        "senha",
        "palavra-passe",
        "palavra passe",
        "hasło",
        "haslo",
        "wachtwoord",
        "lösenord",
        "losenord",
        "passord",
        "adgangskode",
        "salasana",
        "heslo",
        "jelszó",
        "şifre",
        "parola",
        "пароль",
        "パスワード",
        "密码",
        "密碼",
        "비밀번호",
    ],
)
# "is" in the languages of the cue words: es/pt es, é; fr est; de ist/lautet; it è; pl to/jest; nl is; sv är; ru это
_PASSWORD_TAIL = re.compile(
    r"(?:word)?[\"']?([ \t]{0,8}(?::=|=>|[:=：])[ \t]{0,8}|[ \t]{1,8}(?:is|was|es|era|est|était|ist|war|lautet|è|é|"
    r"jest|är|er|это)[ \t]{1,8}(?:now[ \t]{1,8})?|[ \t]{1,8}(?:to|of)[ \t]{1,8})"
    r"[\"'`]?([^\s\"'`,;]{4,128})"
)
# "palabra clave" is a keyword, "parola chiave" likewise; "parola" alone is a word in Italian prose
_NOT_PASSWORD_BEFORE = ("palabra ", "parola ")
_URL_CRED = re.compile(r"://[^\s:/@\"']{0,64}:([^\s:/\"']{3,128})@[\w.\-]+")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\*+|x+|\.+|<.*>|\{.*\}|\$\{?.*|%.*%|\[.*\]|.*(?:example|placeholder|changeme|your[_\-]|"
    r"here|redacted|dummy|sample|xxxx|\*\*\*|environ|getenv|process\.env|none|null|undefined|"
    r"true|false|required|optional|string|secret_key|password|token).*)$"
)
_PROSE = frozenset(
    "field reset manager policy hash length strength input prompt protected required invalid incorrect "  # noqa: SIM905
    "expired changed updated sent stored saved hashed encrypted".split()
)
_PAIR_AFTER = re.compile(r"[ \t]{1,3}/[ \t]{1,3}\S")
_WORD_ONLY = re.compile(r"^[A-Za-z]+[_\-.]?[A-Za-z]*$")


def _looks_random(value: str, min_entropy: float) -> bool:
    has_digit = any(map(str.isdigit, value))
    has_alpha = any(map(str.isalpha, value))
    return has_digit and has_alpha and shannon_entropy(value) >= min_entropy and not _PLACEHOLDER.match(value)


def _vendor_body_ok(body: str) -> bool:
    """A vendor token body: random-looking (mixed case or digits, some entropy), not a placeholder."""
    kinds = sum((any(map(str.isdigit, body)), any(map(str.islower, body)), any(map(str.isupper, body))))
    return kinds >= 2 and shannon_entropy(body) >= 3.0 and not _PLACEHOLDER.match(body)


def _starts(text: str, needles: tuple[str, ...]) -> list[int]:
    """Positions of the needles where a token can start (``before_ok``), in order.

    A pattern is tried only there: inside a run like ``eyJeyJeyJ...`` every needle but the first follows a token
    character, so each run is scanned once instead of once per needle in it (which was quadratic; issue 19).
    """
    found: set[int] = set()
    for needle in needles:
        pos = text.find(needle)
        while pos != -1:
            if before_ok(text, pos, "-"):
                found.add(pos)
            pos = text.find(needle, pos + 1)
    return sorted(found)


def _pem_blocks(text: str) -> Iterator[Finding]:
    ends = [(m.start(), m.end()) for m in _PEM_END.finditer(text)]
    end_starts = [s for s, _ in ends]
    covered = -1
    for head in _PEM_BEGIN.finditer(text):
        if head.start() < covered:
            continue  # inside the block found before (its body swallows following headers)
        i = bisect.bisect_left(end_starts, head.end())
        if i < len(ends) and ends[i][0] - head.end() <= _PEM_MAX:
            end = ends[i][1]
        else:
            end = _PEM_BODY.match(text, head.end()).end()  # type: ignore[union-attr]  (a * pattern always matches)
        covered = end
        while end > head.start() and text[end - 1].isspace():
            end -= 1
        yield Finding("private_key", head.start(), end, 0.99, text[head.start() : end], 5)


def detect_secrets(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    present = _needles_present(text)
    for kind, rx, score, needles in _PREFIXED:
        if present.isdisjoint(needles):
            continue
        for start in _starts(text, needles):
            m = rx.match(text, start)
            if m is None or "EXAMPLE" in m.group():
                continue
            value = m.group()
            if kind == "generic_secret" and not _vendor_body_ok(_VENDOR_PREFIX.sub("", value)):
                continue
            yield Finding(kind, m.start(), m.end(), score, value, 4)
    if "sk-" in text:
        for start in _starts(text, ("sk-",)):
            m = _OPENAI.match(text, start)
            if m is None:
                continue
            value = m.group()
            body = re.sub(r"^(?:proj|svcacct|admin|None)-", "", value[3:])
            if _looks_random(body, 3.2):
                yield Finding("openai_api_key", m.start(), m.end(), 0.9, value, 4)
    if "PRIVATE KEY" in text:
        yield from _pem_blocks(text)
    yield from _unarmoured_keys(doc)
    yield from _key_variables(doc)
    for _, c_end in doc.cues("aws"):
        for m in _AWS_SECRET.finditer(text, c_end, min(len(text), c_end + 100)):
            value = m.group()
            if before_ok(text, m.start(), "/+") and _looks_random(value, 4.0) and "EXAMPLE" not in value:
                yield Finding("aws_secret_key", m.start(), m.end(), 0.9, value, 4)
            break
    last_end = -1
    for c_start, c_end in doc.cues("secret_word"):
        # a cue inside the value examined for the cue before ("token=token=token...") would examine a suffix of
        # it again: skipping it keeps the work linear in the text, not in cues times value length
        if c_start < last_end:
            continue
        word = lower[c_start:c_end]
        if word == "bearer" or (word == "token" and lower[c_end : c_end + 1] in (" ", "\t")):
            m = _BEARER_TAIL.match(text, c_end)
            if m and _looks_random(m.group(1), 3.3):
                last_end = m.end()
                yield Finding("generic_secret", m.start(1), m.end(1), 0.85, m.group(1), 1)
                continue
        m = _ASSIGNED_TAIL.match(text, c_end)
        if m is None:
            continue
        last_end = m.end()
        name = lower[max(0, c_start - 24) : m.start(1)]
        value = m.group(1).rstrip(".")
        if "public" in name or re.search(r"_(?:url|id|name|path|file|type)\b", lower[c_end : c_end + 16]):
            continue
        if _looks_random(value, 3.3):
            last_end = m.end()
            yield Finding("generic_secret", m.start(1), m.start(1) + len(value), 0.85, value, 1)


def _unarmoured_keys(doc: Doc) -> Iterator[Finding]:
    text = doc.text
    seen = -1
    if any(n in text for n in _DER_VERSION_NEEDLES):
        for m in _DER_KEY.finditer(text):
            if before_ok(text, m.start(), "+/"):
                seen = max(seen, m.end())
                yield Finding("private_key", m.start(), m.end(), 0.95, m.group(), 5)
    for _, c_end in doc.cues("privkey"):
        s = _B64_START.search(text, c_end, min(len(text), c_end + 80))
        if s is None or s.start() < seen:
            continue
        m = _B64_BLOB.match(text, s.start())
        if m is not None and _looks_random(m.group()[:512], 4.5):
            seen = m.end()
            yield Finding("private_key", m.start(), m.end(), 0.9, m.group(), 5)


def _key_variables(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for c_start, c_end in doc.cues("key_word"):
        bare = lower[c_start] == "k"
        if bare and c_start > 0 and (lower[c_start - 1].isalnum() or lower[c_start - 1] in "_-."):
            continue  # "monkey", or the end of a longer name found as "_key"
        if not bare and (c_start == 0 or not lower[c_start - 1].isalnum()):
            continue
        name_start = c_start
        while (
            name_start > 0
            and c_start - name_start < 40
            and (lower[name_start - 1].isalnum() or lower[name_start - 1] in "_-.")
        ):
            name_start -= 1
        if _BENIGN_KEY_NAME.search(lower, name_start, c_end):
            continue
        m = _KEY_ASSIGNED.match(text, c_end)
        if m is None:
            continue
        value = m.group(1).rstrip(".")
        if _UUID_OR_HEX.fullmatch(value.lower() if bare else value) and (bare or "-" in value):
            continue
        if _WORDY.fullmatch(value):
            continue
        if _looks_random(value, 3.3):
            yield Finding("generic_secret", m.start(1), m.start(1) + len(value), 0.8, value, 1)


def detect_passwords(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    last_end = -1
    for c_start, c_end in doc.cues("password"):
        # a cue inside the value just found is part of that value ("pwd:pwd:pwd:..."): skipping it keeps the
        # work linear in the text rather than in the number of cues times the value length (issue 19)
        if c_start < last_end or (c_start > 0 and lower[c_start - 1].isalnum()):
            continue
        if lower.endswith(_NOT_PASSWORD_BEFORE, max(0, c_start - 8), c_start):
            continue
        m = _PASSWORD_TAIL.match(text, c_end)
        if m is None:
            continue
        value = m.group(2).rstrip(".)")
        if len(value) < 4 or _PLACEHOLDER.match(value) or value.lower() in _PROSE:
            continue
        prose = not any(ch in m.group(1) for ch in ":=")
        # "password is required", "password to reset": in prose a plain word is not a secret
        if prose and _WORD_ONLY.match(value):
            continue
        if value.endswith("(") or ("(" in value and value.endswith(")")):
            continue  # a function call: password=get_password()
        if _PAIR_AFTER.match(text, m.start(2) + len(value)):
            continue  # "username/password: svc / S3cret!": the user name; credential_pairs reports the secret
        last_end = m.start(2) + len(value)
        yield Finding("password", m.start(2), last_end, 0.85, value, 2)
    if "://" in text:
        for m in _URL_CRED.finditer(text):
            value = m.group(1)
            if _PLACEHOLDER.match(value):
                continue
            yield Finding("password", m.start(1), m.end(1), 0.9, value, 2)
