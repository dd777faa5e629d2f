"""Offline PII and secret classifier: regexes, checksums and context words, no model download."""

from clawfleet.router.classifier.custom import CustomClass
from clawfleet.router.classifier.engine import Classifier, resolve_overlaps
from clawfleet.router.classifier.findings import BUILTIN_TYPES, GROUPS, UNSCANNED, Finding

__all__ = ["BUILTIN_TYPES", "GROUPS", "UNSCANNED", "Classifier", "CustomClass", "Finding", "resolve_overlaps"]
