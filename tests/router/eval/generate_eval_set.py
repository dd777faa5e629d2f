"""Deterministic generator of the classifier evaluation set (tests/router/eval/eval_set.jsonl).

Run: .venv/bin/python tests/router/eval/generate_eval_set.py   (rewrites eval_set.jsonl; same seed, same file)

Values are generated from the identifiers' own rules (Luhn, ISO 7064 mod 97, Verhoeff, mod 23, 11-proof, the
Italian check character), independently of the router's code, and placed in realistic agent traffic: chat
requests, application logs, code and config files, e-mails, CSV exports, clinical notes. Negatives are generated
look-alikes (UUIDs, git SHAs, versions, timestamps, order and tracking numbers, Luhn-failing card numbers,
placeholder keys) in the same kinds of text. Hand-written hard negatives and tricky positives live in
hard_cases.jsonl next to this file; the evaluation reads both.
"""

# ruff: noqa: E501 - long f-string templates read better unwrapped
from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

SEED = 20261126
OUT = Path(__file__).with_name("eval_set.jsonl")
R = random.Random(SEED)

FIRST = [
    "Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Priya", "Liam", "Fatima", "Noah", "Sofia", "Kenji",
    "Emma", "Mohammed", "Lucia", "Daniel", "Ingrid", "Tomasz", "Chloe", "Rahul", "Hannah", "Mateo", "Yuki",
    "Grace", "Oliver", "Amara", "Sarah", "Michael", "Elena", "David", "Thandiwe", "Bartholomew", "Siobhan",
    "Ngozi", "Anneliese", "Dmitri", "Camille", "Jonas", "Leila", "Patrick",
]  # fmt: skip
LAST = [
    "Garcia", "Smith", "Okafor", "Zhang", "Petrova", "Mendes", "Sharma", "O'Brien", "Haddad", "Williams",
    "Rossi", "Tanaka", "Dubois", "Khan", "Fernandez", "Cohen", "Larsen", "Kowalski", "Martin", "Gupta",
    "Schneider", "Silva", "Nakamura", "Hughes", "Brown", "Mensah", "Johnson", "Müller", "Novak", "Walsh",
]  # fmt: skip
DOMAINS = ["gmail.com", "outlook.com", "acme-corp.com", "example.org", "uni-heidelberg.de", "mail.co.uk",
           "fastmail.fm", "company.io", "health-partners.net", "yahoo.fr"]  # fmt: skip
STREETS = ["Oak", "Maple", "Pennsylvania", "Elm", "Baker", "Church", "Victoria", "Market", "Sunset", "Highland"]
SUFFIXES = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard", "St", "Ave", "Rd"]
CITIES = [("Springfield", "IL", "62704"), ("Austin", "TX", "73301"), ("Portland", "OR", "97205"),
          ("Boston", "MA", "02118"), ("Denver", "CO", "80202")]  # fmt: skip
CONDITIONS = ["type 2 diabetes", "hypertension", "major depressive disorder", "asthma", "HIV", "breast cancer",
              "epilepsy", "bipolar disorder", "chronic kidney disease", "atrial fibrillation"]  # fmt: skip
MEDS = ["metformin", "lisinopril", "sertraline", "insulin", "warfarin", "levothyroxine"]


