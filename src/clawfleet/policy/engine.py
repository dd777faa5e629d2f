"""Compiled decision engine.

:func:`compile_policy` turns a :class:`~clawfleet.policy.model.Policy` into an
:class:`Engine` once; :meth:`Engine.decide` then answers "may this process reach
this host:port (and send this request)?" with dict look-ups and a few precompiled
glob matches (linear in the text, :mod:`.globmatch`), never a scan of every rule:

* host index: exact hosts in a dict; ``*.x.com`` / ``*-a.x.com`` (exactly one label)
  under their suffix, tried with the request's first label cut off; ``**.x.com``
  (one or more labels) under their suffix, tried for each proper suffix of the host;
  a pattern with a ``*`` label after the first (``*.s3.*.amazonaws.com``) under the fixed labels after its last
  wildcard, tried for each proper suffix of the host and then matched whole by one anchored regex;
  each bucket maps port -> candidate endpoints;
* binaries: exact paths in a dict, globs compiled once; the set of rules a
  (binary, ancestors) chain may use is cached (LRU);
* L7: ``access`` presets pre-expanded to method sets, rule path/query globs compiled.

Decision semantics (see docs/policy.md):

1. no endpoint for host:port -> deny ("no matching policy");
2. endpoints exist but no rule lists the binary or one of its ancestors -> deny;
3. a literal/resolved IP must pass the SSRF guard (loopback, link-local, unspecified,
   multicast always denied; private ranges only via ``allowed_ips``);
4. without a method (CONNECT / L4) -> allow;
5. with a method, each matching endpoint votes: an enforced ``deny_rules`` hit -> deny;
   an audited deny hit -> audit; otherwise any allowing endpoint -> allow; otherwise an
   audited endpoint -> audit; otherwise deny. Endpoints without L7 inspection allow
   every request. Ties go to the first rule and endpoint in file order;
6. a WebSocket message (``websocket_message=True``: ``WEBSOCKET_TEXT`` / ``WEBSOCKET_BINARY`` on the upgrade's
   path) is voted on the same way, but only ``protocol: websocket`` endpoints may allow it; on an endpoint with
   GraphQL operation policy a text message is judged by its operations (.ws_messages).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from .canonical import digest
from .l7_body import DEFAULT_MAX_BODY_BYTES, body_verdict
from .matching import (
    canonical_request_path,
    compile_glob,
    compile_host_pattern,
    compile_label_glob,
    fixed_host_suffix,
    has_inner_wildcard,
    normalize_request_host,
    parse_query,
)
from .middleware import RegexHook, matches_host
from .model import ACCESS_METHODS, WEBSOCKET_ACCESS_METHODS, WEBSOCKET_ACTIONS, WEBSOCKET_TEXT, Endpoint, L7Rule, Policy
from .ws_messages import graphql_message_verdict

__all__ = ["Decision", "Engine", "compile_policy", "ssrf_verdict"]

QueryArg = str | Mapping[str, str | Sequence[str]] | None


class Decision(NamedTuple):
    """Outcome of one decision (a NamedTuple: immutable and about four times cheaper to build than a
    frozen dataclass, which matters on the per-request path)."""

    decision: str  # "allow" | "deny" | "audit"
    policy_key: str | None
    reason: str
    endpoint: Endpoint | None = None
    rule: L7Rule | None = None

    @property
    def allowed(self) -> bool:
        """Whether the traffic may pass (``audit`` passes and is logged)."""
        return self.decision != "deny"

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "policy": self.policy_key, "reason": self.reason}


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4COMPAT = ipaddress.IPv6Network("::/96")
_SPECIAL_NETS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"))


def _inside_special(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    v4, v6 = ipaddress.IPv4Network, ipaddress.IPv6Network  # subnet_of needs both sides of one family
    return any(
        (isinstance(network, v4) and isinstance(s, v4) and network.subnet_of(s))
        or (isinstance(network, v6) and isinstance(s, v6) and network.subnet_of(s))
        for s in _SPECIAL_NETS
    )


def ssrf_verdict(ip_text: str, allowed_ips: Sequence[str]) -> str | None:
    """``None`` if the address may be reached through an endpoint with ``allowed_ips``; else why not.

    The one destination guard: the policy engine applies it to IP-literal hosts and the gateway to every address
    it is about to connect to. IPv4-mapped, IPv4-compatible and NAT64 IPv6 spellings are judged as the IPv4
    address they carry. Loopback and link-local addresses pass only when an ``allowed_ips`` entry lies inside the
    loopback or link-local range itself (``127.0.0.1/32``): a host-local vLLM/Ollama is a real need, but a broad
    entry must never open the host's own services or the cloud metadata address. Unspecified and multicast
    addresses never pass.
    """
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        return f"{ip_text!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64 or ip in _V4COMPAT:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.is_unspecified or ip.is_multicast:
        return f"SSRF guard: {ip} is an unspecified or multicast address"
    networks = []
    for entry in allowed_ips:
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(entry, strict=False))
    if ip.is_loopback or ip.is_link_local:
        kind = "loopback" if ip.is_loopback else "link-local"
        special = [n for n in networks if n.version == ip.version and _inside_special(n)]
        if any(ip in n for n in special):
            return None
        return f"SSRF guard: {ip} is a {kind} address; list it in the endpoint's allowed_ips to allow it"
    if networks:
        if any(ip.version == n.version and ip in n for n in networks):
            return None
        return f"SSRF guard: {ip} is not in the endpoint's allowed_ips"
    if not ip.is_global:
        return f"SSRF guard: {ip} is a private/reserved address and the endpoint has no allowed_ips"
    return None


class _Selector:
    __slots__ = ("method", "path_rx", "query", "rule")

    def __init__(self, rule: L7Rule) -> None:
        self.rule = rule
        self.method = None if rule.method in (None, "*") else rule.method
        self.path_rx = None if rule.path in (None, "/**") else compile_glob(rule.path)
        self.query = tuple((k, tuple(compile_glob(g) for g in globs)) for k, globs in rule.query)

    def matches(self, method: str, path: str, query: dict[str, list[str]]) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path_rx is not None and not self.path_rx.match(path):
            return False
        for param, globs in self.query:
            values = query.get(param)
            if not values:
                return False
            for value in values:
                if not any(g.match(value) for g in globs):
                    return False
        return True


class _CompiledEndpoint:
    __slots__ = (
        "allow_all",
        "audit",
        "body",
        "deny",
        "endpoint",
        "key",
        "l7",
        "methods",
        "order",
        "path_rx",
        "rule_idx",
        "rules",
        "ws_graphql",
    )

    def __init__(self, rule_idx: int, ep_idx: int, key: str, ep: Endpoint) -> None:
        self.rule_idx = rule_idx
        self.order = (rule_idx, ep_idx)
        self.key = key
        self.endpoint = ep
        self.l7 = ep.inspects_l7
        self.body = ep.inspects_body
        self.ws_graphql = ep.websocket_graphql  # a scan of the rules: once per compile, not once per message
        self.audit = ep.enforcement == "audit"
        self.path_rx = compile_glob(ep.path) if ep.path else None
        # a body endpoint's access preset is operation rules (Endpoint.allow_rules, judged in l7_body)
        presets = WEBSOCKET_ACCESS_METHODS if ep.protocol == "websocket" else ACCESS_METHODS
        self.methods: frozenset[str] = presets[ep.access] if ep.access and not self.body else frozenset()
        self.allow_all = "*" in self.methods or (not ep.access and not ep.rules)
        # A websocket endpoint's GraphQL operation rules judge message payloads (.ws_messages), never the upgrade or
        # a message by method/path: as selectors they would match everything (no method, no path).
        self.rules = tuple(_Selector(r) for r in ep.rules if not r.is_graphql)
        self.deny = tuple(_Selector(r) for r in ep.deny_rules if not r.is_graphql)

    def covers(self, path: str) -> bool:
        return self.path_rx is None or bool(self.path_rx.match(path))

    def vote(
        self, method: str, path: str, query: dict[str, list[str]], payload: tuple[bytes, str | None] | None = None
    ) -> tuple[str, L7Rule | None, str]:
        """``("allow"|"denyrule"|"nomatch", rule, detail)`` for one request."""
        ep = self.endpoint
        if not self.l7:
            return "allow", None, f"endpoint {ep.describe()} is L4 (no request inspection)"
        if self.path_rx is not None and not self.path_rx.match(path):
            return "nomatch", None, f"path {path} is outside endpoint path {ep.path}"
        if self.body:
            body, ctype = payload if payload is not None else (None, None)
            return body_verdict(ep, method, query, body, ctype)
        # Many origins serve "/x/" as "/x": a deny rule also matches the path without its trailing slash.
        bare = path[:-1] if len(path) > 1 and path[-1] == "/" else None
        for sel in self.deny:
            if sel.matches(method, path, query) or (bare is not None and sel.matches(method, bare, query)):
                return "denyrule", sel.rule, f"deny rule {sel.rule.describe()} matches {method} {path}"
        if method == WEBSOCKET_TEXT and self.ws_graphql:  # GraphQL-over-WebSocket: the operations decide
            message = payload[0] if payload is not None else None
            if message is None:
                return "nomatch", None, f"the WebSocket message was not inspected on {ep.describe()}"
            return graphql_message_verdict(ep, message)
        if self.allow_all:
            how = f"access: {ep.access}" if ep.access else "no allow rules (all requests)"
            return "allow", None, f"{method} {path} allowed by {how} on {ep.describe()}"
        if method in self.methods:
            return "allow", None, f"{method} allowed by access: {ep.access} on {ep.describe()}"
        for sel in self.rules:
            if sel.matches(method, path, query):
                return "allow", sel.rule, f"{method} {path} allowed by rule {sel.rule.describe()}"
        return "nomatch", None, f"no rule on {ep.describe()} allows {method} {path}"


def _rank(c: _CompiledEndpoint, path: str) -> int:
    """How much an endpoint's "no match" explains a denial: a covering body endpoint, then any covering one."""
    return (2 if c.body else 1) if c.covers(path) else 0


