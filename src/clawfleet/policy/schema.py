"""Validation of the OpenShell policy schema, with a position for every problem.

:func:`parse_document` walks a :class:`~clawfleet.policy.yamlio.Document` once,
collects every problem (not just the first), and builds the immutable model when
there is none. :data:`JSON_SCHEMA` is the same schema for editors (``policy schema``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from .errors import PolicyError, Problem
from .middleware import REGEX, check_regex_config, tls_skip_conflicts
from .model import (
    WEBSOCKET_ACTIONS,
    WEBSOCKET_BINARY,
    WEBSOCKET_TEXT,
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
from .yamlio import Document

__all__ = [
    "MAX_FS_PATHS",
    "MAX_MIDDLEWARES",
    "MAX_PATH_LEN",
    "PROTOCOLS",
    "PROVIDER_NAME_RE",
    "PROVIDER_RULE_PREFIX",
    "SUPPORTED_MIDDLEWARES",
    "Validator",
    "normalize_host_pattern",
    "parse_document",
]

Path = tuple[str | int, ...]

MAX_PATH_LEN = 4096
MAX_FS_PATHS = 256
MAX_MIDDLEWARES = 10
PROTOCOLS = ("rest", "websocket", "graphql", "mcp", "json-rpc", "tcp", "sql")
HTTP_PROTOCOLS = frozenset({"rest", "websocket", "graphql", "mcp", "json-rpc"})
ENFORCEMENTS = ("enforce", "audit")
ACCESS = ("read-only", "read-write", "full")
TLS_MODES = ("skip", "terminate", "passthrough")
LANDLOCK_MODES = ("best_effort", "hard_requirement")
ON_ERROR = ("fail_closed", "fail_open")

#: Middleware types the clawfleet gateway implements, each with its config checker (problems as
#: ``(path below config, message)``). A policy naming any other type is refused: loading it with the hook
#: silently not running would let content through that the policy's author meant to be inspected.
SUPPORTED_MIDDLEWARES: dict[str, Callable[[Any], list[tuple[tuple[str | int, ...], str]]]] = {
    REGEX: check_regex_config,
}
#: Host patterns per middleware selector (include + exclude), as upstream.
MAX_MIDDLEWARE_SELECTOR_PATTERNS = 32

_TOP_POLICY = (
    "version",
    "filesystem_policy",
    "landlock",
    "process",
    "network_policies",
    "network_middlewares",
)
_TOP_PRESET = ("preset", "network_policies", "network_middlewares")
_ENDPOINT_KEYS = (
    "host",
    "port",
    "ports",
    "path",
    "protocol",
    "tls",
    "enforcement",
    "access",
    "rules",
    "deny_rules",
    "allowed_ips",
    "mcp",
    "json_rpc",
    "graphql_max_body_bytes",
    "persisted_queries",
    "graphql_persisted_queries",
    "credential_binding",
    "request_body_credential_rewrite",
    "websocket_credential_rewrite",
    "credential_signing",
    "signing_service",
    "signing_region",
    "allow_uninspected_credentials",
)
_SELECTOR_KEYS = ("method", "path", "query")
_GRAPHQL_KEYS = ("operation_type", "operation_name", "fields")
_WEBSOCKET_METHODS = frozenset({"GET", WEBSOCKET_TEXT, WEBSOCKET_BINARY, "*"})
_BODY_SELECTOR_KEYS = {
    "mcp": ("method", "tool", "params"),
    "json-rpc": ("method",),
    "graphql": ("operation_type", "operation_name", "fields"),
}
#: The body a gateway buffers to judge one request, unless the endpoint sets its own limit (upstream's default).
DEFAULT_MAX_BODY_BYTES = 65536
#: The largest body limit a policy may set: the gateway holds the whole body in memory per request.
MAX_BODY_BYTES = 16 * 1024 * 1024
GRAPHQL_OPERATION_TYPES = ("query", "mutation", "subscription", "*")
#: MCP tool names upstream accepts under ``mcp.strict_tool_names`` (the MCP-recommended pattern).
MCP_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_RPC_METHOD_RE = re.compile(r"^[\x21-\x7e]{1,256}$")
_UPSTREAM_ENDPOINT_ONLY = frozenset(
    {
        "allow_encoded_slash",
        "review",
    }
)
_UPSTREAM_SELECTOR_ONLY = frozenset({"command", "review"})
#: upstream's credential_signing modes: sign the body as the client did, always, or never (UNSIGNED-PAYLOAD)
SIGNING_MODES = ("sigv4", "sigv4:body", "sigv4:no_body")
SIGNING_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
METHOD_RE = re.compile(r"^(?:\*|[A-Za-z][A-Za-z0-9_-]{0,31})$")
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_WILD_LABEL_RE = re.compile(r"^[a-z0-9_*?-]{1,63}$")
USER_RE = re.compile(r"^(?:[0-9]{1,10}|[a-z_][a-z0-9_.-]{0,30}\$?)$")
KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/+-]{0,127}$")
#: A provider instance name in ``credential_binding.provider`` (upstream's names: ``work-gcp``, ``my-claude``).
PROVIDER_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
#: Network policy keys upstream reserves for the rules it derives from attached provider profiles.
PROVIDER_RULE_PREFIX = "_provider_"


def normalize_host_pattern(raw: str) -> tuple[str | None, str | None]:
    """Return ``(normalised, None)`` or ``(None, why)`` for a policy host pattern.

    Lower-cases, strips one trailing dot, IDNA-encodes non-ASCII labels. The first label may be
    a wildcard (``*``, ``**``, ``*-x``, ``?``); a later label only the whole label ``*`` (exactly one DNS label,
    upstream's ``*.s3.*.amazonaws.com``); ``**`` only as the whole first label; the last label is never a
    wildcard and at least one fixed label must follow a wildcard label (as upstream's host-wildcard shape check).
    """
    host = raw.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return None, "host is empty"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return str(ip), None
    labels = host.split(".")
    out = []
    for i, label in enumerate(labels):
        if not label:
            return None, "host has an empty label (two dots in a row?)"
        if not label.isascii():
            if any(c in label for c in "*?"):
                return None, "a wildcard label must be ASCII"
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return None, f"label {label!r} is not a valid internationalised domain name"
        if any(c in label for c in "*?"):
            if i != 0 and label != "*":
                return None, (
                    "a wildcard after the first label must be the whole label '*' (exactly one DNS label, as"
                    " upstream: *.s3.*.amazonaws.com); '**', '*-x' and '?' belong in the first label only"
                )
            if i != 0 and i == len(labels) - 1:
                return None, "the last label must be fixed (no wildcard top-level domain)"
            if i != 0:
                out.append(label)
                continue
            if "**" in label and label != "**":
                return None, "'**' must be the whole first label (**.example.com)"
            if not _WILD_LABEL_RE.match(label):
                return None, f"first label {label!r} has characters not allowed in a host name"
        elif not _LABEL_RE.match(label):
            return None, f"label {label!r} is not a valid host name label (letters, digits, '-', '_')"
        out.append(label)
    if any(c in out[0] for c in "*?") and len(out) < 2:
        return None, "a host wildcard must keep at least one fixed label (for example *.example.com)"
    if len(host) > 253:
        return None, "host name is longer than 253 characters"
    return ".".join(out), None


def _did_you_mean(key: str, options: tuple[str, ...] | list[str]) -> str:
    import difflib  # only for a policy with a problem: not on every `clawfleet sandbox run`'s start path

    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Validator:
    """Checks one document and collects every problem; shared with provider profiles (:mod:`.profiles`)."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.once: set[str] = set()

    # -- reporting ----------------------------------------------------------------------
    def err(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.errors.append(self.doc.problem(path, message, at_key=at_key))

    def warn(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.warnings.append(self.doc.problem(path, message, at_key=at_key, severity="warning"))

    # -- primitives ---------------------------------------------------------------------
    def mapping(
        self,
        path: Path,
        value: Any,
        allowed: tuple[str, ...],
        *,
        required: tuple[str, ...] = (),
        unsupported: frozenset[str] = frozenset(),
        what: str = "",
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"expected a mapping{' (' + what + ')' if what else ''}, got {_type_name(value)}")
            return None
        for key in value:
            if key in allowed:
                continue
            if key in unsupported:
                self.err(
                    (*path, key),
                    f"{key!r} is an upstream OpenShell option that clawfleet does not support; remove it",
                    at_key=True,
                )
            else:
                self.err(
                    (*path, key),
                    f"unknown key {key!r}{_did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}",
                    at_key=True,
                )
        for key in required:
            if key not in value:
                self.err(path, f"missing required key {key!r}")
        return value

    def string(self, path: Path, value: Any, *, what: str = "a string", allow_empty: bool = False) -> str | None:
        if isinstance(value, bool):
            self.err(
                path,
                f"expected {what}, got boolean {str(value).lower()}"
                " (unquoted on/off/yes/no/true/false are booleans: quote the value)",
            )
            return None
        if not isinstance(value, str):
            self.err(path, f"expected {what}, got {_type_name(value)}")
            return None
        if self.doc.is_yaml11_trap(path, value):
            self.err(
                path,
                f"unquoted {value!r} is a boolean or number in YAML 1.1 (Ansible, PyYAML read it so);"
                f' quote it ("{value}") if a string is meant',
            )
            return None
        if not allow_empty and not value.strip():
            self.err(path, f"expected {what}, got an empty string")
            return None
        if "\x00" in value:
            self.err(path, "NUL character in string")
            return None
        return value

    def choice(self, path: Path, value: Any, options: tuple[str, ...]) -> str | None:
        text = self.string(path, value, what=f"one of {', '.join(options)}")
        if text is None:
            return None
        if text not in options:
            self.err(path, f"expected one of {', '.join(options)}, got {text!r}{_did_you_mean(text, options)}")
            return None
        return text

    def boolean(self, path: Path, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        hint = ""
        if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n"):
            hint = " (YAML 1.1 words like yes/no/on/off are ambiguous: write true or false)"
        self.err(path, f"expected true or false, got {_type_name(value)}{hint}")
        return None

    def integer(self, path: Path, value: Any, lo: int, hi: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(path, f"expected {what} (an integer {lo}..{hi}), got {_type_name(value)}")
            return None
        if not lo <= value <= hi:
            self.err(path, f"{what} must be between {lo} and {hi}, got {value}")
            return None
        return value

    def seq(self, path: Path, value: Any, what: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.err(path, f"expected a list of {what}, got {_type_name(value)}")
            return None
        return value

    def map_key(self, path: Path, key: str) -> bool:
        kind = self.doc.nonstr_keys.get(path)
        if kind == "yaml11":
            self.err(path, f"unquoted key {key!r} is a boolean in YAML 1.1; quote it", at_key=True)
            return False
        if kind is not None:
            self.err(path, f"key {key!r} is read as {kind}; policy names must be strings (quote it)", at_key=True)
            return False
        if not KEY_RE.match(key):
            self.err(
                path,
                f"name {key!r} must be 1-128 characters of letters, digits and _ . : @ / + -,"
                " starting with a letter, digit or _",
                at_key=True,
            )
            return False
        return True

    # -- sections -----------------------------------------------------------------------
    def fs_path(self, path: Path, value: Any) -> str | None:
        text = self.string(path, value, what="an absolute path")
        if text is None:
            return None
        if len(text) > MAX_PATH_LEN:
            self.err(path, f"path is longer than {MAX_PATH_LEN} characters")
            return None
        if not text.startswith("/"):
            self.err(path, f"path must be absolute (start with /), got {text!r}")
            return None
        if ".." in text.split("/"):
            self.err(path, "path must not contain '..'")
            return None
        norm = re.sub(r"/+", "/", text)
        return norm.rstrip("/") or "/"

    def filesystem(self, path: Path, value: Any) -> FilesystemPolicy | None:
        m = self.mapping(path, value, ("include_workdir", "read_only", "read_write"))
        if m is None:
            return None
        include = self.boolean((*path, "include_workdir"), m["include_workdir"]) if "include_workdir" in m else False
        lists: dict[str, list[str]] = {}
        total = 0
        for name in ("read_only", "read_write"):
            raw = m.get(name)
            out: list[str] = []
            if raw is not None or name in m:
                items = self.seq((*path, name), raw, "absolute paths")
                for i, item in enumerate(items or []):
                    total += 1
                    p = self.fs_path((*path, name, i), item)
                    if p is None:
                        continue
                    if p in out:
                        self.warn((*path, name, i), f"{p} is listed twice")
                        continue
                    if name == "read_write" and p == "/":
                        self.err((*path, name, i), "'/' may not be read-write")
                        continue
                    out.append(p)
            lists[name] = out
        if total > MAX_FS_PATHS:
            self.err(path, f"at most {MAX_FS_PATHS} filesystem paths are allowed, got {total}", at_key=True)
        both = set(lists["read_only"]) & set(lists["read_write"])
        for p in sorted(both):
            self.warn(path, f"{p} is both read-only and read-write; Landlock rights add up, so it is read-write")
        if include is None:
            return None
        return FilesystemPolicy(bool(include), tuple(lists["read_only"]), tuple(lists["read_write"]))

    def landlock(self, path: Path, value: Any) -> LandlockPolicy | None:
        m = self.mapping(path, value, ("compatibility",))
        if m is None:
            return None
        if "compatibility" not in m:
            return LandlockPolicy()
        mode = self.choice((*path, "compatibility"), m["compatibility"], LANDLOCK_MODES)
        return LandlockPolicy(mode) if mode else None

    def identity(self, path: Path, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value == 0:
                self.err(path, "running as root (id 0) is not allowed")
                return None
            if not 0 < value < 2**32 - 1:
                self.err(path, f"id must be between 1 and {2**32 - 2}, got {value}")
                return None
            return str(value)
        text = self.string(path, value, what="a user/group name or numeric id")
        if text is None:
            return None
        if text == "root" or (text.isdigit() and int(text) == 0):
            self.err(path, "running as root is not allowed")
            return None
        if not USER_RE.match(text):
            self.err(path, f"{text!r} is not a valid user/group name or numeric id")
            return None
        return text

    def process(self, path: Path, value: Any) -> ProcessPolicy | None:
        m = self.mapping(path, value, ("run_as_user", "run_as_group"))
        if m is None:
            return None
        user = self.identity((*path, "run_as_user"), m["run_as_user"]) if "run_as_user" in m else None
        group = self.identity((*path, "run_as_group"), m["run_as_group"]) if "run_as_group" in m else None
        if ("run_as_user" in m and user is None) or ("run_as_group" in m and group is None):
            return None
        return ProcessPolicy(user, group)

    def glob(self, path: Path, value: Any, what: str, *, absolute: bool = True, any_path: bool = False) -> str | None:
        """A glob as written. ``any_path`` (request and endpoint paths): upstream also takes ``**`` (every path:
        its Rego ``path_matches(_, "**")``) and ``**/...`` (its glob's ``**`` matches any text, ``/`` included);
        a request path always starts with ``/``, so they are read as ``/**`` and ``/**/...``, which match the same
        paths, and each pair of spellings is one policy."""
        text = self.string(path, value, what=what)
        if text is None:
            return None
        if any_path and (text == "**" or text.startswith("**/")):
            text = "/" + text
        if len(text) > MAX_PATH_LEN:
            self.err(path, f"{what} is longer than {MAX_PATH_LEN} characters")
            return None
        if absolute and not text.startswith("/"):
            also = " (or be '**', every path, or start with '**/')" if any_path else ""
            self.err(path, f"{what} must start with '/'{also}, got {text!r}")
            return None
        if absolute and ".." in text.split("/"):
            self.err(path, f"{what} must not contain '..'")
            return None
        if any(c in text for c in "[]{}"):
            self.err(path, f"{what} supports only *, ** and ? wildcards; [..] and {{..}} are not supported")
            return None
        return text

    def query(self, path: Path, value: Any) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        if not isinstance(value, dict):
            self.err(
                path,
                f"expected a mapping of query parameter -> glob or {{any: [globs]}}, got {_type_name(value)}",
            )
            return None
        out = []
        ok = True
        for param, matcher in value.items():
            ppath = (*path, param)
            if not param:
                self.err(ppath, "query parameter name is empty", at_key=True)
                ok = False
                continue
            if isinstance(matcher, dict):
                mm = self.mapping(ppath, matcher, ("any",), required=("any",))
                if mm is None or "any" not in mm:
                    ok = False
                    continue
                items = self.seq((*ppath, "any"), mm["any"], "globs")
                if items is None:
                    ok = False
                    continue
                if not items:
                    self.err((*ppath, "any"), "'any' needs at least one glob")
                    ok = False
                    continue
                globs = []
                for i, g in enumerate(items):
                    text = self.glob((*ppath, "any", i), g, "a query value glob", absolute=False)
                    if text is None:
                        ok = False
                    else:
                        globs.append(text)
                out.append((param, tuple(sorted(set(globs)))))
            else:
                text = self.glob(ppath, matcher, "a query value glob or {any: [globs]}", absolute=False)
                if text is None:
                    ok = False
                else:
                    out.append((param, (text,)))
        return tuple(sorted(out)) if ok else None

    def selector(self, path: Path, value: Any, *, deny: bool, protocol: str | None = None) -> L7Rule | None:
        if protocol in _BODY_SELECTOR_KEYS:
            return self.body_selector(path, value, deny=deny, protocol=protocol)
        if protocol == "websocket" and isinstance(value, dict) and any(k in _GRAPHQL_KEYS for k in value):
            # GraphQL-over-WebSocket (upstream): the rule judges the operations of client messages; the upgrade
            # needs its own GET rule, so a rule is one or the other, never both (upstream refuses the mix too).
            transport = [k for k in value if k in _SELECTOR_KEYS]
            for key in transport:
                self.err((*path, key), "a WebSocket GraphQL rule must not combine method/path/query with"
                         " operation_type/operation_name/fields: allow the upgrade with its own GET rule",
                         at_key=True)  # fmt: skip
            rule = self.body_selector(path, {k: v for k, v in value.items() if k not in transport}, deny=deny,
                                      protocol="graphql")  # fmt: skip
            return None if transport else rule
        body_keys = {"operation_type", "operation_name", "fields", "tool", "params"}
        for key in value if isinstance(value, dict) else ():
            if key in body_keys:
                self.err(
                    (*path, key),
                    f"{key!r} is a body selector: it applies on protocol: graphql / mcp / json-rpc endpoints"
                    + (" (on protocol: websocket only GraphQL operation rules apply: MCP and JSON-RPC over"
                       " WebSocket are not upstream features)" if protocol == "websocket" else ""),
                    at_key=True,
                )  # fmt: skip
        reported = tuple(k for k in value if k in body_keys) if isinstance(value, dict) else ()
        m = self.mapping(path, value, (*_SELECTOR_KEYS, *reported), unsupported=_UPSTREAM_SELECTOR_ONLY)
        if m is None:
            return None
        bad = any(k not in _SELECTOR_KEYS for k in m)
        m = {k: v for k, v in m.items() if k in _SELECTOR_KEYS}
        method = None
        if "method" in m:
            method = self.string((*path, "method"), m["method"], what="an HTTP method or '*'")
            if method is not None:
                if not METHOD_RE.match(method):
                    self.err((*path, "method"), f"{method!r} is not an HTTP method (GET, POST, ...) or '*'")
                    method = None
                    bad = True
                else:
                    method = method.upper()
                    if protocol != "websocket" and method in WEBSOCKET_ACTIONS:
                        self.err(
                            (*path, "method"),
                            f"{method} is a WebSocket message action: it applies on"
                            " protocol: websocket endpoints (after the upgrade), never to an HTTP request",
                        )
                        method, bad = None, True  # fmt: skip
                    elif protocol == "websocket" and method not in _WEBSOCKET_METHODS:
                        self.warn((*path, "method"), f"unknown WebSocket method {method!r}: a protocol: websocket"
                                  " endpoint judges GET (the upgrade), WEBSOCKET_TEXT and WEBSOCKET_BINARY (client"
                                  " messages) or '*'; this rule matches nothing")  # fmt: skip
            else:
                bad = True
        rpath = None
        if "path" in m:
            rpath = self.glob((*path, "path"), m["path"], "a path glob", any_path=True)
            bad = bad or rpath is None
        query: tuple[tuple[str, tuple[str, ...]], ...] = ()
        if "query" in m:
            q = self.query((*path, "query"), m["query"])
            if q is None:
                bad = True
            else:
                query = q
        if deny and not m:
            self.warn(path, "deny rule without method, path or query denies every request")
        if bad:
            return None
        return L7Rule(method, rpath, query)

    def glob_matcher(self, path: Path, value: Any, what: str) -> tuple[str, ...] | None:
        """A glob or ``{any: [globs]}`` (upstream's QueryMatcherDef) -> the any-of globs."""
        if isinstance(value, dict):
            mm = self.mapping(path, value, ("any",), required=("any",))
            if mm is None or "any" not in mm:
                return None
            items = self.seq((*path, "any"), mm["any"], "globs")
            if not items:
                if items is not None:
                    self.err((*path, "any"), "'any' needs at least one glob")
                return None
            out = [self.glob((*path, "any", i), g, what, absolute=False) for i, g in enumerate(items)]
            return None if any(g is None for g in out) else tuple(sorted({g for g in out if g is not None}))
        g = self.glob(path, value, f"{what} or {{any: [globs]}}", absolute=False)
        return None if g is None else (g,)

    def body_selector(self, path: Path, value: Any, *, deny: bool, protocol: str) -> L7Rule | None:
        keys = _BODY_SELECTOR_KEYS[protocol]
        wrong = [] if not isinstance(value, dict) else [k for k in value if k in _SELECTOR_KEYS and k not in keys]
        for key in wrong:
            self.err(
                (*path, key),
                f"{key!r} does not apply on a protocol: {protocol} endpoint (its rules judge the request body:"
                f" {', '.join(keys)}); scope the endpoint with its own 'path' instead",
                at_key=True,
            )
        m = self.mapping(path, value, (*keys, *wrong), unsupported=_UPSTREAM_SELECTOR_ONLY)
        if m is None:
            return None
        bad = bool(wrong) or any(k not in keys for k in m)
        m = {k: v for k, v in m.items() if k in keys}
        method = None
        if "method" in m:
            method = self.string((*path, "method"), m["method"], what="a JSON-RPC method name")
            if method is None:
                bad = True
            elif not _RPC_METHOD_RE.match(method):
                self.err((*path, "method"), f"{method!r} is not a JSON-RPC method name (printable ASCII, no spaces)")
                bad = True
            elif protocol == "json-rpc" and method != "*" and any(c in method for c in "*?"):
                self.err(
                    (*path, "method"),
                    f"{method!r}: JSON-RPC method rules take an exact name or '*' (other wildcards are refused"
                    " upstream)",
                )
                bad = True
            elif protocol == "mcp" and any(c in method for c in "*?") and not method.startswith("tools/"):
                self.err(
                    (*path, "method"),
                    f"{method!r}: MCP method globs are accepted only for the tools/ family (tools/*); omit"
                    " 'method' under mcp.allow_all_known_mcp_methods to match every MCP method",
                )
                bad = True
        tool: tuple[str, ...] = ()
        if "tool" in m and "params" in m:
            self.err((*path, "params"), "use either 'tool' or 'params: {name: ...}', not both", at_key=True)
            bad = True
        if "tool" in m:
            t = self.glob_matcher((*path, "tool"), m["tool"], "an MCP tool name glob")
            bad = bad or t is None
            tool = t or ()
        elif "params" in m:
            pm = self.mapping((*path, "params"), m["params"], ("name",), required=("name",))
            if pm is None or set(pm) != {"name"}:
                if pm is not None and any(k != "name" for k in pm):
                    self.errors[-1] = self.doc.problem(
                        (*path, "params"),
                        "MCP params matchers support only 'name' (the tools/call tool name); tool argument"
                        " matching is not supported (upstream refuses it too)",
                    )
                bad = True
            else:
                t = self.glob_matcher((*path, "params", "name"), pm["name"], "an MCP tool name glob")
                bad = bad or t is None
                tool = t or ()
        op_type = None
        if "operation_type" in m:
            op_type = self.choice((*path, "operation_type"), m["operation_type"], GRAPHQL_OPERATION_TYPES)
            bad = bad or op_type is None
        op_name = None
        if "operation_name" in m:
            op_name = self.glob((*path, "operation_name"), m["operation_name"], "an operation name glob",
                                absolute=False)  # fmt: skip
            bad = bad or op_name is None
        fields: tuple[str, ...] = ()
        if "fields" in m:
            items = self.seq((*path, "fields"), m["fields"], "root field globs")
            if not items:
                if items is not None:
                    self.err((*path, "fields"), "'fields' needs at least one root field glob")
                bad = True
            else:
                got = [self.glob((*path, "fields", i), f, "a root field glob", absolute=False)
                       for i, f in enumerate(items)]  # fmt: skip
                bad = bad or any(g is None for g in got)
                fields = tuple(sorted({g for g in got if g is not None}))
        if not m and deny:
            self.warn(path, f"deny rule without {', '.join(keys)} denies every request")
        if bad:
            return None
        return L7Rule(method, None, (), tool=tool, operation_type=op_type, operation_name=op_name, fields=fields)

    def rules(self, path: Path, value: Any, protocol: str | None = None) -> tuple[L7Rule, ...] | None:
        items = self.seq(path, value, "rules ({allow: {method, path, query}})")
        if items is None:
            return None
        out = []
        ok = True
        for i, item in enumerate(items):
            ipath = (*path, i)
            m = self.mapping(ipath, item, ("allow",), required=("allow",), what="{allow: {method, path, query}}")
            if m is None or "allow" not in m or any(k != "allow" for k in m):
                ok = False
                continue
            rule = self.selector((*ipath, "allow"), m["allow"], deny=False, protocol=protocol)
            if rule is None:
                ok = False
            else:
                out.append(rule)
        return tuple(out) if ok else None

    def deny_rules(self, path: Path, value: Any, protocol: str | None = None) -> tuple[L7Rule, ...] | None:
        items = self.seq(path, value, "deny rules ({method, path, query})")
        if items is None:
            return None
        out = []
        ok = True
        for i, item in enumerate(items):
            if isinstance(item, dict) and "allow" in item:
                self.err(
                    (*path, i, "allow"),
                    "deny_rules entries carry method/path/query directly, without 'allow'",
                    at_key=True,
                )
                ok = False
                continue
            rule = self.selector((*path, i), item, deny=True, protocol=protocol)
            if rule is None:
                ok = False
            else:
                out.append(rule)
        return tuple(out) if ok else None

    def allowed_ips(self, path: Path, value: Any) -> tuple[str, ...] | None:
        items = self.seq(path, value, "IP addresses or CIDR ranges")
        if items is None:
            return None
        out = []
        ok = True
        for i, item in enumerate(items):
            text = self.string((*path, i), item, what="an IP address or CIDR range")
            if text is None:
                ok = False
                continue
            try:
                net = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                self.err((*path, i), f"{text!r} is not an IP address or CIDR range")
                ok = False
                continue
            # Loopback and link-local ranges may be listed (a host-local vLLM on 127.0.0.1 is a real need); a
            # range that starts at the unspecified address (0.0.0.0/0, ::/0) would open everything and is refused.
            if net.is_unspecified or net.network_address.is_unspecified:
                self.err(
                    (*path, i),
                    f"{net} is or starts at the unspecified address: list the exact addresses to allow",
                )
                ok = False
                continue
            if str(net) not in out:
                out.append(str(net))
        return tuple(sorted(out, key=_net_sort_key)) if ok else None

    def endpoint(self, path: Path, value: Any) -> Endpoint | None:
        m = self.mapping(path, value, _ENDPOINT_KEYS, required=("host",), unsupported=_UPSTREAM_ENDPOINT_ONLY)
        if m is None:
            return None
        bad = any(k not in _ENDPOINT_KEYS for k in m) or "host" not in m
        host = None
        if "host" in m:
            raw = self.string((*path, "host"), m["host"], what="a host name")
            if raw is None:
                bad = True
            else:
                host, why = normalize_host_pattern(raw)
                if why:
                    self.err((*path, "host"), why)
                    bad = True
        ports: list[int] = []
        if "port" in m and "ports" in m:
            self.err((*path, "ports"), "use either 'port' or 'ports', not both", at_key=True)
            bad = True
        elif "port" in m:
            p = self.integer((*path, "port"), m["port"], 1, 65535, "a port")
            bad = bad or p is None
            if p is not None:
                ports = [p]
        elif "ports" in m:
            items = self.seq((*path, "ports"), m["ports"], "ports")
            if items is None:
                bad = True
            elif not items:
                self.err((*path, "ports"), "'ports' must list at least one port")
                bad = True
            for i, item in enumerate(items or []):
                p = self.integer((*path, "ports", i), item, 1, 65535, "a port")
                if p is None:
                    bad = True
                elif p in ports:
                    self.warn((*path, "ports", i), f"port {p} is listed twice")
                else:
                    ports.append(p)
        else:
            self.err(path, "endpoint needs 'port' or 'ports'")
            bad = True
        epath = self.glob((*path, "path"), m["path"], "a path glob", any_path=True) if "path" in m else None
        bad = bad or ("path" in m and epath is None)
        protocol = self.choice((*path, "protocol"), m["protocol"], PROTOCOLS) if "protocol" in m else None
        bad = bad or ("protocol" in m and protocol is None)
        enforcement = "enforce"
        if "enforcement" in m:
            e = self.choice((*path, "enforcement"), m["enforcement"], ENFORCEMENTS)
            bad = bad or e is None
            enforcement = e or "enforce"
        access = self.choice((*path, "access"), m["access"], ACCESS) if "access" in m else None
        bad = bad or ("access" in m and access is None)
        rules: tuple[L7Rule, ...] = ()
        if "rules" in m:
            r = self.rules((*path, "rules"), m["rules"], protocol)
            bad = bad or r is None
            rules = r or ()
            if r == ():
                self.err((*path, "rules"), "'rules' is empty: list at least one {allow: ...} or remove the key")
                bad = True
        deny: tuple[L7Rule, ...] = ()
        if "deny_rules" in m:
            d = self.deny_rules((*path, "deny_rules"), m["deny_rules"], protocol)
            bad = bad or d is None
            deny = d or ()
        ips: tuple[str, ...] = ()
        if "allowed_ips" in m:
            a = self.allowed_ips((*path, "allowed_ips"), m["allowed_ips"])
            bad = bad or a is None
            ips = a or ()
        tls = None
        if "tls" in m:
            tls = self.choice((*path, "tls"), m["tls"], TLS_MODES)
            bad = bad or tls is None
            if tls in ("terminate", "passthrough") and tls not in self.once:
                self.once.add(tls)
                self.warn(
                    (*path, "tls"),
                    f"tls: {tls} is deprecated upstream (a no-op since 2026-03): TLS is detected"
                    " automatically (reported once per file)",
                )
        if access is not None and "rules" in m:
            self.err((*path, "access"), "use either 'access' or 'rules', not both", at_key=True)
            bad = True
        has_l7 = bool(access or "rules" in m or "deny_rules" in m)
        if protocol in ("tcp", "sql") and has_l7:
            self.err(
                (*path, "protocol"),
                f"protocol {protocol} carries no HTTP requests: access, rules and deny_rules need"
                f" one of {', '.join(sorted(HTTP_PROTOCOLS))}",
            )
            bad = True
        elif protocol is None and has_l7:
            self.warn(
                path,
                "access/rules without 'protocol': clawfleet inspects this endpoint as protocol: rest"
                " (upstream may pass it through at L4); add 'protocol: rest' to make it explicit",
            )
        if enforcement == "audit" and protocol is None and not has_l7:
            self.warn((*path, "enforcement"), "enforcement: audit only affects L7 rules; this endpoint is L4")
        if ports and protocol is None and not has_l7 and epath is not None:
            self.warn((*path, "path"), "'path' is only checked on L7 endpoints (set protocol: rest)")
        body = self.body_options(path, m, protocol, host, rules, deny)
        bad = bad or body is None
        uninspected = False
        if "allow_uninspected_credentials" in m:
            flag = self.boolean((*path, "allow_uninspected_credentials"), m["allow_uninspected_credentials"])
            bad = bad or flag is None
            uninspected = bool(flag)
        binding = None
        if "credential_binding" in m:
            binding = self.credential_binding((*path, "credential_binding"), m["credential_binding"], protocol, tls,
                                              has_l7, uninspected)  # fmt: skip
            bad = bad or binding is None
        rewrite = False
        if "request_body_credential_rewrite" in m:
            flag = self.boolean((*path, "request_body_credential_rewrite"), m["request_body_credential_rewrite"])
            bad = bad or flag is None
            rewrite = bool(flag)
            if rewrite and (protocol != "rest" or tls == "skip"):
                # as upstream: only a REST endpoint whose requests the gateway reads (its body included)
                self.err((*path, "request_body_credential_rewrite"), "request body credential rewriting needs"
                         " protocol: rest (not a body-judging, WebSocket or L4 endpoint, nor tls: skip)",
                         at_key=True)  # fmt: skip
                bad = True
        ws_rewrite = False
        if "websocket_credential_rewrite" in m:
            flag = self.boolean((*path, "websocket_credential_rewrite"), m["websocket_credential_rewrite"])
            bad = bad or flag is None
            ws_rewrite = bool(flag)
            if ws_rewrite and (protocol != "websocket" or tls == "skip"):
                # clawfleet switches protocols only on protocol: websocket endpoints (upstream also on REST ones)
                self.err((*path, "websocket_credential_rewrite"), "WebSocket credential rewriting needs protocol:"
                         " websocket (the only endpoints the gateway upgrades), not tls: skip",
                         at_key=True)  # fmt: skip
                bad = True
        signing = self.signing(path, m, protocol, tls, rewrite)
        bad = bad or signing is None
        if bad or host is None or body is None or signing is None:
            return None
        return Endpoint(
            host=host,
            ports=tuple(sorted(ports)),
            path=epath,
            protocol=protocol,
            enforcement=enforcement,
            access=access,
            rules=rules,
            deny_rules=deny,
            allowed_ips=ips,
            tls=tls,
            credential_binding=binding,
            request_body_credential_rewrite=rewrite,
            websocket_credential_rewrite=ws_rewrite,
            allow_uninspected_credentials=uninspected,
            **body,
            credential_signing=signing.get("credential_signing"),
            signing_service=signing.get("signing_service"),
            signing_region=signing.get("signing_region"),
        )

    def signing(
        self, path: Path, m: dict[str, Any], protocol: str | None, tls: str | None, rewrite: bool
    ) -> dict[str, str | None] | None:
        """``credential_signing`` / ``signing_service`` / ``signing_region``, checked as upstream's policy
        validation does (a known mode, a service, not with body rewriting), plus what re-signing needs here: the
        gateway must read each request (protocol: rest, not tls: skip)."""
        out: dict[str, str | None] = {}
        ok = True
        for key, what in (("signing_service", "an AWS service name"), ("signing_region", "an AWS region")):
            if key in m:
                out[key] = self.signing_name(path, key, m[key], what)
                ok = ok and out[key] is not None
        if "credential_signing" not in m:
            for key in out:
                self.err((*path, key), f"{key} only applies with credential_signing: sigv4", at_key=True)
                ok = False
            return out if ok else None
        mode = self.choice((*path, "credential_signing"), m["credential_signing"], SIGNING_MODES)
        if mode is None:
            return None
        out["credential_signing"] = mode
        if "signing_service" not in m:
            self.err((*path, "credential_signing"), "credential_signing needs signing_service (s3, bedrock, sts, ...)",
                     at_key=True)  # fmt: skip
            ok = False
        if rewrite:
            self.err((*path, "credential_signing"), "credential_signing and request_body_credential_rewrite"
                     " cannot both be set (a rewritten body would not match its signature; as upstream)",
                     at_key=True)  # fmt: skip
            ok = False
        if protocol != "rest" or tls == "skip":
            self.err((*path, "credential_signing"), "SigV4 signing needs protocol: rest and not tls: skip (the"
                     " gateway re-signs each request it reads)", at_key=True)  # fmt: skip
            ok = False
        return out if ok else None

    def signing_name(self, path: Path, key: str, value: Any, what: str) -> str | None:
        text = self.string((*path, key), value, what=what)
        if text is not None and not SIGNING_NAME_RE.match(text):
            self.err((*path, key), f"{text!r} is not {what} (lower-case letters, digits, '-')")
            return None
        return text

    def credential_binding(
        self, path: Path, value: Any, protocol: str | None, tls: str | None, has_l7: bool, uninspected: bool = False
    ) -> CredentialBinding | None:
        """``credential_binding: {provider: NAME}``. Whether ``NAME`` is configured is not known here (a policy that
        binds a provider validates on its own); :mod:`.providers` refuses it where the policy meets the gateway.
        As upstream, a credential may only be bound where the gateway parses the requests (an HTTP protocol, TLS
        not skipped) unless the endpoint records the exception with ``allow_uninspected_credentials: true``: then
        an L4 or ``tls: skip`` endpoint is accepted, with a warning (upstream logs one)."""
        m = self.mapping(path, value, ("provider",), required=("provider",), what="{provider: NAME}")
        if m is None or set(m) != {"provider"}:
            return None
        name = self.string((*path, "provider"), m["provider"], what="a provider instance name")
        if name is None:
            return None
        if not PROVIDER_NAME_RE.match(name):
            self.err((*path, "provider"), f"provider name {name!r} must be 1-128 letters, digits and . _ -,"
                     " starting and ending with a letter or digit")  # fmt: skip
            return None
        inspected = protocol in HTTP_PROTOCOLS or (protocol is None and has_l7)
        if uninspected and (not inspected or tls == "skip"):
            self.warn(path, "allow_uninspected_credentials: the credential is bound to an endpoint whose traffic the"
                      " gateway may not parse (its L7 rules cannot apply; over tls: skip the placeholder is relayed"
                      " as is, never the value)", at_key=True)  # fmt: skip
        elif not inspected:
            how = f"protocol {protocol}" if protocol else "an L4 endpoint (no protocol)"
            self.err(path, f"a credential can only be bound to an endpoint whose requests the gateway parses;"
                     f" this is {how}: set protocol: rest (or another HTTP protocol) with access or rules",
                     at_key=True)  # fmt: skip
            return None
        elif tls == "skip":
            self.err(path, "a credential cannot be bound to a tls: skip endpoint: its requests are never seen"
                     " (set allow_uninspected_credentials: true to record the exception, as upstream)",
                     at_key=True)  # fmt: skip
            return None
        line, col = self.doc.pos(path)
        return CredentialBinding(name, self.doc.filename, line, col)

    def body_options(
        self,
        path: Path,
        m: dict[str, Any],
        protocol: str | None,
        host: str | None,
        rules: tuple[L7Rule, ...],
        deny: tuple[L7Rule, ...],
    ) -> dict[str, Any] | None:
        """Validate the body-inspection options of one endpoint (upstream's rules, docs/policy.md)."""
        out: dict[str, Any] = {}
        bad = False
        owner = {"mcp": ("mcp",), "json_rpc": ("json-rpc",), "graphql_max_body_bytes": ("graphql",),
                 "persisted_queries": ("graphql", "websocket"),
                 "graphql_persisted_queries": ("graphql", "websocket")}  # fmt: skip
        for key, protos in owner.items():
            if key in m and protocol not in protos:
                self.err((*path, key), f"{key!r} applies only to protocol: {' / '.join(protos)} endpoints",
                         at_key=True)  # fmt: skip
                bad = True
        if bad:
            return None
        limit_path: Path | None = None
        limit_value: Any = None
        if protocol == "mcp" and "mcp" in m:
            mm = self.mapping((*path, "mcp"), m["mcp"], ("max_body_bytes", "strict_tool_names",
                                                          "allow_all_known_mcp_methods"))  # fmt: skip
            if mm is None or any(k not in ("max_body_bytes", "strict_tool_names", "allow_all_known_mcp_methods")
                                 for k in mm):  # fmt: skip
                return None
            if "max_body_bytes" in mm:
                limit_path, limit_value = (*path, "mcp", "max_body_bytes"), mm["max_body_bytes"]
            for key, attr in (("strict_tool_names", "mcp_strict_tool_names"),
                              ("allow_all_known_mcp_methods", "mcp_allow_all_known_methods")):  # fmt: skip
                if key in mm:
                    b = self.boolean((*path, "mcp", key), mm[key])
                    bad = bad or b is None
                    out[attr] = b
        if protocol == "json-rpc" and "json_rpc" in m:
            jm = self.mapping((*path, "json_rpc"), m["json_rpc"], ("max_body_bytes",))
            if jm is None or any(k != "max_body_bytes" for k in jm):
                return None
            if "max_body_bytes" in jm:
                limit_path, limit_value = (*path, "json_rpc", "max_body_bytes"), jm["max_body_bytes"]
        if protocol == "graphql" and "graphql_max_body_bytes" in m:
            limit_path, limit_value = (*path, "graphql_max_body_bytes"), m["graphql_max_body_bytes"]
        if limit_path is not None:
            n = self.integer(limit_path, limit_value, 1, MAX_BODY_BYTES, "a body limit in bytes")
            bad = bad or n is None
            out["max_body_bytes"] = n
        if protocol in ("graphql", "websocket"):
            if "persisted_queries" in m:
                pq = self.choice((*path, "persisted_queries"), m["persisted_queries"], ("deny", "allow_registered"))
                bad = bad or pq is None
                out["persisted_queries"] = pq
            if "graphql_persisted_queries" in m:
                gm = m["graphql_persisted_queries"]
                if not isinstance(gm, dict):
                    self.err(
                        (*path, "graphql_persisted_queries"),
                        f"expected a mapping of hash or saved-query id -> operation, got {_type_name(gm)}",
                    )
                    return None
                reg = []
                for key, op in gm.items():
                    opath = (*path, "graphql_persisted_queries", key)
                    rule = self.body_selector(opath, op, deny=False, protocol="graphql")
                    if rule is None:
                        bad = True
                    elif rule.operation_type is None:
                        self.err(opath, "a registered persisted query needs its operation_type")
                        bad = True
                    else:
                        reg.append((str(key), rule))
                out["graphql_persisted_queries"] = tuple(sorted(reg, key=lambda kv: kv[0]))
                if out.get("persisted_queries") != "allow_registered":
                    self.warn(
                        (*path, "graphql_persisted_queries"),
                        "registered persisted queries are used only with persisted_queries: allow_registered",
                    )
        if protocol == "websocket":
            bad = self.websocket_rules(path, rules, deny, out) or bad
        if protocol not in ("graphql", "mcp", "json-rpc"):
            return None if bad else out
        if "access" in m and protocol != "graphql":  # graphql: operation types (model.GRAPHQL_ACCESS_OPERATIONS)
            self.err((*path, "access"), f"'access' presets are HTTP methods; a protocol: {protocol} endpoint judges"
                     " JSON-RPC calls: use rules (upstream refuses access here too)", at_key=True)  # fmt: skip
            bad = True
        if protocol == "graphql":
            for i, r in enumerate(rules):
                if r.operation_type is None:
                    self.err(
                        (*path, "rules", i, "allow"),
                        "a GraphQL allow rule needs 'operation_type' (query, mutation, subscription or '*')",
                    )
                    bad = True
        if protocol == "json-rpc":
            for i, r in enumerate(rules):
                if r.method is None:
                    self.err((*path, "rules", i, "allow"), "a JSON-RPC allow rule needs 'method' (a name or '*')")
                    bad = True
        if protocol == "mcp":
            if host is not None and ("*" in host or "?" in host):
                self.err((*path, "host"), "an MCP endpoint needs a concrete host (no wildcard), as upstream requires")
                bad = True
            allow_all = bool(out.get("mcp_allow_all_known_methods"))
            strict = out.get("mcp_strict_tool_names", True) is not False
            for i, r in enumerate(rules):
                rpath = (*path, "rules", i, "allow")
                if r.method is None and not allow_all:
                    self.err(rpath, "an MCP allow rule needs 'method' (or set mcp.allow_all_known_mcp_methods: true)")
                    bad = True
            for kind, group in (("rules", rules), ("deny_rules", deny)):
                for i, r in enumerate(group):
                    rpath = (*path, kind, i, "allow") if kind == "rules" else (*path, kind, i)
                    if r.tool and r.method not in ("tools/call", None):
                        self.err(rpath, "'tool' matches tools/call params.name: set method: tools/call")
                        bad = True
                    if r.tool and r.method is None and not allow_all and kind == "deny_rules":
                        self.err(rpath, "'tool' needs method: tools/call unless mcp.allow_all_known_mcp_methods")
                        bad = True
                    if r.tool and not strict and any(c in t for t in r.tool for c in "*?"):
                        self.err(rpath, "wildcard 'tool' matchers need mcp.strict_tool_names to stay enabled")
                        bad = True
            scoped = [r for r in rules if r.tool]
            broad = [r for r in (*rules, *deny) if not r.tool and _covers_tools_call(r.method)]
            if scoped and broad:
                self.err(
                    (*path, "rules"),
                    "a rule whose method covers tools/call without 'tool' cannot be combined with tool-specific"
                    " allow rules (it would bypass or erase the tool filter); add 'tool' or remove one",
                )
                bad = True
        return None if bad else out

    def websocket_rules(self, path: Path, rules: tuple[L7Rule, ...], deny: tuple[L7Rule, ...],
                        options: dict[str, Any]) -> bool:  # fmt: skip
        """Upstream's checks of a ``protocol: websocket`` endpoint's rules (True: a problem was reported).
        Whether the endpoint judges GraphQL operations is decided as Endpoint.websocket_graphql decides it: a
        GraphQL deny rule alone makes it so, and a WEBSOCKET_TEXT allow rule would then be silently ignored."""
        graphql = (any(r.is_graphql for r in (*rules, *deny)) or options.get("persisted_queries") == "allow_registered"
                   or bool(options.get("graphql_persisted_queries")))  # fmt: skip
        bad = False
        for i, r in enumerate(rules):
            if r.is_graphql and r.operation_type is None:
                self.err(
                    (*path, "rules", i, "allow"),
                    "a GraphQL allow rule needs 'operation_type' (query, mutation, subscription or '*')",
                )
                bad = True  # fmt: skip
            if graphql and r.method == WEBSOCKET_TEXT:
                self.err(
                    (*path, "rules", i, "allow", "method"),
                    "a WebSocket endpoint with GraphQL operation policy"
                    " judges client messages by its operation_type/operation_name/fields rules: a"
                    " WEBSOCKET_TEXT allow rule would let any message past them (upstream refuses it too)",
                )
                bad = True  # fmt: skip
        return bad

    def binary(self, path: Path, value: Any) -> Binary | None:
        m = self.mapping(path, value, ("path",), required=("path",), what="{path: /usr/bin/tool}")
        if m is None or "path" not in m:
            return None
        text = self.glob((*path, "path"), m["path"], "an absolute executable path or glob")
        return Binary(text) if text is not None and len(m) == 1 else None

    def network_rule(self, path: Path, key: str, value: Any) -> NetworkRule | None:
        m = self.mapping(path, value, ("name", "endpoints", "binaries"))
        if m is None:
            return None
        bad = any(k not in ("name", "endpoints", "binaries") for k in m)
        name = key
        if "name" in m:
            n = self.string((*path, "name"), m["name"], what="a rule name")
            bad = bad or n is None
            name = n or key
        endpoints = []
        if "endpoints" in m:
            items = self.seq((*path, "endpoints"), m["endpoints"], "endpoints")
            bad = bad or items is None
            for i, item in enumerate(items or []):
                ep = self.endpoint((*path, "endpoints", i), item)
                if ep is None:
                    bad = True
                else:
                    endpoints.append(ep)
        if not m.get("endpoints"):
            self.warn(path, "rule has no endpoints: it allows nothing")
        binaries: list[Binary] = []
        if "binaries" in m:
            items = self.seq((*path, "binaries"), m["binaries"], "binaries ({path: ...})")
            bad = bad or items is None
            for i, item in enumerate(items or []):
                b = self.binary((*path, "binaries", i), item)
                if b is None:
                    bad = True
                elif b in binaries:
                    self.warn((*path, "binaries", i), f"{b.path} is listed twice")
                else:
                    binaries.append(b)
        if not m.get("binaries") and m.get("endpoints"):
            self.warn(path, "rule has no binaries: it matches no process (upstream semantics); list the binaries")
        if bad:
            return None
        return NetworkRule(key, name, tuple(endpoints), tuple(binaries))

    def network_policies(self, path: Path, value: Any) -> dict[str, NetworkRule] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"expected a mapping of rule name -> rule, got {_type_name(value)}")
            return None
        out = {}
        ok = True
        for key, rule in value.items():
            kpath = (*path, key)
            if not self.map_key(kpath, key):
                ok = False
                continue
            if key.startswith(PROVIDER_RULE_PREFIX):
                self.err(kpath, f"{PROVIDER_RULE_PREFIX}* names are reserved for the rules derived from provider"
                         " profiles (as upstream): rename the rule", at_key=True)  # fmt: skip
                ok = False
                continue
            r = self.network_rule(kpath, key, rule)
            if r is None:
                ok = False
            else:
                out[key] = r
        return out if ok else None

    def middleware(self, path: Path, key: str, value: Any) -> Middleware | None:
        allowed = ("name", "middleware", "order", "config", "on_error", "endpoints")
        m = self.mapping(path, value, allowed, required=("middleware",))
        if m is None:
            return None
        bad = any(k not in allowed for k in m) or "middleware" not in m
        kind = (
            self.string((*path, "middleware"), m["middleware"], what="a middleware type") if "middleware" in m else None
        )
        bad = bad or kind is None
        name = None
        if "name" in m:
            name = self.string((*path, "name"), m["name"], what="a display name")
            bad = bad or name is None
        order = 0
        if "order" in m:
            o = self.integer((*path, "order"), m["order"], -(2**31), 2**31 - 1, "an order")
            bad = bad or o is None
            order = o or 0
        config: dict[str, Any] = {}
        if "config" in m:
            if not isinstance(m["config"], dict):
                self.err((*path, "config"), f"expected a mapping, got {_type_name(m['config'])}")
                bad = True
            else:
                config = m["config"]
        on_error = "fail_closed"
        if "on_error" in m:
            oe = self.choice((*path, "on_error"), m["on_error"], ON_ERROR)
            bad = bad or oe is None
            on_error = oe or on_error
        include: list[str] = []
        exclude: list[str] = []
        if "endpoints" not in m:  # upstream refuses it too: "all hosts" or "none" would both be a guess
            self.err(path, "missing required key 'endpoints' (the host selector: endpoints: {include: [...]})")
            bad = True
        else:
            sel = self.mapping((*path, "endpoints"), m["endpoints"], ("include", "exclude"))
            if sel is None:
                bad = True
            elif not sel.get("include"):
                self.err((*path, "endpoints"), "the host selector must include at least one host pattern")
                bad = True
            elif len(sel.get("include") or []) + len(sel.get("exclude") or []) > MAX_MIDDLEWARE_SELECTOR_PATTERNS:
                self.err((*path, "endpoints"),
                         f"at most {MAX_MIDDLEWARE_SELECTOR_PATTERNS} include and exclude patterns in all")  # fmt: skip
                bad = True
            else:
                for part, bucket in (("include", include), ("exclude", exclude)):
                    if part not in sel:
                        continue
                    items = self.seq((*path, "endpoints", part), sel[part], "host patterns")
                    bad = bad or items is None
                    for i, item in enumerate(items or []):
                        ipath = (*path, "endpoints", part, i)
                        raw = self.string(ipath, item, what="a host pattern")
                        if raw is None:
                            bad = True
                            continue
                        h, why = normalize_host_pattern(raw)
                        if why or h is None:
                            self.err(ipath, why or "invalid host")
                            bad = True
                        else:
                            bucket.append(h)
        supported = kind in SUPPORTED_MIDDLEWARES
        if kind is not None and not supported:
            what = ("is not a registered OpenShell built-in" if kind.startswith("openshell/") else
                    "names an operator-run middleware service, which clawfleet does not run")  # fmt: skip
            self.err(
                (*path, "middleware"),
                f"unknown middleware type {kind!r}: it {what} (the clawfleet gateway runs"
                f" {', '.join(SUPPORTED_MIDDLEWARES)}); refused rather than loaded with the hook not running",
            )
            bad = True
        elif kind is not None:
            for sub, message in SUPPORTED_MIDDLEWARES[kind](config):
                self.err((*path, "config", *sub), message)
                bad = True
        if bad or kind is None:
            return None
        return Middleware(
            key=key,
            middleware=kind,
            name=name,
            order=order,
            config=config,
            on_error=on_error,
            include=tuple(include),
            exclude=tuple(exclude),
            supported=supported,
        )

    def network_middlewares(self, path: Path, value: Any) -> dict[str, Middleware] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"expected a mapping of middleware name -> config, got {_type_name(value)}")
            return None
        if len(value) > MAX_MIDDLEWARES:
            self.err(path, f"at most {MAX_MIDDLEWARES} network_middlewares are allowed, got {len(value)}", at_key=True)
        out: dict[str, Middleware] = {}
        ok = len(value) <= MAX_MIDDLEWARES
        for key, mw in value.items():
            kpath = (*path, key)
            if not self.map_key(kpath, key):
                ok = False
                continue
            r = self.middleware(kpath, key, mw)
            if r is None:
                ok = False
                continue
            other = next((o for o in out.values() if o.order == r.order), None)
            if other is not None:  # the order is the chain's order: two equal ones leave it undefined (upstream)
                where = (*kpath, "order") if "order" in mw else kpath
                self.err(where, f"order {r.order} is also the order of middleware {other.key!r}; orders must be unique")
                ok = False
            out[key] = r
        return out if ok else None

    def middleware_conflicts(self, nps: dict[str, NetworkRule], mws: dict[str, Middleware], raw: Any) -> None:
        for key, rule, host in tls_skip_conflicts(nps, mws):
            path: Path = ("network_middlewares", key)
            if "on_error" in raw[key]:
                path = (*path, "on_error")
            self.err(path, f"fail_closed middleware {key!r} may select {host!r}, a tls: skip endpoint of"
                           f" {rule!r} whose traffic no stage can inspect: exclude the host, or use"
                           " on_error: fail_open to let it pass uninspected")  # fmt: skip

    # -- documents ----------------------------------------------------------------------
    def top_level_traps(self, data: dict[str, Any]) -> bool:
        if "inference" in data:
            self.err(
                ("inference",),
                "the 'inference' key was removed upstream (2026-03): inference routing is gateway"
                " configuration now (see clawfleet router), not part of a sandbox policy",
                at_key=True,
            )
        if "routes" in data and not ({"version", "network_policies", "preset"} & set(data)):
            self.err(
                ("routes",),
                "this is an inference routes file, not a sandbox policy: inference routes belong to the"
                " gateway/router configuration",
                at_key=True,
            )
            return True
        if "metadata" in data:
            self.err(
                ("metadata",),
                "managed-policy 'metadata' (upstream) is not supported by clawfleet",
                at_key=True,
            )
        return False

    def policy(self) -> Policy | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.err((), f"expected a policy mapping at the top level, got {_type_name(data)}")
            return None
        if self.top_level_traps(data):
            return None
        if "preset" in data:
            self.err(
                ("preset",),
                "this is a NemoClaw preset (it has a 'preset:' block), not a full policy: merge it into a"
                " base policy (clawfleet policy merge BASE PRESET)",
                at_key=True,
            )
            return None
        extra = frozenset({"inference", "metadata"})
        m = self.mapping((), data, _TOP_POLICY, required=("version",), unsupported=frozenset())
        if m is None:
            return None
        # 'inference'/'metadata' were reported with a better message above; drop the generic duplicate
        self.errors = [e for e in self.errors if not (e.path in extra and e.message.startswith("unknown key"))]
        version = None
        if "version" in m:
            version = self.integer(("version",), m["version"], 1, 1, "the policy version")
            if version is None:
                self.errors[-1] = self.doc.problem(
                    ("version",),
                    f"version must be 1 (the OpenShell policy schema), got {_type_name(m['version'])}",
                )
        fs = self.filesystem(("filesystem_policy",), m["filesystem_policy"]) if "filesystem_policy" in m else None
        ll = self.landlock(("landlock",), m["landlock"]) if "landlock" in m else None
        pr = self.process(("process",), m["process"]) if "process" in m else None
        nps = self.network_policies(("network_policies",), m.get("network_policies"))
        mws = self.network_middlewares(("network_middlewares",), m.get("network_middlewares"))
        if nps is not None and mws is not None:
            self.middleware_conflicts(nps, mws, m["network_middlewares"] if mws else {})
        if self.errors or version is None or nps is None or mws is None:
            return None
        return Policy(
            version=version,
            filesystem=fs or FilesystemPolicy(),
            landlock=ll or LandlockPolicy(),
            process=pr or ProcessPolicy(),
            network_policies=nps,
            network_middlewares=mws,
            declared=frozenset(k for k in m if k in _TOP_POLICY),
            source=self.doc.filename,
            warnings=tuple(self.warnings),
        )

    def preset(self) -> Preset | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.err((), f"expected a preset mapping at the top level, got {_type_name(data)}")
            return None
        if self.top_level_traps(data):
            return None
        if "preset" not in data:
            self.err((), "a preset needs a 'preset: {name, description}' block")
            return None
        policy_only = [k for k in data if k in _TOP_POLICY and k not in _TOP_PRESET]
        for k in policy_only:
            self.err(
                (k,),
                f"a preset may only carry {', '.join(_TOP_PRESET)}; {k!r} belongs in the base policy",
                at_key=True,
            )
        m = {k: v for k, v in data.items() if k not in policy_only and k not in ("inference", "metadata")}
        self.mapping((), m, _TOP_PRESET, required=("preset",))
        info = None
        pm = self.mapping(("preset",), data["preset"], ("name", "description"), required=("name",))
        if pm is not None and "name" in pm:
            name = self.string(("preset", "name"), pm["name"], what="a preset name")
            desc = self.string(("preset", "description"), pm.get("description", ""), allow_empty=True)
            if name is not None and desc is not None:
                info = PresetInfo(name, desc)
        nps = self.network_policies(("network_policies",), data.get("network_policies"))
        mws = self.network_middlewares(("network_middlewares",), data.get("network_middlewares"))
        if nps is not None and mws is not None:
            self.middleware_conflicts(nps, mws, data["network_middlewares"] if mws else {})
        if self.errors or info is None or nps is None or mws is None:
            return None
        return Preset(info, nps, mws, source=self.doc.filename, warnings=tuple(self.warnings))


def _covers_tools_call(method: str | None) -> bool:
    return method is not None and (method in ("tools/call", "tools/*", "tools/**", "*"))


def _net_sort_key(text: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(text)
    return (net.version, int(net.network_address), net.prefixlen)


def parse_document(doc: Document, kind: str = "policy") -> Policy | Preset:
    """Validate ``doc`` as ``"policy"``, ``"preset"`` or ``"any"`` (a top-level ``preset:`` decides)."""
    v = Validator(doc)
    v.errors.extend(doc.problems)
    if kind == "any":
        kind = "preset" if isinstance(doc.data, dict) and "preset" in doc.data else "policy"
    result = v.preset() if kind == "preset" else v.policy()
    if v.errors or result is None:
        if not v.errors:  # pragma: no cover - defensive: every None path reports
            v.err((), "invalid policy")
        raise PolicyError(sorted(v.errors, key=lambda p: (p.line or 0, p.col or 0)))
    return result
