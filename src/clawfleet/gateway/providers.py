"""Provider instances in the gateway configuration (upstream OpenShell Providers v2).

A provider instance is a profile (upstream's provider profile YAML: its credentials and, usually, the endpoints
they may be sent to) plus the files that hold this instance's values::

    providers:
      work-github:
        profile: /etc/clawfleet/providers/github.yaml   # relative paths: relative to the config file
        credentials:
          GITHUB_TOKEN: /etc/clawfleet/secrets/work-github-GITHUB_TOKEN   # root-only, as secrets: files
      work-gcp:
        profile: /etc/clawfleet/providers/google-cloud.yaml
        refresh:                             # a credential the gateway mints (the profile's refresh block)
          GCP_SA_ACCESS_TOKEN: {client_email: /etc/clawfleet/secrets/gcp-email, private_key: /etc/.../gcp-key}

Each credential becomes a :class:`.credentials.SecretBinding` bound to the provider, not to hosts: its value goes
only to the profile's endpoints, or for an endpointless profile to the policy endpoints that name the instance
(``credential_binding: {provider: work-github}``), and only in the places the profile names (``Authorization``
with Bearer/token/Basic always; ``header_name``, ``query_param``, ``path_template`` when set). Which providers
exist is checked against the policy at start and on every reload (``clawfleet.policy.require_bindings``). A
profile with endpoints also adds its ``_provider_<name>`` rule to the policy the gateway enforces (:mod:`.reload`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from clawfleet.policy import PolicyError
from clawfleet.policy.profiles import REFRESH_OUTPUT_ENV, ProfileCredential, ProviderProfile, load_profile_file
from clawfleet.policy.providers import instance_name_problem

from .credentials import SecretBinding
from .token_mint import minters_for

__all__ = ["parse_providers", "private_addresses", "provider_binding", "refresh_material"]

#: Authorization schemes a provider credential may fill, whatever the profile's auth_style: the header goes only
#: to the bound endpoints either way, and clients differ (``gh`` sends ``token``, git sends Basic).
_SCHEMES = ("bearer", "token", "basic")
# Networks a provider credential may cross in clear text: this host and the operator's private ones. Link-local
# (cloud metadata at 169.254.169.254) is not among them.
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128",
                                      "fc00::/7")
)  # fmt: skip


def provider_binding(provider: str, env_var: str, file: str, credential: ProfileCredential) -> SecretBinding:
    """The binding of one provider credential: the places its profile names, for the provider's endpoints."""
    headers: tuple[str, ...] = ("authorization",)
    if credential.header_name and credential.header_name != "authorization":
        headers += (credential.header_name,)
    prefix = credential.path_prefix
    return SecretBinding(
        env_var,
        file,
        (),
        headers=headers,
        schemes=_SCHEMES,
        query=(credential.query_param,) if credential.query_param else (),
        path=(prefix,) if prefix else (),
        provider=provider,
    )