_Bucket = dict[int, tuple[_CompiledEndpoint, ...]]


def _add(bucket: dict[int, list[_CompiledEndpoint]], cep: _CompiledEndpoint) -> None:
    for port in cep.endpoint.ports:
        bucket.setdefault(port, []).append(cep)


def _freeze(bucket: dict[int, list[_CompiledEndpoint]]) -> _Bucket:
    return {port: tuple(sorted(eps, key=lambda c: c.order)) for port, eps in bucket.items()}


class Engine:
    """A policy compiled for fast decisions. Build with :func:`compile_policy`; thread-safe to read."""

    def __init__(self, policy: Policy, *, cache_size: int = 8192) -> None:
        self.policy = policy
        self.digest = digest(policy)  # identifies the compiled policy in logs and reloads
        exact: dict[str, dict[int, list[_CompiledEndpoint]]] = {}
        single: dict[str, dict[str, dict[int, list[_CompiledEndpoint]]]] = {}
        multi: dict[str, dict[int, list[_CompiledEndpoint]]] = {}
        inner: dict[str, dict[str, dict[int, list[_CompiledEndpoint]]]] = {}
        bin_exact: dict[str, set[int]] = {}
        bin_glob: dict[str, set[int]] = {}
        self.keys: list[str] = []
        # body_limit is asked on every request: a policy without body-inspecting endpoints answers at once
        self._inspects_bodies = False
        for rule_idx, (key, rule) in enumerate(policy.network_policies.items()):
            self.keys.append(key)
            for b in rule.binaries:
                (bin_glob if b.is_glob else bin_exact).setdefault(b.path, set()).add(rule_idx)
            if not rule.binaries:
                continue  # a rule without binaries matches no process: nothing to index
            for ep_idx, ep in enumerate(rule.endpoints):
                cep = _CompiledEndpoint(rule_idx, ep_idx, key, ep)
                self._inspects_bodies = self._inspects_bodies or cep.body
                first, _, rest = ep.host.partition(".")
                if has_inner_wildcard(ep.host):
                    _add(inner.setdefault(fixed_host_suffix(ep.host), {}).setdefault(ep.host, {}), cep)
                elif first == "**":
                    _add(multi.setdefault(rest, {}), cep)
                elif "*" in first or "?" in first:
                    _add(single.setdefault(rest, {}).setdefault(first, {}), cep)
                else:
                    _add(exact.setdefault(ep.host, {}), cep)
        self._exact: dict[str, _Bucket] = {h: _freeze(b) for h, b in exact.items()}
        self._single: dict[str, tuple[tuple[re.Pattern[str] | None, _Bucket], ...]] = {
            suffix: tuple(
                (None if label == "*" else compile_label_glob(label), _freeze(b)) for label, b in labels.items()
            )
            for suffix, labels in single.items()
        }
        self._multi: dict[str, _Bucket] = {s: _freeze(b) for s, b in multi.items()}
        self._inner: dict[str, tuple[tuple[re.Pattern[str], _Bucket], ...]] = {
            suffix: tuple((compile_host_pattern(pattern), _freeze(b)) for pattern, b in patterns.items())
            for suffix, patterns in inner.items()
        }
        self._bin_exact = {p: frozenset(s) for p, s in bin_exact.items()}
        self._bin_glob = tuple((compile_glob(p), frozenset(s)) for p, s in bin_glob.items())
        self._rules_for_chain = lru_cache(maxsize=cache_size)(self._compute_rules_for_chain)
        # Middleware chains, by ascending order (the key breaks a tie a merge of presets may leave).
        self._hooks = tuple(
            RegexHook(mw) for mw in sorted(policy.network_middlewares.values(), key=lambda m: (m.order, m.key))
        )
        self._hooks_for = lru_cache(maxsize=1024)(self._compute_hooks)

    # -- index look-ups --------------------------------------------------------------------
    def _compute_rules_for_chain(self, chain: tuple[str, ...]) -> frozenset[int]:
        found: set[int] = set()
        for exe in chain:
            hit = self._bin_exact.get(exe)
            if hit:
                found |= hit
            for glob, rules in self._bin_glob:
                if glob.match(exe):
                    found |= rules
        return frozenset(found)

    def candidates(self, host: str, port: int) -> tuple[_CompiledEndpoint, ...]:
        """Endpoints whose host pattern and ports match (``host`` already normalised)."""
        found: list[tuple[_CompiledEndpoint, ...]] = []
        bucket = self._exact.get(host)
        if bucket is not None:
            eps = bucket.get(port)
            if eps:
                found.append(eps)
        dot = host.find(".")
        if dot > 0 and (self._single or self._multi):
            rest = host[dot + 1 :]
            for rx, b in self._single.get(rest, ()):
                if rx is None or rx.match(host, 0, dot) is not None:
                    eps = b.get(port)
                    if eps:
                        found.append(eps)
            if self._multi:
                pos = dot
                while pos != -1:
                    by_port = self._multi.get(host[pos + 1 :])
                    if by_port is not None:
                        eps = by_port.get(port)
                        if eps:
                            found.append(eps)
                    pos = host.find(".", pos + 1)
        if self._inner:
            pos = dot
            while pos != -1:
                for rx, b in self._inner.get(host[pos + 1 :], ()):
                    if rx.match(host) is not None:
                        eps = b.get(port)
                        if eps:
                            found.append(eps)
                pos = host.find(".", pos + 1)
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        return tuple(sorted({id(c): c for eps in found for c in eps}.values(), key=lambda c: c.order))

    def _compute_hooks(self, host: str) -> tuple[RegexHook, ...]:
        return tuple(
            hook for hook in self._hooks if matches_host(hook.include, host) and not matches_host(hook.exclude, host)
        )

    def middlewares(self, host: str) -> tuple[RegexHook, ...]:
        """The middleware stages for a destination host, in the order they run. As upstream, the selection is by
        host only, whichever network policy admitted the request."""
        if not self._hooks:
            return ()
        h = normalize_request_host(host) if isinstance(host, str) else None
        return self._hooks_for(h) if h is not None else ()

    # -- decisions -------------------------------------------------------------------------
    def decide(
        self,
        binary: str,
        ancestors: Sequence[str] = (),
        host: str = "",
        port: int = 0,
        method: str | None = None,
        path: str | None = None,
        query: QueryArg = None,
        resolved_ip: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        websocket_message: bool = False,
    ) -> Decision:
        """Decide one connection (``method is None``) or one request through it.

        On endpoints with body selectors (protocol graphql / mcp / json-rpc) ``body`` is the whole request body
        (``b""`` for none; ``None`` = not read, which such an endpoint denies): see :meth:`body_limit`.

        ``websocket_message``: one client-to-server message after an allowed upgrade, ``method`` its action
        (``WEBSOCKET_TEXT`` with the message as ``body``, or ``WEBSOCKET_BINARY``), ``path`` the upgrade's target.
        Only ``protocol: websocket`` endpoints may allow one; an HTTP request never carries these actions.
        """
        if method is not None and (method.upper() in WEBSOCKET_ACTIONS) != websocket_message:
            misuse = (f"{method.upper()} is a WebSocket message action, not an HTTP method" if not websocket_message
                      else f"{method!r} is not a WebSocket message action")  # fmt: skip
            return Decision("deny", None, misuse)
        h = normalize_request_host(host) if isinstance(host, str) else None
        if h is None:
            return Decision("deny", None, f"invalid host {host!r}")
        if type(port) is not int or not 0 < port < 65536:
            return Decision("deny", None, f"invalid port {port!r}")
        cands = self.candidates(h, port)
        if not cands:
            return Decision("deny", None, f"no matching policy for {h}:{port}")
        chain = (binary, *ancestors) if ancestors else (binary,)
        rules = self._rules_for_chain(chain)
        matched = [c for c in cands if c.rule_idx in rules]
        if not matched:
            keys = ", ".join(dict.fromkeys(c.key for c in cands))
            return Decision(
                "deny",
                None,
                f"binary {binary} (and its {len(chain) - 1} ancestors) is not listed in the binaries of"
                f" policy {keys} for {h}:{port}",
            )
        ip = resolved_ip
        if ip is None and (h[0].isdigit() or ":" in h):
            try:
                ipaddress.ip_address(h)
                ip = h
            except ValueError:
                ip = None
        if ip is not None:
            first_why = ""
            kept = []
            for c in matched:
                why = ssrf_verdict(ip, c.endpoint.allowed_ips)
                if why is None:
                    kept.append(c)
                elif not first_why:
                    first_why = why
            if not kept:
                return Decision("deny", matched[0].key, first_why, matched[0].endpoint)
            matched = kept
        if method is None:
            first = matched[0]
            how = "L7 rules apply to each request" if first.l7 else "L4"
            return Decision("allow", first.key, f"{h}:{port} allowed by policy {first.key} ({how})", first.endpoint)
        payload = None if body is None else (body, content_type)
        return self._decide_l7(matched, method.upper(), path or "/", query, payload)

    def body_limit(
        self, binary: str, ancestors: Sequence[str] = (), host: str = "", port: int = 0, path: str | None = None
    ) -> int | None:
        """How many body bytes to buffer before :meth:`decide` can judge this request (``None``: it judges without
        the body). The largest limit of the body-inspecting endpoints that may judge it; each endpoint denies a
        body over its own limit."""
        if not self._inspects_bodies:
            return None
        h = normalize_request_host(host) if isinstance(host, str) else None
        if h is None or type(port) is not int or not 0 < port < 65536:
            return None
        rules = self._rules_for_chain((binary, *ancestors) if ancestors else (binary,))
        cpath = canonical_request_path(path or "/")[0]
        limits = [
            c.endpoint.max_body_bytes or DEFAULT_MAX_BODY_BYTES
            for c in self.candidates(h, port)
            if c.body and c.rule_idx in rules and (cpath is None or c.covers(cpath))
        ]
        return max(limits) if limits else None

    def _decide_l7(
        self,
        matched: list[_CompiledEndpoint],
        method: str,
        raw_path: str,
        query: QueryArg,
        payload: tuple[bytes, str | None] | None = None,
    ) -> Decision:
        cpath, qs, why = canonical_request_path(raw_path)
        if cpath is None:
            return Decision("deny", matched[0].key, why, matched[0].endpoint)
        params = parse_query(query if query is not None else qs)
        # A request a body-inspecting endpoint covers is granted only by such an endpoint: a broad REST (or L4)
        # endpoint on the same host:port must not allow a tool call or mutation the body rules deny. Deny rules
        # of every endpoint still apply.
        ws_message = method in WEBSOCKET_ACTIONS  # decide() let it through only as a WebSocket message
        body_only = not ws_message and any(c.body and c.covers(cpath) for c in matched)
        audit_deny: tuple[_CompiledEndpoint, L7Rule | None, str] | None = None
        allow: tuple[_CompiledEndpoint, L7Rule | None, str] | None = None
        audit_nomatch: tuple[_CompiledEndpoint, L7Rule | None, str] | None = None
        first_nomatch: tuple[_CompiledEndpoint, L7Rule | None, str] | None = None
        for c in matched:
            verdict, rule, detail = c.vote(method, cpath, params, payload)
            if verdict == "allow" and body_only and not c.body:
                verdict, detail = "nomatch", f"{detail}; but a body-inspecting endpoint covers {cpath}"
            elif verdict == "allow" and ws_message and c.endpoint.protocol != "websocket":
                # a REST '*' rule or an L4 endpoint on the same host:port never judged the message
                verdict, detail = "nomatch", f"{c.endpoint.describe()} is not a protocol: websocket endpoint"
            if verdict == "denyrule":
                if not c.audit:
                    return Decision("deny", c.key, f"denied by policy {c.key}: {detail}", c.endpoint, rule)
                if audit_deny is None:
                    audit_deny = (c, rule, detail)
            elif verdict == "allow":
                if allow is None:
                    allow = (c, rule, detail)
            elif c.audit:
                if audit_nomatch is None:
                    audit_nomatch = (c, rule, detail)
            elif first_nomatch is None or _rank(c, cpath) > _rank(first_nomatch[0], cpath):
                first_nomatch = (c, rule, detail)  # the reason of the endpoint that covers the path says most
        if audit_deny is not None:
            c, rule, detail = audit_deny
            return Decision(
                "audit",
                c.key,
                f"would be denied by policy {c.key} (enforcement: audit): {detail}",
                c.endpoint,
                rule,
            )
        if allow is not None:
            c, rule, detail = allow
            return Decision("allow", c.key, f"allowed by policy {c.key}: {detail}", c.endpoint, rule)
        if audit_nomatch is not None:
            c, rule, detail = audit_nomatch
            return Decision(
                "audit",
                c.key,
                f"would be denied by policy {c.key} (enforcement: audit): {detail}",
                c.endpoint,
            )
        assert first_nomatch is not None
        c, _rule, detail = first_nomatch
        return Decision("deny", c.key, f"denied by policy {c.key}: {detail}", c.endpoint)


def compile_policy(policy: Policy, *, cache_size: int = 8192) -> Engine:
    """Compile ``policy`` into an :class:`Engine` (do it once per policy version)."""
    return Engine(policy, cache_size=cache_size)
