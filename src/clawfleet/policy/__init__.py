"""clawfleet policy engine: OpenShell-compatible sandbox policies.

Load and validate (:func:`load_file`, :func:`load_text`, :func:`load_preset_file`; provider profiles:
:func:`load_profile_file`, checked against a policy's bindings by :func:`check_bindings`),
merge presets (:func:`merge`), canonicalise and hash (:func:`normalize`,
:func:`digest`), compare (:func:`diff`) and decide (:func:`compile_policy` ->
:meth:`Engine.decide`). See docs/policy.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): loading a policy file must not pay for the decision engine, and
# `clawfleet sandbox run` starts agents, so its start time counts.
_EXPORTS = {
    "CredentialBinding": "model",
    "ProviderProfile": "profiles",
    "ProfileCredential": "profiles",
    "load_profile_file": "profiles",
    "load_profile_text": "profiles",
    "load_profile_data": "profiles",
    "normalize_profile": "profiles",
    "profile_digest": "profiles",
    "check_bindings": "providers",
    "require_bindings": "providers",
    "credential_scopes": "providers",
    "compose": "providers",
    "compose_checked": "providers",
    "Binary": "model",
    "Change": "differ",
    "Decision": "engine",
    "Diff": "differ",
    "Endpoint": "model",
    "Engine": "engine",
    "FilesystemPolicy": "model",
    "JSON_SCHEMA": "json_schema",
    "L7Rule": "model",
    "LandlockPolicy": "model",
    "MergeEntry": "merging",
    "MergeReport": "merging",
    "Middleware": "model",
    "NetworkRule": "model",
    "Policy": "model",
    "PolicyError": "errors",
    "Preset": "model",
    "PresetInfo": "model",
    "Problem": "errors",
    "ProcessPolicy": "model",
    "canonical_json": "canonical",
    "compile_policy": "engine",
    "diff": "differ",
    "digest": "canonical",
    "load_any_file": "loader",
    "load_any_text": "loader",
    "load_data": "loader",
    "load_file": "loader",
    "load_file_and_stat": "loader",
    "load_preset_file": "loader",
    "load_preset_text": "loader",
    "load_text": "loader",
    "merge": "merging",
    "normalize": "canonical",
    "ssrf_verdict": "engine",
    "static_digest": "canonical",
}

__all__ = [
    "JSON_SCHEMA",
    "Binary",
    "Change",
    "CredentialBinding",
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
    "ProfileCredential",
    "ProviderProfile",
    "canonical_json",
    "check_bindings",
    "compile_policy",
    "compose",
    "compose_checked",
    "credential_scopes",
    "diff",
    "digest",
    "load_any_file",
    "load_any_text",
    "load_data",
    "load_file",
    "load_file_and_stat",
    "load_preset_file",
    "load_preset_text",
    "load_profile_data",
    "load_profile_file",
    "load_profile_text",
    "load_text",
    "merge",
    "normalize",
    "normalize_profile",
    "profile_digest",
    "require_bindings",
    "ssrf_verdict",
    "static_digest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static checkers and IDEs see the real names
    from .canonical import canonical_json, digest, normalize, static_digest
    from .differ import Change, Diff, diff
    from .engine import Decision, Engine, compile_policy, ssrf_verdict
    from .errors import PolicyError, Problem
    from .json_schema import JSON_SCHEMA
    from .loader import (
        load_any_file,
        load_any_text,
        load_data,
        load_file,
        load_file_and_stat,
        load_preset_file,
        load_preset_text,
        load_text,
    )
    from .merging import MergeEntry, MergeReport, merge
    from .model import (
        Binary,
        CredentialBinding,
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
    from .profiles import (
        ProfileCredential,
        ProviderProfile,
        load_profile_data,
        load_profile_file,
        load_profile_text,
        normalize_profile,
        profile_digest,
    )
    from .providers import check_bindings, compose, compose_checked, credential_scopes, require_bindings
