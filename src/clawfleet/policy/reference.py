"""Naive linear-scan decision procedure: the oracle for the compiled engine.

Written for obviousness, not speed: every decision walks every rule, endpoint and
binary of the policy in file order, and matches host wildcards label by label. The
tests check the indexed :class:`~clawfleet.policy.engine.Engine` against it on random
policies and requests, and ``benchmarks/bench_policy.py`` times both side by side.
It shares only request canonicalisation with the engine; it matches globs with the regex specification
(:func:`~clawfleet.policy.matching.glob_to_regex`), the engine with its linear matcher.
Endpoints with body selectors (protocol graphql / mcp / json-rpc) are outside its scope: their requests are judged
by :mod:`.l7_body`, tested on its own (tests/policy/test_l7_body.py), and the random policies use none.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from .engine import Decision, QueryArg, ssrf_verdict
from .matching import (
    canonical_request_path,
    compile_host_pattern,
    has_inner_wildcard,
    normalize_request_host,
    parse_query,
)
from .matching import compile_glob_regex as compile_glob  # the specification, independent of the engine's matcher
from .model import ACCESS_METHODS, Endpoint, L7Rule, Policy

__all__ = ["host_matches", "reference_decide"]


def host_matches(pattern: str, host: str) -> bool:
    """Does policy host ``pattern`` cover the (normalised) request ``host``?"""
    if has_inner_wildcard(pattern):
        return compile_host_pattern(pattern).match(host) is not None
    first, _, rest = pattern.partition(".")
    if "*" not in first and "?" not in first:
        return pattern == host
    if not host.endswith("." + rest):
        return False
    head = host[: -(len(rest) + 1)]
    if not head:
        return False
    if first == "**":
        return True  # one or more labels
    if "." in head:
        return False  # exactly one label
    regex = "".join("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c) for c in first)
    return re.fullmatch(regex, head) is not None


def _selector_matches(rule: L7Rule, method: str, path: str, query: dict[str, list[str]]) -> bool:
    if rule.method not in (None, "*") and rule.method != method:
        return False
    if rule.path is not None and not compile_glob(rule.path).match(path):
        return False
    for param, globs in rule.query:
        values = query.get(param, [])
        if not values:
            return False
        if not all(any(compile_glob(g).match(v) for g in globs) for v in values):
            return False
    return True


def _vote(ep: Endpoint, method: str, path: str, query: dict[str, list[str]]) -> str:
    if not ep.inspects_l7:
        return "allow"
    if ep.path is not None and not compile_glob(ep.path).match(path):
        return "nomatch"
    bare = path.rstrip("/") or "/"  # a deny rule also covers the path without its trailing slash
    if any(_selector_matches(r, method, p, query) for r in ep.deny_rules for p in (path, bare)):
        return "denyrule"
    if ep.access is not None:
        methods = ACCESS_METHODS[ep.access]
        if "*" in methods or method in methods:
            return "allow"
    elif not ep.rules:
        return "allow"
    if any(_selector_matches(r, method, path, query) for r in ep.rules):
        return "allow"
    return "nomatch"


def reference_decide(
    policy: Policy,
    binary: str,
    ancestors: Sequence[str] = (),
    host: str = "",
    port: int = 0,
    method: str | None = None,
    path: str | None = None,
    query: QueryArg = None,
    resolved_ip: str | None = None,
) -> Decision:
    """Same contract as :meth:`Engine.decide`; compares equal on ``decision`` and ``policy_key``."""
    h = normalize_request_host(host) if isinstance(host, str) else None
    if h is None:
        return Decision("deny", None, "invalid host")
    if type(port) is not int or not 0 < port < 65536:
        return Decision("deny", None, "invalid port")
    chain = [binary, *ancestors]
    host_port: list[tuple[str, Endpoint]] = []
    usable: list[tuple[str, Endpoint]] = []
    for key, rule in policy.network_policies.items():
        binary_ok = any(
            compile_glob(b.path).match(exe) if b.is_glob else b.path == exe for b in rule.binaries for exe in chain
        )
        for ep in rule.endpoints:
            if port in ep.ports and host_matches(ep.host, h):
                host_port.append((key, ep))
                if binary_ok:
                    usable.append((key, ep))
    if not host_port:
        return Decision("deny", None, "no matching policy")
    if not usable:
        return Decision("deny", None, "binary not allowed")
    ip = resolved_ip
    if ip is None:
        try:
            ip = str(ipaddress.ip_address(h))
        except ValueError:
            ip = None
    if ip is not None:
        kept = [(k, ep) for k, ep in usable if ssrf_verdict(ip, ep.allowed_ips) is None]
        if not kept:
            return Decision("deny", usable[0][0], "ssrf")
        usable = kept
    if method is None:
        return Decision("allow", usable[0][0], "connect", usable[0][1])
    cpath, qs, _why = canonical_request_path(path or "/")
    if cpath is None:
        return Decision("deny", usable[0][0], "bad path")
    params = parse_query(query if query is not None else qs)
    m = method.upper()
    votes = [(k, ep, _vote(ep, m, cpath, params)) for k, ep in usable]
    for k, ep, v in votes:
        if v == "denyrule" and ep.enforcement == "enforce":
            return Decision("deny", k, "deny rule", ep)
    for k, ep, v in votes:
        if v == "denyrule":
            return Decision("audit", k, "audited deny rule", ep)
    for k, ep, v in votes:
        if v == "allow":
            return Decision("allow", k, "allowed", ep)
    for k, ep, _v in votes:
        if ep.enforcement == "audit":
            return Decision("audit", k, "audited", ep)
    return Decision("deny", votes[0][0], "no rule allows")
