"""Provider profiles (upstream OpenShell Providers v2): a provider type's credentials, the endpoints they may be
sent to, and the binaries that use them, in upstream's YAML (``openshell provider profile export -o yaml``).

:func:`load_profile_text` / :func:`load_profile_file` validate a profile with the policy's positioned problems
(``FILE:LINE:COL: path: message``); endpoints are checked by the same code as a policy's. What clawfleet does not
do is refused rather than loaded and ignored: a sandbox-side ``token_grant`` would leave a sandbox with a
credential that never arrives. A ``refresh`` block (gateway-minted credentials: ``google_service_account_jwt``,
``oauth2_refresh_token``, ``aws_sts_assume_role``) is validated as upstream's profile checks do (the strategy's
material declared, its ``additional_outputs`` naming sibling credentials with the environment keys the SigV4
signer reads) and kept in the canonical form; the refresh strategies upstream resolves elsewhere (``static``,
``external``) and ``oauth2_client_credentials`` are refused by name. Metadata that changes nothing at the
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
from urllib.parse import urlsplit

from .canonical import canonical_endpoint
from .errors import PolicyError, format_path
from .loader import read_file
from .model import Binary, Endpoint
from .schema import HTTP_PROTOCOLS, Validator
from .yamlio import Document, load_document

__all__ = [
    "AUTH_STYLES",
    "CATEGORIES",
    "REFRESH_OUTPUT_ENV",
    "REFRESH_STRATEGIES",
    "CredentialRefresh",
    "ProfileCredential",
    "ProviderProfile",
    "RefreshMaterial",
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
               "path_template", "refresh")  # fmt: skip
#: Upstream credential options clawfleet does not offer: a token the sandbox fetches itself (SPIFFE JWT-SVID grant).
_MINTED = frozenset({"token_grant"})
_REFRESH = ("strategy", "token_url", "scopes", "refresh_before_seconds", "max_lifetime_seconds", "material",
            "additional_outputs")  # fmt: skip
#: The refresh strategies the gateway mints, with the material each needs (upstream's provider_refresh.rs).
REFRESH_STRATEGIES: dict[str, tuple[str, ...]] = {
    "google_service_account_jwt": ("client_email", "private_key"),
    "oauth2_refresh_token": ("client_id", "client_secret", "refresh_token"),
    "aws_sts_assume_role": ("role_arn",),
}
#: Upstream strategies clawfleet refuses, and why.
_OTHER_STRATEGIES = {
    "static": "a static credential needs no refresh block: give its value in the provider's credential file",
    "external": "an externally refreshed credential is a file some other process rewrites: give that file as the"
    " provider's credential file (the gateway re-reads it on change)",
    "oauth2_client_credentials": "clawfleet's gateway mints google_service_account_jwt, oauth2_refresh_token and"
    " aws_sts_assume_role tokens only",
}
#: Extra outputs a strategy mints besides its primary credential, with the environment key each must use (the
#: SigV4 signer reads AWS's keys by name), and the primary key it pins (upstream's strategy_output_spec).
REFRESH_OUTPUT_ENV: dict[str, dict[str, str]] = {
    "aws_sts_assume_role": {"secret_access_key": "AWS_SECRET_ACCESS_KEY", "session_token": "AWS_SESSION_TOKEN"},
}
_PRIMARY_ENV = {"aws_sts_assume_role": "AWS_ACCESS_KEY_ID"}
_MATERIAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_LIFETIME = 12 * 3600  # AWS's longest AssumeRole session; Google tokens live one hour
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
class RefreshMaterial:
    """One input a refresh strategy needs (a service account key, a role ARN): configured on the gateway only."""

    name: str
    description: str = ""
    required: bool = False
    secret: bool = False


@dataclass(frozen=True)
class CredentialRefresh:
    """How the gateway mints a credential (upstream's ``refresh`` block). The sandbox holds only the placeholder."""

    strategy: str  # one of REFRESH_STRATEGIES
    token_url: str = ""  # "" = the strategy's default (Google's token endpoint, the region's STS)
    scopes: tuple[str, ...] = ()
    refresh_before_seconds: int = 0
    max_lifetime_seconds: int = 0
    material: tuple[RefreshMaterial, ...] = ()
    additional_outputs: tuple[tuple[str, str], ...] = ()  # (output id, sibling credential name)


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
    refresh: CredentialRefresh | None = None

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
        if ok:
            ok = self.refresh_outputs(out)
        return tuple(out) if ok else None

    def refresh_outputs(self, creds: list[ProfileCredential]) -> bool:
        """A refresh's extra outputs land on sibling credentials with the keys the strategy pins (upstream: the
        SigV4 signer reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN by name); a sibling is
        minted by one refresh only and has none of its own."""
        ok = True
        by_name = {c.name: i for i, c in enumerate(creds)}
        minted: dict[str, int] = {}
        for i, c in enumerate(creds):
            if c.refresh is None:
                continue
            primary = _PRIMARY_ENV.get(c.refresh.strategy)
            if primary is not None and primary not in c.env_vars:
                self.err(("credentials", i, "env_vars"), f"strategy {c.refresh.strategy} mints {primary}: list it")
                ok = False
            for j, (output, name) in enumerate(c.refresh.additional_outputs):
                where = ("credentials", i, "refresh", "additional_outputs", j, "credential")
                k = by_name.get(name)
                if k is None or k == i:
                    self.err(where, f"{name!r} is not a sibling credential of {c.name!r}")
                    ok = False
                    continue
                sibling = creds[k]
                key = REFRESH_OUTPUT_ENV[c.refresh.strategy][output]
                if key not in sibling.env_vars:
                    self.err(where, f"credential {name!r} receives {output}, so it must list {key} in env_vars")
                    ok = False
                if sibling.refresh is not None or name in minted:
                    self.err(where, f"credential {name!r} is already minted by another refresh")
                    ok = False
                minted[name] = i
        return ok

    def credential(self, path: tuple[str | int, ...], value: Any) -> ProfileCredential | None:
        m = self.mapping(path, value, _CREDENTIAL, required=("name", "env_vars"), unsupported=_MINTED,
                         what="a credential")  # fmt: skip
        if m is None:
            return None
        for key in _MINTED & set(m):
            # replace the generic "not supported" with why: nothing would ever fetch the token
            self.errors[:] = [e for e in self.errors if e.path != format_path((*path, key))]
            self.err((*path, key), f"{key!r}: clawfleet does not offer sandbox-side token grants; use a refresh"
                     " strategy the gateway mints, or a static value in the provider's file", at_key=True)  # fmt: skip
        refresh = self.refresh((*path, "refresh"), m["refresh"]) if "refresh" in m else None
        if "refresh" in m and refresh is None:
            return None
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
                                 header.lower() if header else None, param, template, refresh)  # fmt: skip

    def refresh(self, path: tuple[str | int, ...], value: Any) -> CredentialRefresh | None:
        m = self.mapping(path, value, _REFRESH, required=("strategy",), what="a refresh block")
        if m is None or "strategy" not in m:
            return None
        bad = any(k not in _REFRESH for k in m)
        strategy = self.string((*path, "strategy"), m["strategy"], what="a refresh strategy")
        if strategy is not None:
            strategy = strategy.strip().lower().replace("-", "_")  # upstream's spelling tolerance
            if strategy in _OTHER_STRATEGIES:
                self.err((*path, "strategy"), f"strategy {strategy}: {_OTHER_STRATEGIES[strategy]}")
                strategy = None
            elif strategy not in REFRESH_STRATEGIES:
                self.err((*path, "strategy"), f"unknown refresh strategy {strategy!r} (one of"
                         f" {', '.join(REFRESH_STRATEGIES)})")  # fmt: skip
                strategy = None
        url = self.token_url((*path, "token_url"), m["token_url"]) if "token_url" in m else ""
        if strategy in ("google_service_account_jwt", "oauth2_refresh_token") and "token_url" not in m:
            self.err(path, f"strategy {strategy} needs token_url (the OAuth 2.0 token endpoint)")
            bad = True
        scopes: list[str] = []
        items = self.seq((*path, "scopes"), m["scopes"], "scopes") if "scopes" in m else []
        for i, item in enumerate(items or []):
            text = self.string((*path, "scopes", i), item, what="an OAuth scope")
            if text is not None and (not text.isascii() or any(c.isspace() or c == '"' for c in text)):
                self.err((*path, "scopes", i), f"{text!r} is not an OAuth scope (no spaces or quotes)")
            elif text is not None:
                scopes.append(text)
        before = after = 0
        if "refresh_before_seconds" in m:
            before = self.integer((*path, "refresh_before_seconds"), m["refresh_before_seconds"], 0, _MAX_LIFETIME,
                                  "seconds") or 0  # fmt: skip
        if "max_lifetime_seconds" in m:
            after = self.integer((*path, "max_lifetime_seconds"), m["max_lifetime_seconds"], 60, _MAX_LIFETIME,
                                 "seconds") or 0  # fmt: skip
        if before and after and before >= after:
            self.err((*path, "refresh_before_seconds"), f"refresh_before_seconds ({before}) must be less than"
                     f" max_lifetime_seconds ({after}): the token would be refreshed on every request")  # fmt: skip
        material = self.material((*path, "material"), m.get("material"), strategy)
        outputs = self.outputs((*path, "additional_outputs"), m.get("additional_outputs"), strategy)
        if bad or strategy is None or url is None or material is None or outputs is None:
            return None
        return CredentialRefresh(strategy, url, tuple(scopes), before, after, material, outputs)

    def token_url(self, path: tuple[str | int, ...], value: Any) -> str | None:
        text = self.string(path, value, what="a token URL")
        if text is None:
            return None
        parsed = urlsplit(text)
        loopback = parsed.hostname in ("127.0.0.1", "::1", "localhost")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            self.err(path, f"{text!r}: the token URL must be https:// (http:// only to a loopback token broker):"
                     " the gateway sends the provider's material there")  # fmt: skip
            return None
        if not parsed.hostname or parsed.username or parsed.password or parsed.fragment:
            self.err(path, f"{text!r} is not a token URL (a host, no user:password@, no #fragment)")
            return None
        return text

    def material(
        self, path: tuple[str | int, ...], value: Any, strategy: str | None
    ) -> tuple[RefreshMaterial, ...] | None:
        items = self.seq(path, value, "refresh material") if value is not None else []
        if items is None:
            return None
        out: list[RefreshMaterial] = []
        for i, item in enumerate(items):
            m = self.mapping((*path, i), item, ("name", "description", "required", "secret"), required=("name",),
                             what="a material entry")  # fmt: skip
            if m is None or "name" not in m:
                return None
            name = self.string((*path, i, "name"), m["name"], what="a material name")
            if name is not None and not _MATERIAL_NAME.match(name):
                self.err((*path, i, "name"), f"{name!r} is not a material name (lower-case, digits, '_')")
                return None
            if name is not None and any(x.name == name for x in out):
                self.err((*path, i, "name"), f"material {name!r} is declared twice")
                return None
            desc = (
                self.string((*path, i, "description"), m["description"], allow_empty=True) if "description" in m else ""
            )
            flags = [self.boolean((*path, i, k), m[k]) if k in m else False for k in ("required", "secret")]
            if name is None or desc is None or None in flags:
                return None
            out.append(RefreshMaterial(name, desc, bool(flags[0]), bool(flags[1])))
        names = {x.name for x in out}
        for need in REFRESH_STRATEGIES.get(strategy or "", ()):
            if need not in names:
                self.err(path if value is not None else path[:-1], f"strategy {strategy} needs material {need!r}")
                return None
        return tuple(out)

    def outputs(
        self, path: tuple[str | int, ...], value: Any, strategy: str | None
    ) -> tuple[tuple[str, str], ...] | None:
        spec = REFRESH_OUTPUT_ENV.get(strategy or "", {})
        items = self.seq(path, value, "additional outputs") if value is not None else []
        if items is None:
            return None
        out: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            m = self.mapping((*path, i), item, ("output", "credential"), required=("output", "credential"),
                             what="an additional output")  # fmt: skip
            if m is None or not {"output", "credential"} <= set(m):
                return None
            output = self.string((*path, i, "output"), m["output"], what="an output id")
            cred = self.string((*path, i, "credential"), m["credential"], what="a credential name")
            if output is None or cred is None:
                return None
            if output not in spec:
                known = ", ".join(spec) or "none"
                self.err((*path, i, "output"), f"strategy {strategy} mints no output {output!r} (its outputs: {known})")
                return None
            if any(o == output for o, _ in out):
                self.err((*path, i, "output"), f"output {output!r} is mapped twice")
                return None
            out.append((output, cred))
        missing = [o for o in spec if all(o != x for x, _ in out)]
        if strategy is not None and missing:
            self.err(path if value is not None else path[:-1], f"strategy {strategy} mints {', '.join(missing)} too:"
                     " map each to a sibling credential under additional_outputs")  # fmt: skip
            return None
        return tuple(out)

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
        if c.refresh is not None:
            entry["refresh"] = _canonical_refresh(c.refresh)
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


def _canonical_material(x: RefreshMaterial) -> dict[str, Any]:
    out: dict[str, Any] = {"name": x.name}
    for key in ("description", "required", "secret"):
        if getattr(x, key):
            out[key] = getattr(x, key)
    return out


def _canonical_refresh(r: CredentialRefresh) -> dict[str, Any]:
    out: dict[str, Any] = {"strategy": r.strategy}
    if r.token_url:
        out["token_url"] = r.token_url
    if r.scopes:
        out["scopes"] = sorted(set(r.scopes))
    for key in ("refresh_before_seconds", "max_lifetime_seconds"):
        if getattr(r, key):
            out[key] = getattr(r, key)
    if r.material:
        out["material"] = [_canonical_material(x) for x in sorted(r.material, key=lambda x: x.name)]
    if r.additional_outputs:
        out["additional_outputs"] = [{"output": o, "credential": c} for o, c in sorted(r.additional_outputs)]
    return out


def profile_digest(profile: ProviderProfile) -> str:
    """``sha256:<hex>`` of the canonical form's compact, key-sorted JSON (``resource_version`` left out: it counts
    edits, it does not change what the profile allows)."""
    data = json.dumps(normalize_profile(profile), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()
