"""The false-negative kinds of issue 19 (finding 11): each test hides a value the way an agent or a document
would (another language, another separator, a vendor prefix, a wrapped keyword) and checks it is found, next to
the look-alike that must stay unflagged."""

from __future__ import annotations

import pytest

from clawfleet.router.classifier import Classifier, CustomClass

from .eval.dataset import load_fn_dev, load_fn_holdout
from .test_eval_goals import micro, score

CLF = Classifier()


def spans(text: str, clf: Classifier = CLF) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in clf.classify(text)]


def found(text: str, kind: str, value: str) -> bool:
    return (kind, value) in spans(text)


def kinds(text: str) -> set[str]:
    return {t for t, _ in spans(text)}


# ---------------------------------------------------------------- vendor secret prefixes
NVAPI = "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"


@pytest.mark.parametrize(
    "token",
    [
        NVAPI,
        "hf_CLeKR9aVp128frpFkVHzq9DBZbiglBZbrN",
        "glpat-nAevIXOcA_jd_DwxvXvi",
        "npm_Y7mqgkPFH5GAnIeMHBwMmuHjOQL8m6a19cSq",
        "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",
        "pypi-AgEIcHlwaS5vcmc2wQjEzxOgGL6EcjJ2b7QEkvF4Cj7riYs1vtHFysN7z8yQbYoJVmxkmaXiQNc",
        "hvs.VsewHUv8EOxIzADEYWeeW9Lw",
        "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",
        "dop_v1_6aab5d765ce5fe2efe7e30f74bbb0e95fae6937efdbba43f7fb0562ccd0b521b",
        "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",
        "xai-MshmZQXRMOtAZS0FSgdVm80anIMj6YtsC8xQJswrn58eyD81BTjfnMAOmCEhNxaAyLUjLtlh5ujGsYDi",
        "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",
    ],
)
def test_vendor_tokens_in_prose_are_found_without_a_variable_name(token):
    # no "api_key =" or "token:" cue: the prefix alone gives it away
    assert found(f"use {token} for the run", "generic_secret", token)


@pytest.mark.parametrize(
    "text",
    [
        "from huggingface_hub import hf_hub_download",
        "npm_config_registry=https://registry.npmjs.org/",
        "nvapi- keys are 70 characters long; glpat- tokens are 26.",
        "SG.com and SG.example are not SendGrid keys",
        "pip install pypi-simple-index hvs.tools",
        "gsk_" + "x" * 52,  # a filler, not a key
    ],
)
def test_vendor_prefixes_in_code_and_docs_are_not_secrets(text):
    assert kinds(text) == set()


# ---------------------------------------------------------------- key variables without "api"
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("SECRET=EsUjrpwtCA6CgD7kOkQbI1oHqnAgaC32", "EsUjrpwtCA6CgD7kOkQbI1oHqnAgaC32"),
        ("MASTER_KEY=N5Heh8jx69Pi59IeDuWTgaEJGHDUkATH", "N5Heh8jx69Pi59IeDuWTgaEJGHDUkATH"),
        ("HMAC_KEY = 'urL1es7ukqqeaA355XqA9adgpbthgRJK72wu'", "urL1es7ukqqeaA355XqA9adgpbthgRJK72wu"),
        ('config.key = "1Eu3bk32rrWFfHAfNJBB153qAK/82UF2ulgqaP23"', "1Eu3bk32rrWFfHAfNJBB153qAK/82UF2ulgqaP23"),
    ],
)
def test_key_variables_without_api_in_the_name(text, value):
    assert found(text, "generic_secret", value)


@pytest.mark.parametrize(
    "text",
    [
        'primary_key = "id"',
        'sort_key = "created_at_2024_v2_index"',
        "idempotency_key=550e8400-e29b-41d4-a716-446655440000",
        'cache_key = f"user:{uid}:profile"',
        '"key": "d41d8cd98f00b204e9800998ecf8427e"',  # a digest used as a lookup key
        "monkey=Zq8x7Wv6Ut5Sr4Qp3On2",
        '"key": "settings.title.main2"',  # an i18n key
        "CACHE_PREFIX_KEY=USER_PROFILE_V2_2024",
    ],
)
def test_table_and_cache_keys_are_not_secrets(text):
    assert "generic_secret" not in kinds(text)


