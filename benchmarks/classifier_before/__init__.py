"""Frozen copy of ``clawfleet.router.classifier`` as of commit 056c3d2 (before issue 16's faster pass).

The peer of ``benchmarks/bench_classifier.py`` (ratio new/old in the same run) and the reference of
``tests/router/test_classifier_equivalence.py`` (the new code finds exactly what this one finds). Only the
imports were rewritten (``clawfleet.router.classifier`` -> ``classifier_before``) and the optional Presidio
engine left out. Do not edit; delete it (and that test) once detection is meant to change.
"""

from classifier_before.custom import CustomClass
from classifier_before.engine import Classifier, resolve_overlaps
from classifier_before.findings import BUILTIN_TYPES, GROUPS, UNSCANNED, Finding

__all__ = ["BUILTIN_TYPES", "GROUPS", "UNSCANNED", "Classifier", "CustomClass", "Finding", "resolve_overlaps"]
