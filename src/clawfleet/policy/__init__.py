"""clawfleet policy engine: OpenShell-compatible sandbox policies.

Load and validate (:func:`load_file`, :func:`load_text`, :func:`load_preset_file`),
merge presets (:func:`merge`), canonicalise and hash (:func:`normalize`,
:func:`digest`), compare (:func:`diff`) and decide (:func:`compile_policy` ->
:meth:`Engine.decide`). See docs/policy.md.
"""

from __future__ import annotations

from .canonical import canonical_json, digest, normalize
from .diff import Change, Diff, diff
from .engine import Decision, Engine, compile_policy, ssrf_verdict
from .errors import PolicyError, Problem
from .loader import (
    load_any_file,
    load_any_text,
    load_data,
    load_file,
    load_preset_file,
    load_preset_text,
    load_text,
)
from .merge import MergeEntry, MergeReport, merge
from .model import (
    Binary,
    Endpoint,
    FilesystemPolicy,
    L7Rule,
    LandlockPolicy,
    Middleware,
    NetworkRule,
    Policy,
    Preset,
    PresetInfo,
    ProcessPolicy,
)
from .schema import JSON_SCHEMA

__all__ = [
    "JSON_SCHEMA",
    "Binary",
    "Change",
    "Decision",
    "Diff",
    "Endpoint",
    "Engine",
    "FilesystemPolicy",
    "L7Rule",
    "LandlockPolicy",
    "MergeEntry",
    "MergeReport",
    "Middleware",
    "NetworkRule",
    "Policy",
    "PolicyError",
    "Preset",
    "PresetInfo",
    "Problem",
    "ProcessPolicy",
    "canonical_json",
    "compile_policy",
    "diff",
    "digest",
    "load_any_file",
    "load_any_text",
    "load_data",
    "load_file",
    "load_preset_file",
    "load_preset_text",
    "load_text",
    "merge",
    "normalize",
    "ssrf_verdict",
]
