"""Structured PII: e-mail, phone, payment card, IBAN, national IDs, IP address, date of birth.

Each detector finds candidates with a precompiled regex, then keeps only those
that pass a checksum or structural rule, scoring them higher with context words
and lower (below the default threshold) without, where the format alone is ambiguous.

Speed: every regex starts with a digit, a literal or a narrow character class
(no leading look-behind, no case-insensitive word alternations), so ``re`` can
skip most of the text in C; boundaries are checked in Python on the few candidates,
and context words are looked up in the lowercased copy of the text only near them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from classifier_before import checksums
from classifier_before.findings import (
    Doc,
    Finding,
    before_ok,
    column_header,
    context_around,
    context_before,
    register_cues,
    trie_pattern,
)

# ---------------------------------------------------------------- e-mail
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})(?![\w-]|\.\w)")
_FILE_EXT = frozenset(
    """
png jpg jpeg gif svg webp ico bmp js mjs ts tsx jsx css scss json py rb go rs java kt c h cpp hpp md txt yml yaml
toml lock sh zip gz tar pdf html htm xml vue php swift
""".split()  # noqa: SIM905
)


def detect_email(doc: Doc) -> Iterator[Finding]:
    text = doc.text
    pos = text.find("@")
    while pos != -1:
        left = _EMAIL_LOCAL.search(text, max(0, pos - 64), pos)
        dom = _EMAIL_DOMAIN.match(text, pos + 1) if left else None
        if left and dom:
            start, end = left.start(), dom.end()
            local = text[start:pos]
            tld = dom.group(1).lower()
            prev = text[start - 1] if start else ""
            ok = (
                tld not in _FILE_EXT
                and not local.startswith(".")
                and ".." not in local
                and (not prev or prev not in "/:@")
            )
            # git@github.com:org/repo.git is an SSH remote, not a mailbox.
            if ok and local == "git" and text[end : end + 1] == ":":
                ok = False
            if ok:
                yield Finding("email", start, end, 0.95, text[start:end], 2)
                pos = text.find("@", end)
                continue
        pos = text.find("@", pos + 1)


# ---------------------------------------------------------------- phone
_PHONE_CTX_WORDS = (
    r"phone|tel\b|tel:|telephone|mobile|cell|call|fax|whats ?app|sms|text me|ring|dial|contact|reach|"
    r"número|telefon|téléphone|tel[ée]fono|telem[óo]vel|m[óo]vil|celular|kom[óo]rk|llam[ae]|llámame|chiama|"
    r"zadzwo|ligue|tlf|telf|tfno|電話|携帯|portable|handy|landline|hotline"
)
_PHONE_CTX = re.compile(_PHONE_CTX_WORDS + "|number")
# for numbers without a trunk prefix "number" alone is too weak ("the number 123 456 789")
_PHONE_CTX_STRICT = re.compile(_PHONE_CTX_WORDS)
_PHONE_NEG_CTX = re.compile(
    r"\b(?:order|invoice|ref|reference|tracking|isbn|version|build|serial|sku|id|ticket|account|case|po|batch|"
    r"part|no)\b"
)
_PHONE_HEADER = re.compile(r"phone|tel|mobile|cell|fax|contact|number")
_PHONE_INTL = re.compile(
    r"\+\d{1,3}(?:[ .\-/]?\(\d{1,4}\))?(?:[ .\-/]?\d{1,5}){1,6}(?![\w\-])"
    r"|00\d{2,3}[ .\-]\d{1,4}(?:[ .\-]\d{2,5}){1,4}(?![\w\-])"
)
_PHONE_NANP = re.compile(r"(?:1[ .\-])?[2-9]\d{2}[ .\-][2-9]\d{2}[ .\-]\d{4}(?![\w\-]|\.\d)")
_PHONE_NANP_PAREN = re.compile(r"(?:1[ .\-])?\([2-9]\d{2}\) ?[2-9]\d{2}[ .\-]\d{4}(?![\w\-]|\.\d)")
_PHONE_NATIONAL = re.compile(r"(?:\(0\d{1,4}\)\s?|0\d{1,4}[ /\-])\d{2,8}(?:[ \-]\d{2,6}){0,3}(?![\w\-]|[.:/]\d)")
# national numbers without a trunk 0 (ES/PT/PL 9 digits, IT mobiles 3xx): reported only next to a phone cue
_PHONE_NO_TRUNK = re.compile(r"[1-9]\d{1,2}(?:[ .\-]\d{2,4}){2,3}(?![\w\-]|[.:/]\d)|[1-9]\d{8,9}(?![\w\-]|[.:/]\d)")
_PHONE_FR = re.compile(r"0[1-9](?:[ .]\d{2}){4}(?![\w\-]|\.\d)")


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _phone_ctx(text: str, lower: str, start: int, window: int) -> bool:
    if _PHONE_CTX.search(lower, max(0, start - window), start):
        return True
    return bool(_PHONE_HEADER.search(column_header(lower, start)))


def detect_phone(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    if "+" in text or "00" in text:
        for m_start, m_end, m in doc.digits.finditer(_PHONE_INTL):
            if not before_ok(text, m_start, "+-."):
                continue
            n = _digits(m.group())
            if 8 <= n <= 15:
                score = 0.9 if _phone_ctx(text, lower, m_start, 32) else 0.8
                yield Finding("phone", m_start, m_end, score, m.group(), 2)
    nanp = list(doc.digits.finditer(_PHONE_NANP))
    if "(" in text:
        nanp += doc.digits.finditer(_PHONE_NANP_PAREN)
    for m_start, m_end, m in nanp:
        if not before_ok(text, m_start, "+-."):
            continue
        if _phone_ctx(text, lower, m_start, 32):
            score = 0.9
        else:
            score = 0.4 if _PHONE_NEG_CTX.search(lower, max(0, m_start - 32), m_start) else 0.75
        yield Finding("phone", m_start, m_end, score, m.group(), 2)
    for rx, base in ((_PHONE_FR, 0.7), (_PHONE_NATIONAL, 0.45)):
        for m_start, m_end, m in doc.digits.finditer(rx):
            if not before_ok(text, m_start, "+-.:/"):
                continue
            n = _digits(m.group())
            if not 9 <= n <= 12:
                continue
            if _phone_ctx(text, lower, m_start, 40):
                score = 0.85
            elif _PHONE_NEG_CTX.search(lower, max(0, m_start - 40), m_start):
                score = 0.3
            else:
                score = base
            yield Finding("phone", m_start, m_end, score, m.group(), 2)
    for m_start, m_end, m in doc.digits.finditer(_PHONE_NO_TRUNK):
        if not before_ok(text, m_start, "+-.:/") or not 9 <= _digits(m.group()) <= 10:
            continue
        if _PHONE_CTX_STRICT.search(lower, max(0, m_start - 24), m_start) and not _PHONE_NEG_CTX.search(
            lower, max(0, m_start - 24), m_start
        ):
            yield Finding("phone", m_start, m_end, 0.8, m.group(), 2)


# ---------------------------------------------------------------- payment card
# (?<!\d) and the like: a match never starts inside a run of digits (before_ok rejects those starts anyway), so a
# long digit run costs one attempt per run, not one per digit; separators: one or two spaces, '-', '.', '/'
_CARD = re.compile(
    r"(?<!\d)(?:\d{4}( {1,2}|[\-./])\d{4}\1\d{4}\1\d{1,7}|\d{4}( {1,2}|[\-./])\d{6}\2\d{4,5}|\d{12,19})"
    r"(?![\w\-]|[./]\d)"
)
# a card word in the languages covered: with one, any Luhn-valid 13-19 digit number is a card (issuers
# outside card_network's list); "paid"/"payment" are not enough there (Luhn-valid order numbers)
_CARD_WORD = re.compile(r"card|\bkart|karte\b|tarjeta|\bcart(?:e|a|ão|ao)\b|kaart|カード|\bpan\b")
_CARD_CTX = re.compile(r"card|visa|master|amex|american express|discover|credit|debit|\bcc\b|payment|\bpan\b|paid")


def detect_credit_card(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for m_start, m_end, m in doc.digits.finditer(_CARD):
        value = m.group()
        if not before_ok(text, m_start, "-./"):
            continue
        ctx = context_around(lower, m_start, m_end, 40)
        if not checksums.card_ok(value, any_issuer=_CARD_WORD.search(ctx) is not None):
            continue
        separated = not value.isdigit()
        score = 0.99 if _CARD_CTX.search(ctx) else (0.9 if separated and m.group(1) != "." else 0.75)
        yield Finding("credit_card", m_start, m_end, score, value, 3)


# ---------------------------------------------------------------- IBAN
# found from its check digits; the two country letters before them are checked in Python
_IBAN_TAIL = re.compile(
    r"(?<![A-Za-z0-9]{3})\d{2}(?:(?: {1,2}|[\-.])?[A-Za-z0-9]{4}){2,8}(?:(?: {1,2}|[\-.])?[A-Za-z0-9]{1,3})?(?![\w\-])"
)


_IBAN_LAST_GROUP = re.compile(r"(?: {1,2}|[\-.])[A-Za-z0-9]{1,7}\Z")


def detect_iban(doc: Doc) -> Iterator[Finding]:
    text = doc.text
    for m_start, m_end, _m in doc.digits.finditer(_IBAN_TAIL):
        start = m_start - 2
        if start < 0 or not text[start:m_start].isalpha() or not text[start:m_start].isascii():
            continue
        if not before_ok(text, start, "-"):
            continue
        value = text[start:m_end]
        if checksums.iban_ok(value):
            yield Finding("iban", start, m_end, 0.98, value, 3)
            continue
        # the optional trailing group can swallow a following word: retry without it
        trimmed = _IBAN_LAST_GROUP.sub("", value)
        if trimmed != value and checksums.iban_ok(trimmed):
            yield Finding("iban", start, start + len(trimmed), 0.98, trimmed, 3)


# ---------------------------------------------------------------- national IDs
_SSN = re.compile(r"(\d{3})( {1,2}|[\-./])(\d{2})\2(\d{4})(?![\w\-]|[./]\d)")
_NINE = re.compile(r"\d{9}(?![\w\-]|\.\d)")
_SSN_CTX = re.compile(r"ssn|social security|social sec|\bss#|taxpayer|\btin\b|itin")
_NINO_TAIL = re.compile(r"\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w\-])")
_NINO_CTX = re.compile(r"national insurance|\bni\b|nino|ni number|ni no")
_DNI = re.compile(r"(?<!\d)\d{7,8}-?[A-Z](?![\w\-])")
_DNI_CTX = re.compile(r"\bdni\b|\bnie\b|\bnif\b|documento|identidad")
_BSN_CTX = re.compile(r"\bbsn\b|burgerservice|sofinummer|citizen service")
_AADHAAR = re.compile(r"(?<!\d)[2-9]\d{3}([ \-]?)\d{4}\1\d{4}(?![\w\-]|\.\d)")
_AADHAAR_CTX = re.compile(r"aadhaar|aadhar|\buid\b|uidai")
_CF_TAIL = re.compile(r"\d{2}[A-EHLMPR-Ta-ehlmpr-t]\d{2}[A-Za-z]\d{3}[A-Za-z](?![\w\-])")
_SIN = re.compile(r"\d{3}([ \-]?)\d{3}\1\d{3}(?![\w\-]|\.\d)")
_SIN_CTX = re.compile(r"\bsin\b|social insurance")
_NUM_BEFORE = "-+."
_ID_CUE_KIND = {
    **dict.fromkeys(
        ["ssn", "social security", "social sec", "ss#", "taxpayer", "tin", "itin"],
        ("us_ssn", checksums.us_ssn_ok, _NINE),
    ),
    **dict.fromkeys(
        ["bsn", "burgerservicenummer", "sofinummer", "citizen service"], ("nl_bsn", checksums.nl_bsn_ok, _NINE)
    ),
    **dict.fromkeys(["sin", "social insurance"], ("ca_sin", checksums.ca_sin_ok, _SIN)),
}
register_cues("id", _ID_CUE_KIND, right_boundary=True)


def _ctx(lower: str, start: int, rx: re.Pattern[str], window: int = 40) -> bool:
    return rx.search(lower, max(0, start - window), start) is not None


def detect_national_ids(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for m_start, m_end, m in doc.digits.finditer(_SSN):
        if before_ok(text, m_start, _NUM_BEFORE + "/") and checksums.us_ssn_ok(m.group()):
            # dots and slashes also separate dates and versions: those need the SSN cue
            score = 0.95 if _ctx(lower, m_start, _SSN_CTX) else (0.8 if m.group(2) in ("-", " ") else 0.3)
            if score < 0.9 and (_ctx(lower, m_start, _PHONE_NEG_CTX) or _ctx(lower, m_start, _PHONE_CTX)):
                score = 0.4
            yield Finding("us_ssn", m_start, m_end, score, m.group(), 3)
    # unformatted 9-digit numbers (SSN, BSN) and SINs count only right after their context words
    for c_start, c_end in doc.cues("id"):
        if c_start > 0 and lower[c_start - 1].isalnum():
            continue
        kind, ok, rx = _ID_CUE_KIND[lower[c_start:c_end]]
        for m in rx.finditer(text, c_end, min(len(text), c_end + 40)):
            if before_ok(text, m.start(), _NUM_BEFORE) and ok(m.group()):
                yield Finding(kind, m.start(), m.end(), 0.9, m.group(), 3)
            break
    for m_start, m_end, _m in doc.digits.finditer(_NINO_TAIL):
        start = m_start - 2 if text[m_start - 1 : m_start] != " " else m_start - 3
        if start < 0 or not text[start : start + 2].isupper() or not text[start : start + 2].isascii():
            continue
        value = text[start:m_end]
        if before_ok(text, start, "-") and checksums.uk_nino_ok(value):
            score = 0.95 if _ctx(lower, start, _NINO_CTX) else 0.8
            yield Finding("uk_nino", start, m_end, score, value, 3)
    for m_start, m_end, _m in doc.digits.finditer(_DNI):
        start = m_start - 1 if text[m_start - 1 : m_start] in ("X", "Y", "Z") and m_start > 0 else m_start
        value = text[start:m_end]
        if before_ok(text, start, "-") and checksums.es_dni_ok(value):
            yield Finding("es_dni", start, m_end, 0.95 if _ctx(lower, start, _DNI_CTX) else 0.8, value, 3)
    for m_start, m_end, m in doc.digits.finditer(_AADHAAR):
        if before_ok(text, m_start, _NUM_BEFORE) and checksums.in_aadhaar_ok(m.group()):
            score = 0.95 if _ctx(lower, m_start, _AADHAAR_CTX) else (0.7 if m.group(1) == " " else 0.35)
            yield Finding("in_aadhaar", m_start, m_end, score, m.group(), 3)
    for m_start, m_end, _m in doc.digits.finditer(_CF_TAIL):
        start = m_start - 6
        if start < 0 or not text[start:m_start].isalpha() or not text[start:m_start].isascii():
            continue
        value = text[start:m_end]
        if before_ok(text, start, "-") and checksums.it_codice_fiscale_ok(value):
            yield Finding("it_fiscal_code", start, m_end, 0.95, value, 3)


# ---------------------------------------------------------------- IP address
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?![\w\-]|\.\d)")
_IPV4_SEED = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")
# starts with ':' so re skips ahead in C; needs a hex digit next to the colons, so a run of colons seeds nothing
_IPV6_SEED = re.compile(r":(?:[0-9A-Fa-f]{1,4}:|:[0-9A-Fa-f]|(?<=[0-9A-Fa-f]:):)")
_IPV6 = re.compile(
    r"(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4})(?![\w:])|::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}(?![\w:])"
)
_VERSION_CTX = re.compile(
    r"(?:\bversion|\bver\.?|\brelease|\bv|==|>=|<=|~=|@|\bfirmware|\bbuild|\boid|"
    r"\b(?:upgrade|downgrade|update)d?(?: from| to)?)"
    r"\s*[:=]?\s*$"
)
# well-known public resolvers: infrastructure, not anyone's address
_PUBLIC_SERVICE_IPS = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112"})


def detect_ip(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for seed in _IPV4_SEED.finditer(text):
        lo = seed.start()
        while lo > 0 and text[lo - 1].isdigit() and seed.start() - lo < 3:
            lo -= 1
        m = _IPV4.match(text, lo)
        if m is None:
            continue
        m_start, m_end = m.start(), m.end()
        value = m.group()
        if not before_ok(text, m_start, ".-"):
            continue
        if text[m_end : m_end + 1] == "/" and value.endswith(".0"):
            continue  # a network in CIDR notation, not a host
        ip = ipaddress.IPv4Address(value)
        if ip.is_loopback or ip.is_unspecified or value.startswith("255.") or ip.is_multicast:
            continue
        if value in _PUBLIC_SERVICE_IPS:
            continue
        if _VERSION_CTX.search(context_before(lower, m_start, 16)):
            continue
        yield Finding("ip_address", m_start, m_end, 0.85, value, 2)
    if "::" not in text and text.count(":") < 5:
        return
    seen_end = -1
    for seed in _IPV6_SEED.finditer(text):
        if seed.start() < seen_end:
            continue
        lo = seed.start()
        while lo > 0 and (text[lo - 1] in "0123456789abcdefABCDEF:") and seed.start() - lo < 40:
            lo -= 1
        m = _IPV6.match(text, lo)
        if m is None or m.end() <= seed.start():
            continue
        seen_end = m.end()
        value = m.group()
        if not before_ok(text, m.start(), ":.") or value.count(":") < 2 or not any(c.isdigit() for c in value):
            continue
        try:
            ip6 = ipaddress.IPv6Address(value)
        except ValueError:
            continue
        if ip6.is_loopback or ip6.is_unspecified:
            continue
        yield Finding("ip_address", m.start(), m.end(), 0.85, value, 2)


# ---------------------------------------------------------------- date of birth
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# month names of es/fr/de/it/pt/pl/nl (genitive forms for Polish), matched on the lowercased text
_INTL_MONTHS = trie_pattern(
    """
enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
janvier février fevrier mars avril mai juin juillet août aout septembre octobre novembre décembre decembre
januar jänner jaenner februar märz maerz april mai juni juli august september oktober november dezember
gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre
janeiro fevereiro março marco abril maio junho julho agosto setembro outubro novembro dezembro
stycznia lutego marca kwietnia maja czerwca lipca sierpnia września wrzesnia października pazdziernika
listopada grudnia januari februari maart april mei juni juli augustus september oktober november december
""".split()  # noqa: SIM905
)
_DATE = re.compile(
    rf"(?:(?:19|20)\d{{2}}[\-/.](?:0?[1-9]|1[0-2])[\-/.](?:0?[1-9]|[12]\d|3[01])"
    rf"|(?:0?[1-9]|[12]\d|3[01])[\-/.](?:0?[1-9]|[12]\d|3[01])[\-/.](?:19|20)?\d{{2}}"
    rf"|{_MONTHS} (?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,? (?:19|20)\d{{2}}"
    rf"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?(?: of)? {_MONTHS},? (?:19|20)\d{{2}}"
    rf"|(?:0?[1-9]|[12]\d|3[01])(?:\.|º|er)? ?(?:de )?(?:{_INTL_MONTHS})(?: de)?,? (?:19|20)\d{{2}}"
    rf"|(?:19|20)\d{{2}}年(?:0?[1-9]|1[0-2])月(?:0?[1-9]|[12]\d|3[01])日)(?![\w\-/]|\.\d)"
)
_DOB_WORDS = [
    "date of birth",
    "dob",
    "d.o.b",
    "born",
    "birth date",
    "birthdate",
    "birthday",
    "geburtsdatum",
    "geboren",
    "fecha de nacimiento",
    "né le",
    "née le",
    "data di nascita",
    "bday",
    "date de naissance",
    "né(e) le",
    "né",
    "née",
    "nacido el",
    "nacida el",
    "nacido en",
    "nacida en",
    "fecha de nac",
    "f. nac",
    "fec. nac",
    "nato il",
    "nata il",
    "nato a",
    "nata a",
    "data de nascimento",
    "nascido em",
    "nascida em",
    "nascido a",
    "nascida a",
    "data urodzenia",
    "urodzony",
    "urodzona",
    "urodzon",
    "geboortedatum",
    "geb.",
    "födelsedatum",
    "fødselsdato",
    "fødselsdag",
    "syntymäaika",
    "дата рождения",
    "生年月日",
    "出生日期",
]
register_cues("dob", _DOB_WORDS)
_DOB_HEADER = re.compile(r"dob\b|birth|geburt|nacimiento|naissance|nascita|nascimento|urodzenia|geboorte")
register_cues(
    "dob_header", ["birth", "geburt", "nacimiento", "naissance", "nascita", "nascimento", "urodzenia", "geboorte"]
)
register_cues("dob_header", ["dob"], right_boundary=True)


def detect_dob(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    # context first: dates are everywhere, dates of birth only after a cue (or in a "dob" column)
    seen: set[int] = set()
    for c_start, c_end in doc.cues("dob"):
        if c_start > 0 and lower[c_start - 1].isalpha():
            continue
        for m in _DATE.finditer(lower, c_end, min(len(lower), c_end + 40)):
            if m.start() not in seen and before_ok(lower, m.start(), "-/."):
                seen.add(m.start())
                yield Finding("date_of_birth", m.start(), m.end(), 0.9, text[m.start() : m.end()], 2)
            break
    if "," in text or "\t" in text or "|" in text:
        for h_start, h_end in doc.cues("dob_header"):
            # a table header: dates in the rows below it (same separator on every line), same column
            line_end = lower.find("\n", h_end)
            if line_end == -1:
                continue
            header = lower[lower.rfind("\n", 0, h_start) + 1 : line_end]
            sep = next((c for c in (",", "\t", "|", ";") if header.count(c) >= 2), None)
            if sep is None:
                continue
            block_end = line_end
            for _ in range(200):
                nxt = lower.find("\n", block_end + 1)
                nxt = len(lower) if nxt == -1 else nxt
                if lower.count(sep, block_end + 1, nxt) < 2:
                    break
                block_end = nxt
            for m in _DATE.finditer(lower, line_end, block_end):
                if m.start() in seen or not before_ok(lower, m.start(), "-/."):
                    continue
                if _DOB_HEADER.search(column_header(lower, m.start())):
                    seen.add(m.start())
                    yield Finding("date_of_birth", m.start(), m.end(), 0.85, text[m.start() : m.end()], 2)
