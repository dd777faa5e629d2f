"""The built-in ``openshell/regex`` content hook: config validation and the compiled hook the gateway runs.

Upstream (NVIDIA/OpenShell ``crates/openshell-supervisor-middleware-builtins/src/regex.rs``) defines the type with one
config field, ``mode: redact`` (the default), and one fixed pattern (``sk-`` tokens, label ``openai``) replaced by
``[REDACTED]`` in UTF-8 request bodies; unknown config fields are refused. clawfleet accepts exactly that, and adds
(documented in docs/policy.md, "Middleware"; a policy that uses them does not load upstream):

* ``mode: detect`` (log the matches, forward unchanged) and ``mode: block`` (refuse with ``403 middleware_denied``);
* ``patterns``: the operator's own expressions instead of the built-in one;
* ``replacement``: the literal text a match becomes under ``mode: redact`` (no group references: a ``\\1`` must not
  copy the secret it hides into the output);
* ``direction: request | response | both`` (upstream inspects requests only; the default stays ``request``).

Expressions are compiled with RE2 (``google-re2``), whose matching time is linear in the body: a backtracking
engine (Python's ``re``) lets one ``(a+)+$`` in a policy, or one crafted body, stall the gateway's event loop for
every sandbox on the host (the same reason :mod:`.globmatch` exists). RE2 refuses what it cannot match in linear
time (back-references, look-around) at load, with a message the policy error carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from .matching import compile_host_pattern, compile_label_glob, has_inner_wildcard
from .model import Middleware, NetworkRule

__all__ = [
    "DEFAULT_PATTERNS",
    "DIRECTIONS",
    "MAX_PATTERNS",
    "MAX_PATTERN_LEN",
    "MAX_PAYLOAD_BYTES",
    "MODES",
    "REGEX",
    "REGEX_DEFAULTS",
    "HookResult",
    "RegexHook",
    "check_regex_config",
    "compile_regex_hook",
    "matches_host",
    "tls_skip_conflicts",
]

REGEX = "openshell/regex"
#: Largest body one stage inspects (upstream's built-in limit, ``MAX_PAYLOAD_BYTES`` in regex.rs).
MAX_PAYLOAD_BYTES = 256 * 1024
MODES = ("redact", "detect", "block")
DIRECTIONS = ("request", "response", "both")
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (("openai", r"sk-[A-Za-z0-9_-]{16,}"),)
DEFAULT_REPLACEMENT = "[REDACTED]"
#: The config values a stage takes when the field is left out (the canonical form drops them).
REGEX_DEFAULTS = {"mode": "redact", "direction": "request", "replacement": DEFAULT_REPLACEMENT}
MAX_PATTERNS = 32
MAX_PATTERN_LEN = 1024
MAX_REPLACEMENT_LEN = 256
_CONFIG_KEYS = ("mode", "patterns", "replacement", "direction")
_PATTERN_KEYS = ("name", "regex")
_LABEL_MAX = 64
#: RE2's memory budget per expression: a pattern whose automaton would need more is refused at load.
_MAX_MEM = 8 << 20

Problem = tuple[tuple[str | int, ...], str]  # (path below ``config``, message)


def _options() -> Any:
    opts = re2.Options()
    opts.log_errors = False  # the policy error carries RE2's message; no absl lines on stderr
    opts.max_mem = _MAX_MEM
    return opts


def _compile(pattern: str) -> tuple[Any, str | None]:
    """``(compiled, None)`` or ``(None, why)``: RE2 over UTF-8 bytes (``.`` is one character, not one byte)."""
    try:
        rx = re2.compile(pattern.encode("utf-8"), _options())
    except re2.error as exc:
        msg = exc.args[0] if exc.args else exc
        text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        return None, f"not a valid RE2 expression: {text} (back-references and look-around are refused:" \
                     " they need backtracking, whose time is not linear in the body)"  # fmt: skip
    if rx.fullmatch(b"") is not None:
        return None, "the expression matches the empty text (it would match between every two characters)"
    return rx, None


def _patterns(value: Any, problems: list[Problem]) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        problems.append((("patterns",), f"expected a list of expressions, got {type(value).__name__}"))
        return []
    if not value:
        problems.append((("patterns",), "expected at least one expression (leave patterns out for the built-in)"))
    if len(value) > MAX_PATTERNS:
        problems.append((("patterns",), f"at most {MAX_PATTERNS} expressions are allowed, got {len(value)}"))
        return []
    out: list[tuple[str, str]] = []
    labels: set[str] = set()
    for i, item in enumerate(value):
        label, regex = f"patterns[{i}]", item
        where: tuple[str | int, ...] = ("patterns", i)
        if isinstance(item, dict):
            unknown = [k for k in item if k not in _PATTERN_KEYS]
            if unknown:
                problems.append(((*where, str(unknown[0])), f"unknown key {unknown[0]!r} (expected name, regex)"))
                continue
            if "regex" not in item:
                problems.append((where, "missing required key 'regex'"))
                continue
            regex, where = item["regex"], (*where, "regex")
            if "name" in item:
                name = item["name"]
                if not isinstance(name, str) or not 0 < len(name) <= _LABEL_MAX or not name.isprintable():
                    problems.append(((*where[:-1], "name"), f"expected a name of 1 to {_LABEL_MAX} printable"
                                                            " characters"))  # fmt: skip
                    continue
                label = name
        if not isinstance(regex, str):
            problems.append((where, f"expected an expression (a string), got {type(regex).__name__}"))
            continue
        if not regex or len(regex) > MAX_PATTERN_LEN:
            problems.append((where, f"an expression must have 1 to {MAX_PATTERN_LEN} characters"))
            continue
        if label in labels:
            problems.append((where, f"pattern name {label!r} is used twice"))
            continue
        labels.add(label)
        _rx, why = _compile(regex)
        if why:
            problems.append((where, why))
            continue
        out.append((label, regex))
    return out


def check_regex_config(config: Mapping[str, Any]) -> list[Problem]:
    """Every problem of an ``openshell/regex`` config, each with its path below ``config``."""
    problems: list[Problem] = []
    for key in config:
        if key not in _CONFIG_KEYS:
            problems.append(((str(key),), f"unknown {REGEX} config key {key!r} (expected one of"
                                           f" {', '.join(_CONFIG_KEYS)})"))  # fmt: skip
    for key, choices in (("mode", MODES), ("direction", DIRECTIONS)):
        if key in config and config[key] not in choices:
            problems.append(((key,), f"expected one of {', '.join(choices)}, got {config[key]!r}"))
    if "patterns" in config:
        _patterns(config["patterns"], problems)
    if "replacement" in config:
        rep = config["replacement"]
        if not isinstance(rep, str) or len(rep) > MAX_REPLACEMENT_LEN:
            problems.append((("replacement",), f"expected a literal text of at most {MAX_REPLACEMENT_LEN}"
                                               " characters"))  # fmt: skip
        elif config.get("mode", "redact") != "redact":
            problems.append((("replacement",), f"replacement applies to mode: redact only, not mode:"
                                               f" {config['mode']}"))  # fmt: skip
    return problems


@dataclass(frozen=True)
class HookResult:
    """What one stage made of one body."""

    matches: tuple[tuple[str, int], ...] = ()  # (pattern name, count), patterns that matched
    body: bytes | None = None  # the rewritten body (mode redact and a match), else None
    error: str | None = None  # the stage could not inspect the body (not UTF-8): a failure, see on_error

    @property
    def count(self) -> int:
        return sum(n for _, n in self.matches)


class RegexHook:
    """One compiled ``openshell/regex`` config (one stage of a middleware chain)."""

    def __init__(self, mw: Middleware) -> None:
        config = mw.config
        self.key = mw.key
        self.name = mw.name or mw.key
        self.middleware = mw.middleware
        self.order = mw.order
        self.fail_open = mw.on_error == "fail_open"
        self.mode = str(config.get("mode", "redact"))
        direction = str(config.get("direction", "request"))
        self.request = direction in ("request", "both")
        self.response = direction in ("response", "both")
        self.replacement = str(config.get("replacement", DEFAULT_REPLACEMENT)).encode("utf-8")
        problems: list[Problem] = []
        pats = _patterns(config["patterns"], problems) if "patterns" in config else list(DEFAULT_PATTERNS)
        if problems:  # the loader refuses such a policy; a hand-built Middleware must not get past either
            raise ValueError(f"{REGEX} config of {mw.key}: {problems[0][1]}")
        self.patterns: tuple[tuple[str, Any], ...] = tuple((label, _compile(rx)[0]) for label, rx in pats)
        self.include, self.exclude = mw.include, mw.exclude
        self.limit = MAX_PAYLOAD_BYTES

    def apply(self, body: bytes) -> HookResult:
        """Match (and under ``mode: redact`` rewrite) ``body``, which must be UTF-8 (as upstream)."""
        try:
            body.decode("utf-8", "strict")
        except UnicodeDecodeError:
            return HookResult(error=f"{REGEX} inspects UTF-8 bodies only; this one is not UTF-8")
        found: list[tuple[str, int]] = []
        out = body
        for label, rx in self.patterns:
            if self.mode == "redact":
                new, n = rx.subn(lambda _m: self.replacement, out)  # a function: the replacement is literal
                if n:
                    out = new
            else:
                n = sum(1 for _ in rx.finditer(out))
            if n:
                found.append((label, n))
        return HookResult(tuple(found), out if out is not body else None)


def compile_regex_hook(mw: Middleware) -> RegexHook:
    return RegexHook(mw)


def matches_host(patterns: Sequence[str], host: str) -> bool:
    """Whether a normalised ``host`` matches one of the (normalised) selector patterns: exact, ``*`` one label,
    ``**`` one or more labels, ``*-x`` within the first label, as network endpoints."""
    for pattern in patterns:
        if has_inner_wildcard(pattern):  # *.s3.*.amazonaws.com: a whole-label '*' is exactly one label
            if compile_host_pattern(pattern).match(host) is not None:
                return True
            continue
        first, _, rest = pattern.partition(".")
        if "*" not in first and "?" not in first:
            if host == pattern:
                return True
            continue
        if first == "**":
            if host.endswith("." + rest) and len(host) > len(rest) + 1:
                return True
            continue
        label, _, hrest = host.partition(".")
        if hrest == rest and compile_label_glob(first).fullmatch(label) is not None:
            return True
    return False


def _example(pattern: str) -> str:
    """A host a selector pattern matches (its wildcard label filled in)."""
    first, _, rest = pattern.partition(".")
    return f"{first.replace('*', 'x').replace('?', 'x')}.{rest}" if rest else pattern


def _selects(mw: Middleware, host: str) -> bool:
    return matches_host(mw.include, host) and not matches_host(mw.exclude, host)


def tls_skip_conflicts(
    rules: Mapping[str, NetworkRule], middlewares: Mapping[str, Middleware]
) -> list[tuple[str, str, str]]:
    """``(middleware key, rule key, endpoint host)`` for each ``fail_closed`` middleware whose selector may match a
    ``tls: skip`` endpoint: traffic no stage can inspect (upstream refuses such a policy at load). "May match":
    the endpoint's host, or a host its wildcard covers, is selected; or the endpoint's pattern covers a host the
    selector includes. The gateway also refuses such a tunnel per CONNECT (a merge of presets can create one)."""
    found = []
    for key, mw in middlewares.items():
        if mw.on_error != "fail_closed":
            continue
        for rkey, rule in rules.items():
            for ep in rule.endpoints:
                if ep.tls != "skip":
                    continue
                overlap = _selects(mw, _example(ep.host)) or any(
                    matches_host((ep.host,), _example(inc)) and _selects(mw, _example(inc)) for inc in mw.include
                )
                if overlap:
                    found.append((key, rkey, ep.host))
    return found
