"""Where a policy meets the provider instances configured for its sandbox (upstream Providers v2).

A policy that binds a provider (``credential_binding: {provider: NAME}``) validates on its own: which providers
exist is the gateway's configuration, not the policy's. :func:`check_bindings` is run where the two meet (the
gateway's start and every reload, ``clawfleet gateway check``): a binding to a provider that is not configured,
or to one whose profile has endpoints of its own (as upstream: one source of credential-binding authority per
provider), is refused with the binding's ``FILE:LINE:COL``.

:func:`credential_scopes` says where each provider's credentials may go: its profile's endpoints, or, for an
endpointless profile, the policy endpoints that bind it. :func:`compose` adds upstream's derived
``_provider_<name>`` rules to a policy (what ``providers_v2_enabled`` does upstream), so a provider's endpoints
and binaries need not be copied into every policy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from .errors import PolicyError, Problem, format_path
from .model import Endpoint, NetworkRule, Policy
from .profiles import ProviderProfile
from .schema import PROVIDER_NAME_RE, PROVIDER_RULE_PREFIX

__all__ = ["check_bindings", "compose", "credential_scopes", "provider_rule_key", "require_bindings"]


def _bindings(policy: Policy) -> list[tuple[str, int, Endpoint]]:
    return [
        (key, i, ep)
        for key, rule in policy.network_policies.items()
        for i, ep in enumerate(rule.endpoints)
        if ep.credential_binding is not None
    ]


def check_bindings(policy: Policy, providers: Mapping[str, ProviderProfile]) -> list[Problem]:
    """Every ``credential_binding`` of ``policy`` that ``providers`` (instance name -> its profile) cannot serve."""
    out = []
    for key, i, ep in _bindings(policy):
        b = ep.credential_binding
        assert b is not None
        where = format_path(("network_policies", key, "endpoints", i, "credential_binding", "provider"))
        profile = providers.get(b.provider)
        if profile is None:
            known = ", ".join(sorted(providers)) or "none"
            message = (f"provider {b.provider!r} is not configured for this sandbox (the gateway's providers:"
                       f" {known})")  # fmt: skip
        elif profile.endpoints:
            message = (
                f"provider {b.provider!r} uses profile {profile.id!r}, which names its own endpoints: its"
                " credentials go only there; bind a provider whose profile has no endpoints (as upstream)"
            )
        else:
            continue
        out.append(Problem(b.source, b.line, b.col, where, message))
    return out


def require_bindings(policy: Policy, providers: Mapping[str, ProviderProfile]) -> None:
    """:func:`check_bindings`, raising :class:`PolicyError` when anything is refused."""
    problems = check_bindings(policy, providers)
    if problems:
        raise PolicyError(problems)


def compose_checked(policy: Policy, providers: Mapping[str, ProviderProfile]) -> Policy:
    """The effective policy a gateway with ``providers`` enforces: the bindings checked (:func:`require_bindings`),
    then :func:`compose`."""
    require_bindings(policy, providers)
    return compose(policy, providers)


def credential_scopes(policy: Policy, providers: Mapping[str, ProviderProfile]) -> dict[str, tuple[Endpoint, ...]]:
    """Provider name -> the endpoints its static credentials may be put into (host pattern, ports, path): the
    profile's own endpoints, else the policy's endpoints that bind it (none: its credentials go nowhere).
    Network policy still decides whether a request may be sent at all: a scope never widens it."""
    bound: dict[str, list[Endpoint]] = {}
    for _key, _i, ep in _bindings(policy):
        assert ep.credential_binding is not None
        bound.setdefault(ep.credential_binding.provider, []).append(ep)
    return {name: p.endpoints or tuple(bound.get(name, ())) for name, p in providers.items()}


def provider_rule_key(name: str) -> str:
    """Upstream's derived rule name: ``work-github`` -> ``_provider_work_github``."""
    return PROVIDER_RULE_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name)


def instance_name_problem(name: object, taken: Iterable[str]) -> str | None:
    """Why ``name`` cannot name one more provider instance beside ``taken`` (None: it can): not a valid name, or
    it derives the same ``_provider_`` rule as one of them (both would compose into one rule)."""
    if not isinstance(name, str) or not PROVIDER_NAME_RE.match(name):
        return f"invalid provider instance name {name!r}"
    clash = next((other for other in taken if provider_rule_key(other) == provider_rule_key(name)), None)
    if clash is not None:
        return f"{name!r} and {clash!r} both derive the policy rule {provider_rule_key(name)}; rename one"
    return None


def compose(policy: Policy, providers: Mapping[str, ProviderProfile]) -> Policy:
    """``policy`` plus one ``_provider_<name>`` rule per provider whose profile has endpoints (its endpoints and
    binaries), as upstream composes the effective policy. Provider and user rules are kept side by side (an
    overlapping endpoint stays two rules); a user policy cannot hold these names (the loader refuses them), and
    two instance names that map to one rule name are refused (ValueError; the gateway's configuration refuses them
    first). Each rule allows the profile's endpoints for the profile's binaries only, as any other rule: it widens
    nothing else (other hosts, other binaries, the L7 rules of the profile's endpoints still decide)."""
    rules: dict[str, NetworkRule] = dict(policy.network_policies)
    for name in sorted(providers):
        profile = providers[name]
        if not profile.endpoints:
            continue
        key = provider_rule_key(name)
        if key in rules:  # two instance names that differ only in punctuation, or a policy built without the loader
            raise ValueError(f"provider {name!r}: its rule name {key} is already taken")
        rules[key] = NetworkRule(key, key, profile.endpoints, profile.binaries)
    if len(rules) == len(policy.network_policies):
        return policy
    declared = policy.declared | {"network_policies"}
    return dataclasses.replace(policy, network_policies=rules, declared=declared)