def test_passwd_variable_is_a_password():
    assert found("PASSWD=vTQdw6cyKQoNAhTm", "password", "vTQdw6cyKQoNAhTm")


# ---------------------------------------------------------------- unarmoured private keys
PKCS8 = (
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALylVGtGlm6Q7Notb6z0r++tJUmk1ze+RDgM5tNWWNtaZYE/of+0PGljP1E"
    "TGzQEflmlQ1bT144IC/CbaX+xBNjqQY90gUpNgKIpPh5VK3Kl6uRj6Gvq"
)
SEC1 = (
    "MHcCAQEEICa0xi1COUHtJmNOafm/QgEcjZ1VQhspn7UXToosSIZnoAoGCCqGSM49AwEHoUQDQgAExkeKWDuN3yeIEEfxa6QqgW2bc4FdIL/7"
    "aB8wuPAehz4WKpnni6IROW4kG3lQ7uxIBJ6LFku4fgVs8TQCLsLqtA=="
)
CERT = "MIIDdzCCAl+gAwIBAgIJAKZ7t3Pz1bHzMA0GCSqGSIb3DQEBCwUAMFIxCzAJBgNVBAYTAkFVMRMwEQYDVQQIDApTb21lLVN0YXRl"
PUBKEY = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC8pVRrRpZukOzaLW+s9K/vrSVJpNc3vkQ4DObTVljbWmWBP6H/tDxpYz9RExs0BH5Z"


@pytest.mark.parametrize("blob", [PKCS8, SEC1, "MC4CAQAwBQYDK2VwBCIEICJNwpG25e78tRrJtOQ8QVd+pAqilKthBJiYtusAZrwD"])
def test_der_private_keys_without_pem_armour(blob):
    assert found(f'{{"key": "{blob}"}}', "private_key", blob)


def test_base64_blob_after_a_private_key_cue_even_wrapped():
    wrapped = PKCS8[:64] + "\n" + PKCS8[64:]
    hits = [v for t, v in spans(f"here is my privkey\n{wrapped}") if t == "private_key"]
    assert hits == [wrapped]


@pytest.mark.parametrize("blob", [CERT, PUBKEY])
def test_certificates_and_public_keys_are_not_private_keys(blob):
    assert "private_key" not in kinds(f"cert: {blob}")


# ---------------------------------------------------------------- passwords in other languages
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mi contraseña es Tr0mp3ta!2024", "Tr0mp3ta!2024"),
        ("mon mot de passe est Soleil#Paris88", "Soleil#Paris88"),
        ("mein Passwort ist Kuchen99?Sommer", "Kuchen99?Sommer"),
        ("minha senha é Praia@Rio2023", "Praia@Rio2023"),
        ("la mia password è Gatto.Nero77", "Gatto.Nero77"),
        ("moje hasło to Wiosna#1984", "Wiosna#1984"),
        ("mijn wachtwoord is Fiets!Rood42", "Fiets!Rood42"),
        ("пароль: Moskva2024!x", "Moskva2024!x"),
        ("パスワード：Sakura2024!jp", "Sakura2024!jp"),
    ],
)
def test_passwords_in_other_languages(text, value):
    assert found(text, "password", value)


@pytest.mark.parametrize(
    "text",
    ["la contraseña es obligatoria", "mot de passe oublié ?", "Das Passwort muss 12 Zeichen haben.", "senha: ${DB}"],
)
def test_password_prose_in_other_languages_is_not_a_password(text):
    assert "password" not in kinds(text)


# ---------------------------------------------------------------- separators
@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Visa 4539.0818.3658.4922 exp 09/27", "credit_card", "4539.0818.3658.4922"),
        ("CC: 4716/9931/3187/6115", "credit_card", "4716/9931/3187/6115"),
        ("Mastercard 2223  6019  6674  9824", "credit_card", "2223  6019  6674  9824"),
        ("SSN 315.18.4229", "us_ssn", "315.18.4229"),
        ("SSN: 614/27/6298", "us_ssn", "614/27/6298"),
        ("IBAN ES30-7187-0779-1878-7568-2031", "iban", "ES30-7187-0779-1878-7568-2031"),
        ("IBAN PL02.0767.1427.4764.2774.4013.4617", "iban", "PL02.0767.1427.4764.2774.4013.4617"),
        ("iban: it60 x054 2811 1010 0000 0123 456", "iban", "it60 x054 2811 1010 0000 0123 456"),
        ("teléfono +34.612.345.678", "phone", "+34.612.345.678"),
    ],
)
def test_separator_variants(text, kind, value):
    assert found(text, kind, value)


