"""Optional extra engine: Microsoft Presidio's analyzer, offline, on a blank spaCy pipeline.

Enabled with ``classifier.engines: [builtin, presidio]``; needs ``presidio-analyzer`` installed (it is not a
runtime dependency of clawfleet). No model is downloaded: with ``spacy.blank("en")`` Presidio runs its pattern
recognizers (with their own checksums and context words) but no NER, so it adds coverage for identifiers the
built-in engine does not know (e.g. US passport/driver licence, AU/SG/KR IDs) and nothing for names.
Presidio entity types are mapped to ours where they overlap and kept as ``presidio_<type>`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

from clawfleet.router.classifier.findings import Finding

TYPE_MAP = {
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "credit_card", "IBAN_CODE": "iban",
    "US_SSN": "us_ssn", "UK_NINO": "uk_nino", "ES_NIF": "es_dni", "ES_NIE": "es_dni", "IN_AADHAAR": "in_aadhaar",
    "IT_FISCAL_CODE": "it_fiscal_code", "IP_ADDRESS": "ip_address", "CA_SIN": "ca_sin",
}  # fmt: skip
# generic types that would drown routing in noise (every date, URL and number looks like one)
IGNORED = frozenset({"DATE_TIME", "URL", "NRP", "LOCATION", "PERSON", "ORGANIZATION"})


class PresidioEngine:
    def __init__(self, language: str = "en") -> None:
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
        except ImportError as exc:
            raise ImportError(
                "classifier.engines lists 'presidio' but presidio-analyzer is not installed; "
                "install presidio-analyzer (and spacy) or remove it from classifier.engines"
            ) from exc
        try:  # Presidio's e-mail check asks tldextract, which would fetch the suffix list; use its bundled copy
            import tldextract

            tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
        except ImportError:
            pass

        class _BlankSpacy(SpacyNlpEngine):  # type: ignore[misc]
            def load(self) -> None:
                self.nlp = {language: spacy.blank(language)}

        nlp = _BlankSpacy(models=[{"lang_code": language, "model_name": "blank"}])
        nlp.load()
        self.language = language
        self.analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=[language])

    def __call__(self, text: str) -> Iterator[Finding]:
        for r in self.analyzer.analyze(text=text, language=self.language):
            if r.entity_type in IGNORED:
                continue
            ftype = TYPE_MAP.get(r.entity_type, "presidio_" + r.entity_type.lower())
            yield Finding(ftype, r.start, r.end, float(r.score), text[r.start : r.end], 0)