def parse_providers(
    data: Any, path: Callable[[Any], str | None], taken: Iterable[str] = ()
) -> tuple[dict[str, ProviderProfile], tuple[SecretBinding, ...]]:
    """The ``providers:`` section: (instance name -> profile, one binding per configured credential). ``taken``:
    secret names already bound (``secrets:``): one name, one value, so a clash is refused. Raises ValueError with
    the provider and the setting named (a profile's own problems keep their ``FILE:LINE:COL``)."""
    if data is None:
        return {}, ()
    if not isinstance(data, Mapping):
        raise ValueError("providers: expected a mapping of provider instance name -> {profile, credentials}")
    profiles: dict[str, ProviderProfile] = {}
    bindings: list[SecretBinding] = []
    owner = {name: "secrets" for name in taken}
    for name, spec in data.items():
        problem = instance_name_problem(name, profiles)
        if problem is not None:
            raise ValueError(f"providers: {problem}")
        if not isinstance(spec, Mapping) or "profile" not in spec:
            raise ValueError(f"provider {name}: needs 'profile' (a provider profile file) and 'credentials'")
        unknown = set(spec) - {"profile", "credentials", "refresh"}
        if unknown:
            raise ValueError(f"provider {name}: unknown settings {', '.join(sorted(map(str, unknown)))}")
        try:
            profile = load_profile_file(path(spec["profile"]) or "")
        except PolicyError as exc:
            raise ValueError(f"provider {name}: profile {spec['profile']}:\n{exc}") from None
        files = spec.get("credentials") or {}
        if not isinstance(files, Mapping):
            raise ValueError(f"provider {name}: 'credentials' maps an environment variable to a file")
        declared = {var: c for c in profile.credentials for var in c.env_vars}
        for var, file in files.items():
            if var not in declared:
                known = ", ".join(declared) or "none"
                raise ValueError(f"provider {name}: {var} is not a credential of profile {profile.id!r} ({known})")
            if var in owner:
                raise ValueError(f"provider {name}: {var} is also bound by {owner[var]}; one name, one value")
            owner[var] = f"provider {name}"
            bindings.append(provider_binding(name, var, path(file) or "", declared[var]))
        minted = _minted_bindings(name, profile, spec.get("refresh"), path)
        for b in minted:
            if b.name in owner:
                raise ValueError(f"provider {name}: {b.name} is also bound by {owner[b.name]}; one name, one value")
            owner[b.name] = f"provider {name}"
        bindings.extend(minted)
        given = set(files) | {b.name for b in minted}
        for c in profile.credentials:
            if c.required and not any(v in given for v in c.env_vars):
                raise ValueError(f"provider {name}: credential {c.name!r} of profile {profile.id!r} is required:"
                                 f" give a file for one of {', '.join(c.env_vars)}"
                                 f"{' or its refresh material' if c.refresh else ''}")  # fmt: skip
        profiles[name] = profile
    return profiles, tuple(bindings)


def refresh_material(data: Any, path: Callable[[Any], str | None]) -> dict[str, dict[str, dict[str, str]]]:
    """provider -> minted credential's primary environment variable -> {material name -> file} (the
    ``refresh:`` settings :func:`parse_providers` checked): what the privileged gateway mints from."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for name, spec in (data or {}).items():
        refresh = spec.get("refresh") if isinstance(spec, Mapping) else None
        if refresh:
            out[name] = {var: {m: path(f) or "" for m, f in files.items()} for var, files in refresh.items()}
    return out


def _minted_bindings(provider: str, profile: ProviderProfile, refresh: Any,
                     path: Callable[[Any], str | None]) -> list[SecretBinding]:  # fmt: skip
    """One binding per value a configured refresh mints (its primary's env vars and its additional outputs'),
    placed where the minted credential's profile entry says; ``refresh``: env var -> {material name -> file}."""
    if refresh is None:
        return []
    if not isinstance(refresh, Mapping) or not all(isinstance(v, Mapping) for v in refresh.values()):
        raise ValueError(f"provider {provider}: 'refresh' maps a minted credential's environment variable to"
                         " {material name: file}")  # fmt: skip
    resolved = {var: {m: path(f) or "" for m, f in files.items()} for var, files in refresh.items()}
    minters_for(provider, profile, resolved)  # checks every name: a refreshed credential, known and required material
    by_var = {v: c for c in profile.credentials for v in c.env_vars}
    by_name = {c.name: c for c in profile.credentials}
    out: list[SecretBinding] = []
    for var in refresh:
        c = by_var[var]
        assert c.refresh is not None
        for v in c.env_vars:
            out.append(replace(provider_binding(provider, v, "", c), minted_by=var))
        for output, sibling in c.refresh.additional_outputs:
            key = REFRESH_OUTPUT_ENV[c.refresh.strategy][output]
            out.append(replace(provider_binding(provider, key, "", by_name[sibling]), minted_by=var))
    return out


def private_addresses(ips: Iterable[str]) -> bool:
    """Every address is on loopback or a private network (and there is at least one): where a provider credential
    may travel over plain HTTP. Cached by address list (:func:`_all_private`), for every caller."""
    return _all_private(tuple(ips))


# A pure function of the addresses, which a connection's requests repeat (an absolute-form request resolves its host
# each time): parsing and matching them once per distinct list is enough. Bounded: at most 256 lists are kept.
@functools.lru_cache(maxsize=256)
def _all_private(ips: tuple[str, ...]) -> bool:
    seen = False
    for text in ips:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not any(ip.version == net.version and ip in net for net in _PRIVATE):
            return False
        seen = True
    return seen