@pytest.mark.parametrize(
    "text",
    [
        "Version 4539.0818.3658.4923 was tagged.",  # fails Luhn
        "release 315.18.4229 of the firmware",  # dotted, no SSN cue
        "IBAN ES30-7187-0779-1878-7568-2032",  # fails mod 97
    ],
)
def test_separator_look_alikes_are_not_flagged(text):
    assert kinds(text) == set()


# ---------------------------------------------------------------- ES/IT/PL/PT/JP phones and addresses
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mi móvil es el 612 345 678", "612 345 678"),
        ("cellulare 333 123 4567", "333 123 4567"),
        ("numer telefonu: 512 345 678", "512 345 678"),
        ("telemóvel 912 345 678", "912 345 678"),
        ("電話: 03-1234-5678", "03-1234-5678"),
        ("携帯 090-1234-5678", "090-1234-5678"),
    ],
)
def test_national_phone_formats(text, value):
    assert found(text, "phone", value)


@pytest.mark.parametrize(
    "text", ["order 612 345 678 shipped today", "Invoice 512-345-678 is overdue", "the number 123 456 789 is odd"]
)
def test_uncued_nine_digit_numbers_are_not_phones(text):
    assert "phone" not in kinds(text)


@pytest.mark.parametrize(
    "address",
    [
        "Calle Mayor 12, 28013 Madrid",
        "Avenida de la Constitución 5",
        "Via Roma 10, 00184 Roma",
        "Corso Vittorio Emanuele 15, 10121 Torino",
        "ul. Marszałkowska 12/4, 00-590 Warszawa",
        "Rua Augusta 24, 1100-053 Lisboa",
        "東京都千代田区丸の内1-9-1",
        "1-9-1 Marunouchi, Chiyoda-ku, Tokyo 100-0005",
    ],
)
def test_street_first_and_japanese_addresses(address):
    assert found(f"send it to {address} please", "street_address", address)


@pytest.mark.parametrize(
    "text",
    [
        "sent via Slack 3 times and via email 12 times",
        "Via HTTP 2 the calls are multiplexed.",
        "Calle 5 is closed.",
        "as shown by Jones et al. Nature 12 (2020)",
    ],
)
def test_street_words_in_prose_are_not_addresses(text):
    assert "street_address" not in kinds(text)


# ---------------------------------------------------------------- dates of birth, health
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Fecha de nacimiento 12 de marzo de 1985", "12 de marzo de 1985"),
        ("date de naissance : 3 mars 1979", "3 mars 1979"),
        ("Geburtsdatum: 12. März 1985", "12. März 1985"),
        ("data di nascita: 25 dicembre 1988", "25 dicembre 1988"),
        ("data de nascimento: 15 de março de 1990", "15 de março de 1990"),
        ("data urodzenia: 3 maja 1980", "3 maja 1980"),
        ("生年月日: 1985年3月12日", "1985年3月12日"),
    ],
)
def test_dates_of_birth_in_other_languages(text, value):
    assert found(text, "date_of_birth", value)


@pytest.mark.parametrize(
    "text", ["fecha de entrega: 12/03/2024", "date de livraison 3 mars 2024", "NATO summit on 11/07/2023"]
)
def test_other_dates_in_other_languages_are_not_dates_of_birth(text):
    assert "date_of_birth" not in kinds(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("tengo diabetes tipo 2", "diabetes"),
        ("je suis séropositif depuis dix ans", "séropositif"),
        ("Ich habe Krebs und bin in Behandlung", "Krebs"),
        ("ho il diabete e prendo insulina", "diabete"),
        ("estou grávida de três meses", "grávida"),
        ("I'm on Ozempic for weight loss", "Ozempic"),
        ("he started PrEP after the clinic visit", "PrEP"),
    ],
)
def test_health_statements_in_other_languages_and_new_drugs(text, value):
    assert found(text, "health_info", value)