class B:
    """Text builder that records labelled spans."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.parts: list[str] = []
        self.pos = 0
        self.ents: list[dict[str, object]] = []

    def t(self, text: str) -> B:
        self.parts.append(text)
        self.pos += len(text)
        return self

    def e(self, etype: str, value: str) -> B:
        self.ents.append({"type": etype, "start": self.pos, "end": self.pos + len(value)})
        return self.t(value)

    def done(self) -> dict[str, object]:
        text = "".join(self.parts)
        return {"kind": self.kind, "text": text, "entities": self.ents,
                "classes": sorted({str(e["type"]) for e in self.ents})}  # fmt: skip


# ---------------------------------------------------------------- value generators (independent of the router)
def luhn_digit(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card() -> str:
    kind = R.choice(["visa", "mc", "mc2", "amex", "discover"])
    prefix, length = {"visa": ("4", 16), "mc": (str(R.randint(51, 55)), 16), "mc2": (str(R.randint(2221, 2720)), 16),
                      "amex": (R.choice(["34", "37"]), 15), "discover": ("6011", 16)}[kind]  # fmt: skip
    body = prefix + "".join(R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    num = body + luhn_digit(body)
    style = R.choice(["plain", "space", "dash"])
    if style == "plain":
        return num
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join([num[:4], num[4:10], num[10:]])
    return sep.join(num[i : i + 4] for i in range(0, 16, 4))


def bad_card() -> str:
    c = card()
    digits = [ch for ch in c]
    for i in range(len(digits) - 1, -1, -1):
        if digits[i].isdigit():
            digits[i] = str((int(digits[i]) + R.randint(1, 9)) % 10)
            break
    return "".join(digits)


IBAN_FORMATS = {"DE": "n18", "GB": "a4n14", "FR": "n10c11n2", "ES": "n20", "NL": "a4n10", "IT": "a1n10c12",
                "CH": "n17", "BE": "n12", "AT": "n16", "PL": "n24"}  # fmt: skip


def _bban(fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        kind = fmt[i]
        j = i + 1
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        n = int(fmt[i + 1 : j])
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[kind]
        out.append("".join(R.choice(pool) for _ in range(n)))
        i = j
    return "".join(out)


def iban() -> str:
    cc = R.choice(list(IBAN_FORMATS))
    bban = _bban(IBAN_FORMATS[cc])
    rearranged = bban + cc + "00"
    num = int("".join(str(int(ch, 36)) for ch in rearranged))
    check = 98 - num % 97
    value = f"{cc}{check:02d}{bban}"
    if R.random() < 0.6:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ssn(dashed: bool = True) -> str:
    while True:
        area = R.randint(1, 899)
        if area != 666:
            break
    g, s = R.randint(1, 99), R.randint(1, 9999)
    return f"{area:03d}-{g:02d}-{s:04d}" if dashed else f"{area:03d}{g:02d}{s:04d}"


def nino() -> str:
    first = R.choice("ABCEGHJKLMNPRSTWXYZ")
    second = R.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        second = R.choice("ABCEGHJKLMNPRSTWXYZ")
    d = "".join(R.choice(string.digits) for _ in range(6))
    suffix = R.choice("ABCD")
    return f"{first}{second} {d[:2]} {d[2:4]} {d[4:]} {suffix}" if R.random() < 0.5 else f"{first}{second}{d}{suffix}"


def dni() -> str:
    n = R.randint(10000000, 99999999)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def bsn() -> str:
    while True:
        d = [R.randint(0, 9) for _ in range(8)]
        total = sum(x * w for x, w in zip(d, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10 and d[0] != 0:
            return "".join(map(str, d)) + str(last)


_VD = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
       [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
       [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
       [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]  # fmt: skip
_VP = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
       [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
       [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]  # fmt: skip
_VINV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def aadhaar() -> str:
    body = str(R.randint(2, 9)) + "".join(R.choice(string.digits) for _ in range(10))
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = _VD[c][_VP[(i + 1) % 8][int(ch)]]
    num = body + str(_VINV[c])
    return f"{num[:4]} {num[4:8]} {num[8:]}"


_CF_ODD = dict(zip(string.digits + string.ascii_uppercase,
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8,
                                                          12, 14, 16, 10, 22, 25, 24, 23], strict=True))  # fmt: skip


def codice_fiscale() -> str:
    letters = "".join(R.choice(string.ascii_uppercase) for _ in range(6))
    cf = (letters + f"{R.randint(40, 99)}" + R.choice("ABCDEHLMPRST") + f"{R.randint(1, 71):02d}"
          + R.choice(string.ascii_uppercase) + f"{R.randint(100, 999)}")  # fmt: skip
    total = sum(_CF_ODD[ch] if i % 2 == 0 else (int(ch) if ch.isdigit() else ord(ch) - 65) for i, ch in enumerate(cf))
    return cf + chr(65 + total % 26)


def sin() -> str:
    body = str(R.choice([1, 2, 3, 4, 5, 6, 7, 9])) + "".join(R.choice(string.digits) for _ in range(7))
    num = body + luhn_digit(body)
    return f"{num[:3]} {num[3:6]} {num[6:]}"


def ipv4(public: bool | None = None) -> str:
    if public is False or (public is None and R.random() < 0.4):
        return R.choice([f"10.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}",
                         f"192.168.{R.randint(0, 255)}.{R.randint(1, 254)}",
                         f"172.{R.randint(16, 31)}.{R.randint(0, 255)}.{R.randint(1, 254)}"])  # fmt: skip
    return f"{R.choice([23, 45, 66, 81, 93, 104, 151, 185, 203, 212])}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}"


def ipv6() -> str:
    groups = [f"{R.randint(0, 65535):x}" for _ in range(8)]
    if R.random() < 0.5:
        return "2001:db8:" + ":".join(groups[2:4]) + "::" + groups[7]
    return ":".join(groups)


def phone() -> tuple[str, bool]:
    """A phone number and whether the template must give context (formats that are ambiguous alone)."""
    fmt = R.randrange(12)
    d = lambda n: "".join(R.choice(string.digits) for _ in range(n))  # noqa: E731
    area = f"{R.randint(2, 9)}{d(2)}"
    exch = f"{R.randint(2, 9)}{d(2)}"
    return [
        (f"+1 {area}-{exch}-{d(4)}", False), (f"({area}) {exch}-{d(4)}", False), (f"{area}-{exch}-{d(4)}", False),
        (f"+1 ({area}) {exch}-{d(4)}", False), (f"+44 20 {d(4)} {d(4)}", False), (f"+44 7{d(3)} {d(6)}", False),
        (f"+49 30 {d(8)}", False), (f"+33 {R.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}", False),
        (f"+91 {R.randint(7, 9)}{d(4)} {d(5)}", False), (f"+61 2 {d(4)} {d(4)}", False),
        (f"0{R.randint(6, 7)} {d(2)} {d(2)} {d(2)} {d(2)}", False), (f"020 {d(4)} {d(4)}", True),
    ][fmt]  # fmt: skip


def email() -> str:
    f, la = R.choice(FIRST).lower(), R.choice(LAST).lower().replace("'", "").replace("ü", "ue")
    local = R.choice([f"{f}.{la}", f"{f[0]}{la}", f"{f}_{la}{R.randint(1, 99)}", f"{f}+billing", f"{la}.{f}"])
    return f"{local}@{R.choice(DOMAINS)}"


def name() -> str:
    return f"{R.choice(FIRST)} {R.choice(LAST)}"


def address() -> str:
    style = R.randrange(4)
    if style == 0:
        city, st, z = R.choice(CITIES)
        return f"{R.randint(1, 9999)} {R.choice(STREETS)} {R.choice(SUFFIXES)}, {city}, {st} {z}"
    if style == 1:
        return f"{R.randint(1, 300)} {R.choice(STREETS)} {R.choice(SUFFIXES)}"
    if style == 2:
        return f"{R.choice(['Haupt', 'Linden', 'Garten', 'Schiller', 'Berg'])}straße {R.randint(1, 120)}, {R.randint(10000, 99999)} Berlin"
    return f"{R.randint(1, 99)} rue de la {R.choice(['Paix', 'République', 'Gare', 'Liberté'])}, 750{R.randint(10, 20)} Paris"


def dob() -> str:
    y, m, d = R.randint(1940, 2005), R.randint(1, 12), R.randint(1, 28)
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]  # fmt: skip
    return R.choice([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{d:02d}.{m:02d}.{y}", f"{months[m - 1]} {d}, {y}",
                     f"{d} {months[m - 1]} {y}"])  # fmt: skip


def rnd(pool: str, n: int) -> str:
    return "".join(R.choice(pool) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"


def b64url(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def secret(kind: str) -> str:
    if kind == "aws_access_key":
        return "AKIA" + rnd(string.ascii_uppercase + "234567", 16)
    if kind == "aws_secret_key":
        return rnd(ALNUM + "/+", 40)
    if kind == "github_token":
        return (
            R.choice(["ghp_", "gho_", "ghs_"]) + rnd(ALNUM, 36)
            if R.random() < 0.7
            else "github_pat_" + rnd(ALNUM, 22) + "_" + rnd(ALNUM, 59)
        )
    if kind == "slack_token":
        return f"xoxb-{rnd(string.digits, 12)}-{rnd(string.digits, 13)}-{rnd(ALNUM, 24)}"
    if kind == "openai_api_key":
        return R.choice(["sk-proj-", "sk-svcacct-", "sk-"]) + rnd(B64URL, 48 if R.random() < 0.5 else 120)
    if kind == "anthropic_api_key":
        return "sk-ant-api03-" + rnd(B64URL, 93) + "AA"
    if kind == "google_api_key":
        return "AIza" + rnd(B64URL, 35)
    if kind == "stripe_key":
        return R.choice(["sk_live_", "rk_live_"]) + rnd(ALNUM, 24)
    if kind == "jwt":
        header = b64url({"alg": R.choice(["HS256", "RS256"]), "typ": "JWT"})
        payload = b64url(
            {"sub": str(R.randint(1000, 99999)), "iat": R.randint(1600000000, 1800000000), "scope": "read"}
        )
        return f"{header}.{payload}.{rnd(B64URL, 43)}"
    if kind == "private_key":
        label = R.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
        lines = "\n".join(rnd(ALNUM + "+/", 64) for _ in range(R.randint(3, 8)))
        return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----"
    if kind == "generic_secret":
        return rnd(ALNUM, R.choice([24, 32, 40])) if R.random() < 0.6 else rnd("0123456789abcdef", 32)
    if kind == "password":
        return R.choice(["Tr0ub4dor&3", "hunter2!", "S3cure-Pa55", "Winter2024!", "P@ssw0rd123", "correct-horse-9",
                         "qwerty!7Z", "Mxy8#pq2", "blue42Monkey"])  # fmt: skip
    raise ValueError(kind)


# ---------------------------------------------------------------- positive templates
def t_chat_contact() -> dict[str, object]:
    b = B("chat")
    n, em = name(), email()
    p, _ = phone()
    b.t(
        R.choice(
            ["Can you write a follow-up email to ", "Please draft a polite reminder for ", "Summarize my call with "]
        )
    )
    b.e("person_name", n).t(" (").e("email", em).t(")")
    b.t(R.choice([" and add their mobile ", ". Their phone number is ", ", call back on "])).e("phone", p)
    b.t(R.choice([" before Friday.", ". Keep it short.", " - mention the delayed shipment."]))
    return b.done()


def t_chat_payment() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["The customer says their card ", "Charge failed for card ", "Refund the payment made with card "]))
    b.e("credit_card", card())
    b.t(R.choice([" was declined twice. What should I tell them?", " - can you check why?", "; expiry 09/27."]))
    if R.random() < 0.5:
        b.t(" Wire the refund to IBAN ").e("iban", iban()).t(" instead.")
    return b.done()


def t_chat_iban() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["Update the supplier's bank details to ", "Pay invoice 2024-118 to account ", "New IBAN: "]))
    b.e("iban", iban()).t(R.choice([" (BIC DEUTDEFF).", ".", " and confirm by email."]))
    return b.done()


def t_form_row() -> dict[str, object]:
    b = B("form")
    b.t("name,email,phone,dob,ssn\n")
    for _ in range(R.randint(1, 3)):
        p, _ = phone()
        b.e("person_name", name()).t(",").e("email", email()).t(",").e("phone", p).t(",")
        b.e("date_of_birth", dob()).t(",").e("us_ssn", ssn()).t("\n")
    b.t("Find duplicate rows in this CSV.")
    # in a CSV the column header is the context for the DOB; mark only what a reader could tell
    return b.done()


def t_national_id() -> dict[str, object]:
    b = B(R.choice(["chat", "email"]))
    which = R.randrange(7)
    if which == 0:
        b.t(R.choice(["My social security number is ", "SSN: ", "Applicant SSN "])).e("us_ssn", ssn(R.random() < 0.7))
    elif which == 1:
        b.t(R.choice(["National Insurance number: ", "NI number ", "His NINO is "])).e("uk_nino", nino())
    elif which == 2:
        b.t(R.choice(["DNI: ", "Número de DNI ", "NIF del cliente: "])).e("es_dni", dni())
    elif which == 3:
        b.t(R.choice(["BSN: ", "Burgerservicenummer ", "her BSN is "])).e("nl_bsn", bsn())
    elif which == 4:
        b.t(R.choice(["Aadhaar number ", "Aadhaar: ", "UID (Aadhaar) "])).e("in_aadhaar", aadhaar())
    elif which == 5:
        b.t(R.choice(["Codice fiscale: ", "CF ", "codice fiscale del paziente "])).e("it_fiscal_code", codice_fiscale())
    else:
        b.t(R.choice(["SIN: ", "Social Insurance Number ", "Employee SIN "])).e("ca_sin", sin())
    b.t(
        R.choice(
            [" - please fill in the tax form.", ". Verify it against the record.", ".", " (from the onboarding packet)"]
        )
    )
    return b.done()


def t_log() -> dict[str, object]:
    b = B("log")
    for _ in range(R.randint(2, 5)):
        ts = f"2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}Z"
        b.t(f"{ts} {R.choice(['INFO', 'WARN', 'ERROR'])} ")
        r = R.random()
        if r < 0.35:
            b.t("login ok user=").e("email", email()).t(" ip=").e("ip_address", ipv4()).t(
                f" session={rnd('0123456789abcdef', 16)}\n"
            )
        elif r < 0.55:
            b.t("rate limit exceeded for client ").e("ip_address", ipv6() if R.random() < 0.4 else ipv4()).t(
                f" path=/api/v2/orders/{R.randint(1000, 99999)}\n"
            )
        elif r < 0.75:
            b.t(
                f"worker-{R.randint(1, 9)} processed batch {R.randint(100, 999)} in {R.randint(3, 900)}ms version=1.{R.randint(0, 30)}.{R.randint(0, 9)}\n"
            )
        else:
            b.t("payment declined card=").e("credit_card", card()).t(f" order=ORD-{R.randint(100000, 999999)}\n")
    b.t("Why are these requests failing?")
    return b.done()


def t_code_secret() -> dict[str, object]:
    b = B("code")
    kind = R.choice(["aws_access_key", "github_token", "slack_token", "openai_api_key", "anthropic_api_key",
                     "google_api_key", "stripe_key", "jwt", "private_key", "generic_secret", "password",
                     "aws_pair", "url_password"])  # fmt: skip
    b.t(R.choice(["This script fails with 401, can you fix it?\n\n", "Refactor this config loader:\n", "```python\n"]))
    if kind == "aws_pair":
        b.t('AWS_ACCESS_KEY_ID = "').e("aws_access_key", secret("aws_access_key")).t('"\n')
        b.t('AWS_SECRET_ACCESS_KEY = "').e("aws_secret_key", secret("aws_secret_key")).t('"\n')
    elif kind == "url_password":
        b.t(f'DATABASE_URL = "postgres://{R.choice(["app", "admin", "svc_orders"])}:').e("password", secret("password"))
        b.t(f'@db.internal:5432/{R.choice(["orders", "crm"])}"\n')
    elif kind == "jwt":
        b.t('headers = {"Authorization": "Bearer ').e("jwt", secret("jwt")).t('"}\n')
    elif kind == "private_key":
        b.t("key = '''").e("private_key", secret("private_key")).t("'''\n")
    elif kind == "generic_secret":
        var = R.choice(["client_secret", "WEBHOOK_SECRET", "api_token", "SIGNING_KEY", "auth_token"])
        b.t(f'{var} = "').e("generic_secret", secret("generic_secret")).t('"\n')
    elif kind == "password":
        style = R.randrange(3)
        pw = secret("password")
        if style == 0:
            b.t('db = connect(host="10.0.0.5", user="admin", password="'.replace("10.0.0.5", "db.local")).e(
                "password", pw
            ).t('")\n')
        elif style == 1:
            b.t("DB_PASSWORD=").e("password", pw).t("\n")
        else:
            b.t("smtp:\n  user: alerts\n  password: ").e("password", pw).t("\n")
    else:
        var = {"aws_access_key": "aws_access_key_id", "github_token": "GITHUB_TOKEN", "slack_token": "SLACK_BOT_TOKEN",
               "openai_api_key": "OPENAI_API_KEY", "anthropic_api_key": "ANTHROPIC_API_KEY",
               "google_api_key": "GOOGLE_API_KEY", "stripe_key": "STRIPE_SECRET"}[kind]  # fmt: skip
        b.t(f'os.environ["{var}"] = "').e(kind, secret(kind)).t('"\n')
    b.t(R.choice(["client = make_client()\nprint(client.ping())\n", "resp = requests.get(URL, timeout=5)\n", "```"]))
    return b.done()


def t_chat_secret_prose() -> dict[str, object]:
    b = B("chat")
    kind = R.choice(["github_token", "openai_api_key", "aws_access_key", "password", "slack_token"])
    if kind == "password":
        b.t(R.choice(["My password is ", "the wifi password is ", "Use password: "])).e("password", secret("password"))
        b.t(R.choice([" - why can't I log in?", ", please set up the router.", " for the staging admin."]))
    else:
        b.t(R.choice(["I pasted my token ", "here is the key: ", "Is this key still valid? "])).e(kind, secret(kind))
        b.t(R.choice([" - it keeps failing.", "", " Thanks!"]))
    return b.done()


def t_email_signature() -> dict[str, object]:
    b = B("email")
    n = name()
    p, _ = phone()
    b.t(R.choice(["Hi team,\n\nPlease find the signed contract attached.\n\nBest regards,\n",
                  "Hello,\nI'd like to reschedule our meeting to next week.\n\nThanks,\n"]))  # fmt: skip
    b.e("person_name", n).t("\n")
    b.t(R.choice(["Head of Procurement\n", "Senior Engineer\n", ""]))
    b.e("street_address", address()).t("\n")
    b.t(R.choice(["Tel: ", "Phone: ", "Mobile: "])).e("phone", p).t("\n").e("email", email()).t("\n")
    b.t("\nCan you summarize this email and draft a reply?")
    return b.done()


def t_medical() -> dict[str, object]:
    b = B("medical")
    n = name()
    b.t("Patient: ").e("person_name", n).t("\n")
    b.t(R.choice(["DOB: ", "Date of birth: "])).e("date_of_birth", dob()).t("\n")
    b.t(R.choice(["MRN: ", "Medical record number: "])).e(
        "medical_record_number", f"{R.randint(10000000, 99999999)}"
    ).t("\n")
    b.t("Assessment: patient has a history of ").e("health_info", R.choice(CONDITIONS)).t(", currently on ")
    b.e("health_info", R.choice(MEDS)).t(f" {R.choice([5, 10, 20, 500])} mg daily.\n")
    b.t("Rewrite this note in plain language for the patient.")
    return b.done()


def t_health_chat() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["My doctor says I have ", "I was diagnosed with ", "My son has "])).e(
        "health_info", R.choice(CONDITIONS)
    )
    b.t(
        R.choice(
            [
                ". What should I ask at my next appointment?",
                " - is it safe to travel?",
                ". Can you explain the treatment options?",
            ]
        )
    )
    return b.done()


def t_address_chat() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["Ship the replacement to ", "My new address is ", "Deliver to "])).e("street_address", address())
    b.t(R.choice([". Thanks!", " and send tracking by email.", "."]))
    return b.done()


def t_dob_chat() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["I was born on ", "Her date of birth is ", "DOB "])).e("date_of_birth", dob())
    b.t(R.choice([" - how old am I in days?", ". Fill in the insurance form.", "."]))
    return b.done()


def t_ip_chat() -> dict[str, object]:
    b = B("chat")
    b.t(R.choice(["Block traffic from ", "Our VPN exit is ", "Whitelist "])).e(
        "ip_address", ipv4(True) if R.random() < 0.7 else ipv6()
    )
    b.t(R.choice([" in the firewall.", " for the office.", " on the staging cluster."]))
    return b.done()


POSITIVE = [
    (t_chat_contact, 45), (t_chat_payment, 40), (t_chat_iban, 25), (t_form_row, 20), (t_national_id, 60),
    (t_log, 35), (t_code_secret, 80), (t_chat_secret_prose, 25), (t_email_signature, 30), (t_medical, 20),
    (t_health_chat, 15), (t_address_chat, 15), (t_dob_chat, 15), (t_ip_chat, 15),
]  # fmt: skip


# ---------------------------------------------------------------- generated negatives (look-alikes)
def uuid4() -> str:
    h = rnd("0123456789abcdef", 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def n_log() -> dict[str, object]:
    b = B("negative")
    for _ in range(R.randint(3, 6)):
        b.t(R.choice([
            f"2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d} {R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d},{R.randint(100, 999)} INFO request_id={uuid4()} status=200 duration={R.randint(1, 999)}ms\n",
            f"commit {rnd('0123456789abcdef', 40)}\nAuthor: ci-bot <ci-bot@users.noreply.github.com>\n".replace("ci-bot <ci-bot@users.noreply.github.com>", "ci-bot"),
            f"Successfully installed numpy-{R.randint(1, 2)}.{R.randint(0, 26)}.{R.randint(0, 9)} torch-2.{R.randint(0, 9)}.{R.randint(0, 3)}\n",
            f"order #{R.randint(1000000, 9999999)} shipped, tracking 1Z{rnd(string.ascii_uppercase + string.digits, 16)}\n",
            f"ts={R.randint(1600000000, 1800000000)} pid={R.randint(100, 65000)} mem={R.randint(100, 9000)}MB\n",
            f"listening on 0.0.0.0:{R.randint(1024, 65535)} and 127.0.0.1:{R.randint(1024, 65535)}\n",
            f"docker pull nginx@sha256:{rnd('0123456789abcdef', 64)}\n",
            f"build {R.randint(1000, 9999)} took {R.randint(1, 59)}m{R.randint(1, 59)}s (cache hit {R.randint(1, 99)}%)\n",
        ]))  # fmt: skip
    b.t("What happened in this log?")
    return b.done()


def n_code() -> dict[str, object]:
    b = B("negative")
    b.t(R.choice([
        f'TEST_CARD = "{bad_card()}"  # fails Luhn on purpose\nassert not is_valid(TEST_CARD)\n',
        'API_KEY = os.environ["OPENAI_API_KEY"]\nclient = OpenAI(api_key=API_KEY)\n',
        'password = getpass.getpass("Password: ")\nif not password:\n    raise SystemExit(1)\n',
        f'def checksum(data: bytes) -> str:\n    return hashlib.sha256(data).hexdigest()  # e.g. {rnd("0123456789abcdef", 64)}\n',
        f'version = "{R.randint(0, 9)}.{R.randint(0, 40)}.{R.randint(0, 99)}"\nrelease_date = "2026-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}"\n',
        f'id = UUID("{uuid4()}")\nparent = "{rnd("0123456789abcdef", 40)}"\n',
        f'MAX_RETRIES = {R.randint(2, 9)}\nTIMEOUT_MS = {R.randint(1000, 90000)}\nPORT = {R.randint(1024, 65535)}\n',
        f'color = "#{rnd("0123456789abcdef", 6)}"\nratio = {R.random():.6f}\n',
        'token = request.headers.get("Authorization", "").removeprefix("Bearer ")\n',
        f'mac = "{":".join(rnd("0123456789abcdef", 2) for _ in range(6))}"\n',
        f'price = {R.randint(1, 9999)}.{R.randint(10, 99)}\ntotal = price * {R.randint(2, 9)}\n',
        'OPENAI_API_KEY = "sk-your-api-key-here"\nANTHROPIC_API_KEY = "<your-key>"\n',
    ]))  # fmt: skip
    b.t(R.choice(["Explain this code.", "Add type hints.", "Write a unit test for it.", "Is there a bug here?"]))
    return b.done()


def n_chat() -> dict[str, object]:
    b = B("negative")
    b.t(R.choice([
        "Explain how TCP congestion control works, with an example.",
        "Write a haiku about autumn leaves.",
        f"Convert {R.randint(100, 9999)} USD to EUR at a rate of 0.{R.randint(80, 99)}.",
        f"What is {R.randint(1000, 99999)} * {R.randint(100, 999)}?",
        "Summarize the plot of Hamlet in three sentences.",
        f"Our Q{R.randint(1, 4)} revenue grew {R.randint(1, 40)}% to ${R.randint(1, 900)},{R.randint(100, 999)},{R.randint(100, 999)}. Draft a tweet.",
        "May I ask you to rewrite this paragraph in a friendlier tone?",
        "Will the new API version break backwards compatibility?",
        f"Schedule the sprint review for {R.choice(['Monday', 'Tuesday', 'Friday'])} at {R.randint(9, 17)}:00.",
        f"The meeting room holds {R.randint(4, 40)} people; book it for {R.randint(1, 4)} hours.",
        "What's the difference between a list and a tuple in Python?",
        "Our password policy requires 12 characters; write the help text for the reset page.",
        "Conference talk ideas about compilers?",
        f"ISBN 978-{R.randint(0, 9)}-{R.randint(100, 999)}-{R.randint(10000, 99999)}-{R.randint(0, 9)} - is this book any good?",
        f"Kubernetes pod crashloop: exit code {R.choice([1, 137, 143])}, restarts {R.randint(3, 50)}. Ideas?",
        "Research summary: global diabetes prevalence trends over the last decade.",
        f"Translate 'the invoice number is INV-{R.randint(10000, 99999)}' into German.",
        f"Set the cron to run at 0 {R.randint(0, 23)} * * * and retry {R.randint(1, 5)} times.",
    ]))  # fmt: skip
    return b.done()


NEGATIVE = [(n_log, 60), (n_code, 70), (n_chat, 70)]


def main() -> None:
    rows = []
    for fn, count in POSITIVE + NEGATIVE:
        for _ in range(count):
            rows.append(fn())
    for i, row in enumerate(rows):
        row["id"] = f"gen-{i:04d}"
    with OUT.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} examples to {OUT}")


if __name__ == "__main__":
    main()
