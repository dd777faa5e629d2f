"""Provider profiles (upstream OpenShell Providers v2): a provider type's credentials, the endpoints they may be
sent to, and the binaries that use them, in upstream's YAML (``openshell provider profile export -o yaml``).

:func:`load_profile_text` / :func:`load_profile_file` validate a profile with the policy's positioned problems
(``FILE:LINE:COL: path: message``); endpoints are checked by the same code as a policy's. What clawfleet does not
do is refused rather than loaded and ignored: gateway-minted credentials (``refresh``, ``token_grant``) would
leave a sandbox with a credential that silently expires or never arrives. Metadata that changes nothing at the
gateway (``resource_version``, ``annotations``, ``discovery``, ``inference_capable``) is validated and kept.

A credential's placement (``auth_style``, ``header_name``, ``query_param``, ``path_template``) is where the
gateway may put its value, besides ``Authorization`` (:mod:`clawfleet.gateway.providers`): upstream stores the
metadata and resolves placeholders anywhere in a request; clawfleet fills only the places a profile names, so a
bound host that echoes other headers or parameters never receives the value there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_endpoint
from .errors import PolicyError, format_path
from .loader import read_file
from .model import Binary, Endpoint
from .schema import HTTP_PROTOCOLS, Validator
from .yamlio import Document, load_document

__all__ = [
    "AUTH_STYLES",
    "CATEGORIES",
    "ProfileCredential",
    "ProviderProfile",
    "load_profile_data",
    "load_profile_file",
    "load_profile_text",
    "normalize_profile",
    "profile_digest",
]

AUTH_STYLES = ("basic", "bearer", "header", "query", "path")
CATEGORIES = ("other", "inference", "agent", "source_control", "messaging", "data", "knowledge")
_TOP = ("id", "resource_version", "annotations", "display_name", "description", "category", "inference_capable",
        "credentials", "discovery", "endpoints", "binaries")  # fmt: skip
_CREDENTIAL = ("name", "description", "env_vars", "required", "auth_style", "header_name", "query_param",
               "path_template")  # fmt: skip
#: Upstream credential options that need a gateway that mints tokens; clawfleet injects static values only.
_MINTED = frozenset({"refresh", "token_grant"})
_PROFILE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # upstream: lower-case kebab-case
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REVISION_PREFIX = re.compile(r"^v[0-9]+_")  # upstream reserves it for revision-scoped placeholders
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # an RFC 9110 token
_QUERY_PARAM = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
# The gateway puts a path credential at a fixed prefix, filling the rest of that segment (see
# gateway/credentials.py): the template's text before {credential} must be such a prefix.
_PATH_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~-]*){1,16}$")
_SLOT = "{credential}"


@dataclass(frozen=True)
class ProfileCredential:
    name: str
    env_vars: tuple[str, ...]
    description: str = ""
    required: bool = False
    auth_style: str | None = None  # one of AUTH_STYLES
    header_name: str | None = None  # lower-case
    query_param: str | None = None
    path_template: str | None = None

    @property
    def path_prefix(self) -> str | None:
        """The literal path before ``{credential}`` (``/bot`` for ``/bot{credential}/getMe``)."""
        return self.path_template.partition(_SLOT)[0] if self.path_template else None


@dataclass(frozen=True)
class ProviderProfile:
    id: str
    display_name: str = ""
    description: str = ""
    category: str = "other"
    inference_capable: bool = False
    credentials: tuple[ProfileCredential, ...] = ()
    discovery: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    binaries: tuple[Binary, ...] = ()
    resource_version: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    source: str = field(default="<profile>", compare=False)

    @property
    def env_vars(self) -> tuple[str, ...]:
        """Every credential environment key the profile declares, in order."""
        return tuple(v for c in self.credentials for v in c.env_vars)


class _ProfileValidator(Validator):
    def profile(self) -> ProviderProfile | None:
        data = self.doc.data
        m = self.mapping((), data, _TOP, required=("id",), unsupported=frozenset(), what="a provider profile")
        if m is None or "id" not in m:
            return None
        pid = self.string(("id",), m["id"], what="a profile id")
        if pid is not None and not _PROFILE_ID.match(pid):
            self.err(("id",), f"profile id {pid!r} must be lower-case kebab-case (a-z, 0-9, '-'), as upstream")
        texts = {k: self.string((k,), m[k], allow_empty=True) or "" for k in ("display_name", "description") if k in m}
        category = self.choice(("category",), m["category"], CATEGORIES) if "category" in m else "other"
        inference = self.boolean(("inference_capable",), m["inference_capable"]) if "inference_capable" in m else False
        version = None
        if "resource_version" in m:
            version = self.integer(("resource_version",), m["resource_version"], 0, 2**63 - 1, "a resource version")
        annotations = self.annotations(m.get("annotations"))
        credentials = self.credentials(m.get("credentials"))
        discovery = self.discovery(m.get("discovery"), credentials or ())
        endpoints = self.profile_endpoints(m.get("endpoints"), bool(credentials))
        binaries = self.profile_binaries(m.get("binaries"))
        if self.errors or pid is None or category is None or inference is None or credentials is None:
            return None
        if endpoints is None or binaries is None or discovery is None or annotations is None:
            return None
        return ProviderProfile(
            id=pid,
            display_name=texts.get("display_name", ""),
            description=texts.get("description", ""),
            category=category,
            inference_capable=inference,
            credentials=credentials,
            discovery=discovery,
            endpoints=endpoints,
            binaries=binaries,
            resource_version=version,
            annotations=annotations,
            source=self.doc.filename,
        )

    def annotations(self, value: Any) -> tuple[tuple[str, str], ...] | None:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.err(("annotations",), "expected a mapping of name -> text (non-secret metadata)")
            return None
        out = []
        for key, text in value.items():
            t = self.string(("annotations", key), text, allow_empty=True)
            if t is None:
                return None
            out.append((str(key), t))
        return tuple(sorted(out))

    def credentials(self, value: Any) -> tuple[ProfileCredential, ...] | None:
        if value is None:
            return ()
        items = self.seq(("credentials",), value, "credentials")
        if items is None:
            return None
        out: list[ProfileCredential] = []
        seen: dict[str, tuple[str | int, ...]] = {}
        ok = True
        for i, item in enumerate(items):
            c = self.credential(("credentials", i), item)
            if c is None:
                ok = False
                continue
            for j, var in enumerate(c.env_vars):
                if var in seen:
                    self.err(("credentials", i, "env_vars", j), f"{var} is also declared at {format_path(seen[var])}")
                    ok = False
                seen[var] = ("credentials", i, "env_vars", j)
            if any(c.name == o.name for o in out):
                self.err(("credentials", i, "name"), f"credential name {c.name!r} is declared twice")
                ok = False
            out.append(c)
        return tuple(out) if ok else None

    def credential(self, path: tuple[str | int, ...], value: Any) -> ProfileCredential | None:
        m = self.mapping(path, value, _CREDENTIAL, required=("name", "env_vars"), unsupported=_MINTED,
                         what="a credential")  # fmt: skip
        if m is None:
            return None
        for key in _MINTED & set(m):
            # replace the generic "not supported" with why: the gateway would never mint the token
            self.errors[:] = [e for e in self.errors if e.path != format_path((*path, key))]
            self.err((*path, key), f"{key!r}: clawfleet injects static credentials only (no gateway-minted or"
                     " refreshed tokens); remove it and keep the current value in the provider's file",
                     at_key=True)  # fmt: skip
        bad = any(k not in _CREDENTIAL for k in m) or not {"name", "env_vars"} <= set(m)
        name = self.string((*path, "name"), m["name"], what="a credential name") if "name" in m else None
        env_vars: list[str] = []
        items = self.seq((*path, "env_vars"), m["env_vars"], "environment variable names") if "env_vars" in m else None
        if items == []:
            self.err((*path, "env_vars"), "list at least one environment variable")
        for j, item in enumerate(items or []):
            var = self.string((*path, "env_vars", j), item, what="an environment variable name")
            if var is None:
                bad = True
            elif not _ENV_VAR.match(var):
                self.err((*path, "env_vars", j), f"{var!r} is not an environment variable name")
                bad = True
            elif _REVISION_PREFIX.match(var):
                self.err((*path, "env_vars", j), f"{var!r}: the v<digits>_ prefix is reserved upstream for"
                         " revision-scoped placeholders")  # fmt: skip
                bad = True
            else:
                env_vars.append(var)
        texts = {k: self.string((*path, k), m[k], allow_empty=True) for k in ("description",) if k in m}
        required = self.boolean((*path, "required"), m["required"]) if "required" in m else False
        style = self.choice((*path, "auth_style"), m["auth_style"], AUTH_STYLES) if "auth_style" in m else None
        header = self.token((*path, "header_name"), m.get("header_name"), _HEADER, "a header name")
        param = self.token((*path, "query_param"), m.get("query_param"), _QUERY_PARAM, "a query parameter name")
        template = self.path_template((*path, "path_template"), m.get("path_template"))
        needs = {"header": ("header_name", header), "query": ("query_param", param),
                 "path": ("path_template", template)}  # fmt: skip
        if style in needs and needs[style][1] is None and needs[style][0] not in m:
            self.err((*path, "auth_style"), f"auth_style: {style} needs {needs[style][0]!r}")
            bad = True
        if bad or name is None or not env_vars or required is None or ("auth_style" in m and style is None):
            return None
        if any(k in m and v is None for k, v in (("header_name", header), ("query_param", param),
                                                   ("path_template", template))):  # fmt: skip
            return None
        return ProfileCredential(name, tuple(env_vars), texts.get("description") or "", required, style,
                                 header.lower() if header else None, param, template)  # fmt: skip

    def token(self, path: tuple[str | int, ...], value: Any, pattern: re.Pattern[str], what: str) -> str | None:
        if value is None:
            return None
        text = self.string(path, value, what=what)
        if text is not None and not pattern.match(text):
            self.err(path, f"{text!r} is not {what}")
            return None
        return text

    def path_template(self, path: tuple[str | int, ...], value: Any) -> str | None:
        if value is None:
            return None
        text = self.string(path, value, what="a path template")
        if text is None:
            return None
        if text.count(_SLOT) != 1:
            self.err(path, f"a path template needs {_SLOT} exactly once, as upstream")
            return None
        prefix, _, rest = text.partition(_SLOT)
        if not _PATH_PREFIX.match(prefix) or "//" in prefix or any(s in (".", "..") for s in prefix.split("/")):
            self.err(path, f"the text before {_SLOT} must be a literal path prefix (/segments of letters, digits"
                     " and . _ ~ -, no '//', '.' or '..')")  # fmt: skip
            return None
        if rest and not rest.startswith("/"):
            self.err(path, f"{_SLOT} must fill the rest of its path segment (the gateway never puts a value"
                     " between text of the sandbox's)")  # fmt: skip
            return None
        return text

    def discovery(self, value: Any, credentials: tuple[ProfileCredential, ...]) -> tuple[str, ...] | None:
        if value is None:
            return ()
        m = self.mapping(("discovery",), value, ("credentials",))
        if m is None:
            return None
        items = self.seq(("discovery", "credentials"), m.get("credentials", []), "credential names")
        if items is None:
            return None
        names = {c.name for c in credentials}
        out = []
        for i, item in enumerate(items):
            text = self.string(("discovery", "credentials", i), item, what="a credential name")
            if text is not None and credentials and text not in names:
                self.err(("discovery", "credentials", i), f"{text!r} is not a credential declared under credentials")
            elif text is not None:
                out.append(text)
        return tuple(out)

    def profile_endpoints(self, value: Any, credentialed: bool) -> tuple[Endpoint, ...] | None:
        if value is None:
            return ()
        items = self.seq(("endpoints",), value, "endpoints")
        if items is None:
            return None
        out = []
        ok = True
        for i, item in enumerate(items):
            path = ("endpoints", i)
            ep = self.endpoint(path, item)
            if ep is None:
                ok = False
                continue
            if ep.credential_binding is not None:
                self.err((*path, "credential_binding"), "a profile's endpoints bind its credentials already;"
                         " credential_binding belongs in a sandbox policy", at_key=True)  # fmt: skip
                ok = False
            # As upstream: every endpoint of a profile with credentials is credentialed, so the gateway must parse
            # its requests, unless the endpoint records the exception (allow_uninspected_credentials: true).
            elif (
                credentialed
                and not ep.allow_uninspected_credentials
                and (ep.tls == "skip" or not (ep.protocol in HTTP_PROTOCOLS or ep.inspects_l7))
            ):
                self.err(path, "this profile declares credentials, so each of its endpoints must be inspected:"
                         " set protocol: rest (or another HTTP protocol) and do not use tls: skip, or record the"
                         " exception with allow_uninspected_credentials: true (as upstream)")  # fmt: skip
                ok = False
            out.append(ep)
        return tuple(out) if ok else None

    def profile_binaries(self, value: Any) -> tuple[Binary, ...] | None:
        if value is None:
            return ()
        items = self.seq(("binaries",), value, "binaries")
        if items is None:
            return None
        out: list[Binary] = []
        for i, item in enumerate(items):
            # upstream profiles list paths as strings; a policy's {path: ...} form is accepted too
            raw = item.get("path") if isinstance(item, dict) and set(item) == {"path"} else item
            where: tuple[str | int, ...] = ("binaries", i, "path") if raw is not item else ("binaries", i)
            text = self.glob(where, raw, "an absolute executable path or glob")
            if text is None:
                return None
            if Binary(text) not in out:
                out.append(Binary(text))
        return tuple(out)


def _parse(doc: Document) -> ProviderProfile:
    v = _ProfileValidator(doc)
    v.errors.extend(doc.problems)
    result = v.profile()
    if v.errors or result is None:
        if not v.errors:  # pragma: no cover - defensive: every None path reports
            v.err((), "invalid provider profile")
        raise PolicyError(sorted(v.errors, key=lambda p: (p.line or 0, p.col or 0)))
    return result


def load_profile_text(text: str | bytes, filename: str = "<string>") -> ProviderProfile:
    """A provider profile from YAML (or JSON) text; :class:`PolicyError` with every problem positioned."""
    return _parse(load_document(text, filename))


def load_profile_file(path: str | os.PathLike[str]) -> ProviderProfile:
    return load_profile_text(*read_file(path))


def load_profile_data(data: Any, filename: str = "<data>") -> ProviderProfile:
    """Validate an already-parsed profile (an Ansible dict); problems carry no line."""
    return _parse(Document.from_data(data, filename))


def normalize_profile(profile: ProviderProfile) -> dict[str, Any]:
    """The canonical form: key order fixed, endpoints as a policy's canonical endpoints (sorted), binaries sorted,
    credentials sorted by name, defaults dropped. Two files meaning the same profile give the same form."""
    out: dict[str, Any] = {"id": profile.id}
    for key, default in (("display_name", ""), ("description", ""), ("category", "other"),
                         ("inference_capable", False)):  # fmt: skip
        if getattr(profile, key) != default:
            out[key] = getattr(profile, key)
    if profile.annotations:
        out["annotations"] = dict(profile.annotations)
    creds = []
    for c in sorted(profile.credentials, key=lambda c: c.name):
        entry: dict[str, Any] = {"name": c.name, "env_vars": list(c.env_vars)}
        for key in ("description", "required", "auth_style", "header_name", "query_param", "path_template"):
            value = getattr(c, key)
            if value not in (None, "", False):
                entry[key] = value
        creds.append(entry)
    if creds:
        out["credentials"] = creds
    if profile.discovery:
        out["discovery"] = {"credentials": sorted(set(profile.discovery))}
    if profile.endpoints:
        eps = {json.dumps(e, sort_keys=True): e for e in map(canonical_endpoint, profile.endpoints)}
        out["endpoints"] = [eps[k] for k in sorted(eps)]
    if profile.binaries:
        out["binaries"] = sorted({b.path for b in profile.binaries})
    return out


def profile_digest(profile: ProviderProfile) -> str:
    """``sha256:<hex>`` of the canonical form's compact, key-sorted JSON (``resource_version`` left out: it counts
    edits, it does not change what the profile allows)."""
    data = json.dumps(normalize_profile(profile), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()