@pytest.mark.parametrize(
    "text",
    [
        "Research article: la diabetes en España, tendencias 2000-2020",
        "The lithium battery market grew in 2023.",
        "my meal prep for the week",  # "prep" is PrEP only as written
    ],
)
def test_health_words_without_a_personal_context_are_not_health_info(text):
    assert "health_info" not in kinds(text)


# ---------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("my name is john smith and I need help", "john smith"),
        ("PATIENT: GARCIA, MARIA", "GARCIA, MARIA"),
        ("NAME: JOHN SMITH", "JOHN SMITH"),
        ("Patient: Kowalski, Anna", "Kowalski, Anna"),
        ("me llamo lucía fernández", "lucía fernández"),
        ("名前: 山田太郎", "山田太郎"),
        ("Name: Иван Петров", "Иван Петров"),
        ("이름: 김민준", "김민준"),
    ],
)
def test_names_in_any_case_order_or_script_after_a_cue(text, value):
    assert found(text, "person_name", value)


@pytest.mark.parametrize(
    "text",
    [
        "my name is not important",
        "NAME: NOT PROVIDED",
        "Name: string",
        "patient: stable, vitals normal",
        '{"name": "search_files"}',
        "namespace: default",
    ],
)
def test_cue_followed_by_a_non_name_is_not_a_name(text):
    assert "person_name" not in kinds(text)


# ---------------------------------------------------------------- custom keywords and markers
CUSTOM = Classifier(
    custom=[CustomClass("codename", keywords=["Project Nightjar"]), CustomClass("marking", markers=["CONFIDENTIAL"])]
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("the Project\nNightjar plan", "Project\nNightjar"),
        ("see project-nightjar/README", "project-nightjar"),
        ("Project Night-\njar starts", "Project Night-\njar"),
        ("two ProjectNightjars", "ProjectNightjars"),
        ("Project Nightjar's budget", "Project Nightjar's"),
        ("PROJECT_NIGHTJAR=1", "PROJECT_NIGHTJAR"),
    ],
)
def test_custom_keywords_broken_by_wraps_hyphens_or_plurals(text, value):
    assert ("codename", value) in spans(text, CUSTOM)


@pytest.mark.parametrize("text", ["Confidential memo", "this is confidential", "Con-\nfidential draft"])
def test_markers_in_any_case(text):
    assert "marking" in {t for t, _ in spans(text, CUSTOM)}


@pytest.mark.parametrize("text", ["project nightjarring", "a nightjar sighting", "NONCONFIDENTIAL", "projectnight jar"])
def test_custom_keywords_do_not_match_inside_other_words(text):
    assert spans(text, CUSTOM) == []


# ---------------------------------------------------------------- goals on the development and held-out sets
def _predict(text: str) -> list[tuple[str, int, int]]:
    return [(f.type, f.start, f.end) for f in CLF.classify(text)]


def test_false_negative_development_set_meets_goals():
    rows = load_fn_dev()
    assert len(rows) >= 150
    assert sum(1 for r in rows if not r["entities"]) >= 25  # hard negatives
    stats, _ = score(rows, _predict)
    classes = {e["type"] for r in rows for e in r["entities"]}
    precision, recall, support = micro(stats, classes)
    assert support >= 130
    assert recall >= 0.95, f"recall {recall:.3f}"
    assert precision >= 0.95, f"precision {precision:.3f}"
    for cls in classes:
        tp, _fp, fn = stats.get(cls, [0, 0, 0])
        assert tp / (tp + fn) >= 0.8, f"{cls}: recall {tp / (tp + fn):.3f}"


def test_false_negative_held_out_set_stays_close():
    rows = load_fn_holdout()
    stats, _ = score(rows, _predict)
    precision, recall, _ = micro(stats, {e["type"] for r in rows for e in r["entities"]})
    assert precision >= 0.85 and recall >= 0.75, f"precision {precision:.3f} recall {recall:.3f}"
