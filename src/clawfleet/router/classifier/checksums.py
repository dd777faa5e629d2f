"""Check-digit validators used to keep false positives down.

Pure functions over strings, no regexes: each takes the candidate as matched
(separators allowed) and says whether it is a structurally valid identifier.
"""

from __future__ import annotations

import string

_DIGITS = frozenset(string.digits)


def digits_only(text: str) -> str:
    return "".join(filter(_DIGITS.__contains__, text))  # in C, no generator step per character


def luhn_ok(number: str) -> bool:
    """Luhn (mod 10) check over the digits of ``number``."""
    digits = digits_only(number)
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN ranges) of the card networks in use, with valid lengths.
def card_network(digits: str) -> str | None:
    n = len(digits)
    if n < 12 or n > 19:
        return None
    p2 = int(digits[:2])
    p3 = int(digits[:3])
    p4 = int(digits[:4])
    p6 = int(digits[:6])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if p2 in (50, 56, 57, 58, 63, 67) and 12 <= n <= 19:
        return "maestro"
    return None


def card_ok(text: str, *, any_issuer: bool = False) -> bool:
    """A card number: Luhn and a known issuer range, or (``any_issuer``, after a card word) Luhn and 13 to
    19 digits, for the networks outside the list (Mir, RuPay, Troy, Verve, Hipercard, UATP, ...)."""
    digits = digits_only(text)
    known = card_network(digits) is not None or (any_issuer and 13 <= len(digits) <= 19)
    if not known or not luhn_ok(digits):
        return False
    # All-same-digit and trivially sequential strings are fillers, not cards.
    return len(set(digits)) > 1


# ISO 13616 IBAN lengths per country.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NL": 18,
    "NO": 15,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SC": 31,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
}


def iban_ok(text: str) -> bool:
    """ISO 13616: country length table and ISO 7064 mod 97-10 == 1."""
    compact = "".join(ch for ch in text if ch.isalnum()).upper()
    if len(compact) < 15 or IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    total = 0
    for ch in rearranged:
        if ch.isdigit():
            total = (total * 10 + (ord(ch) - 48)) % 97
        elif "A" <= ch <= "Z":
            total = (total * 100 + (ord(ch) - 55)) % 97
        else:
            return False
    return total == 1


# SSA never issues these; they show up in documentation and test data.
_SSN_ADVERTISED = frozenset({"078051120", "219099999", "123456789"})


def us_ssn_ok(text: str) -> bool:
    """US SSN structure: area not 000/666/900-999, group not 00, serial not 0000."""
    digits = digits_only(text)
    if len(digits) != 9 or digits in _SSN_ADVERTISED:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area == "000" or area == "666" or area[0] == "9":
        return False
    if group == "00" or serial == "0000":
        return False
    return len(set(digits)) > 1


def ca_sin_ok(text: str) -> bool:
    """Canadian Social Insurance Number: 9 digits, Luhn, not starting with 0 or 8."""
    digits = digits_only(text)
    return len(digits) == 9 and digits[0] not in "08" and luhn_ok(digits)


def nl_bsn_ok(text: str) -> bool:
    """Dutch BSN: 9 digits, 11-proof with weights 9..2 and -1."""
    digits = digits_only(text)
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - int(digits[8])
    return total % 11 == 0


_NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino_ok(text: str) -> bool:
    """UK National Insurance number prefix rules (no check digit exists)."""
    compact = "".join(ch for ch in text if ch.isalnum()).upper()
    if len(compact) != 9:
        return False
    a, b = compact[0], compact[1]
    if a in "DFIQUV" or b in "DFIQUVO":
        return False
    if compact[:2] in _NINO_BAD_PREFIX:
        return False
    return compact[2:8].isdigit() and compact[8] in "ABCD"


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_ok(text: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter), mod 23."""
    compact = "".join(ch for ch in text if ch.isalnum()).upper()
    if len(compact) != 9:
        return False
    head = compact[:8]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    if not head.isdigit():
        return False
    return _DNI_LETTERS[int(head) % 23] == compact[8]


# Verhoeff tables, for the Indian Aadhaar number.
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_ok(text: str) -> bool:
    digits = digits_only(text)
    if not digits:
        return False
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def in_aadhaar_ok(text: str) -> bool:
    digits = digits_only(text)
    return len(digits) == 12 and digits[0] not in "01" and verhoeff_ok(digits)


_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23),
            strict=True,
        )
    ),
}


def it_codice_fiscale_ok(text: str) -> bool:
    """Italian codice fiscale: 16 chars, check character over odd/even positions."""
    cf = text.upper()
    if len(cf) != 16 or not cf.isalnum():
        return False
    total = 0
    for i, ch in enumerate(cf[:15]):
        if i % 2 == 0:
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - 65
    return chr(65 + total % 26) == cf[15]
