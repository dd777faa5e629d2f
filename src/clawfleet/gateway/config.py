"""Gateway settings, credential bindings and the decision log.

A gateway section (in a sandbox definition file or a stand-alone YAML file)::

    policy: /etc/clawfleet/policies/agent.yaml   # OpenShell-compatible policy (hot-reloaded)
    mode: enforce                                # or: monitor (log what would be denied, allow it)
    log: /var/log/clawfleet/agent.decisions.jsonl
    ocsf_log: /var/log/clawfleet/agent.ocsf.jsonl  # optional: the same events as OCSF 1.8.0 JSON lines (.ocsf)
    extra_ca_file: /etc/clawfleet/internal-ca.pem  # trusted for upstream TLS, besides the system store
    pin_binaries: true                           # sha256 trust-on-first-use per binary path
    static_hosts: {ollama.internal: 127.0.0.1}   # names the gateway resolves itself (no DNS query)
    max_connections: 256                         # per sandbox; over it a new connection gets 503
    idle_timeout: 300                            # seconds without a byte either way before a connection is cut
    secrets:
      GITHUB_TOKEN:
        file: /etc/clawfleet/secrets/github_token  # root-only; the value is the file minus a final newline
        hosts: [api.github.com, "*.githubusercontent.com"]  # only these hosts ever receive the real value
        headers: [authorization]                 # default; header names whose whole value is the placeholder
        schemes: [bearer, token, basic]          # default; Authorization schemes
        query: []                                # default; query parameters (never the target otherwise)
    providers:                                   # upstream Providers v2 (see .providers)
      work-github:
        profile: /etc/clawfleet/providers/github.yaml  # a provider profile: credentials and their endpoints
        credentials: {GITHUB_TOKEN: /etc/clawfleet/secrets/work-github-GITHUB_TOKEN}

Inside the sandbox a credential is the placeholder ``clawfleet:secret:GITHUB_TOKEN`` (the sandbox launcher's
``openshell:resolve:env:GITHUB_TOKEN`` spelling works too). The gateway replaces a placeholder only where its
binding says (:mod:`.credentials`), only on requests to a bound host, only after the request was allowed;
anywhere else the placeholder passes as is.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from clawfleet.policy.profiles import ProviderProfile

from .credentials import PLACEHOLDER_PREFIXES, SecretBinding, Secrets, parse_binding
from .providers import parse_providers, refresh_material

__all__ = ["PLACEHOLDER_PREFIXES", "ConfigError", "DecisionLog", "DecisionObserver", "GatewayConfig",
           "SecretBinding", "Secrets", "config_from_args", "current_digest", "load_gateway_section"]  # fmt: skip

ENFORCE, MONITOR = "enforce", "monitor"


class ConfigError(ValueError):
    pass


@dataclass
class GatewayConfig:
    policy: str
    mode: str = ENFORCE
    sandbox: str = "sandbox"
    log: str | None = None
    ocsf_log: str | None = None  # the decision log's events as OCSF JSON lines too (see .ocsf); off by default
    extra_ca_file: str | None = None
    pin_binaries: bool = False
    pins_file: str | None = None
    static_hosts: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[SecretBinding, ...] = ()  # the ``secrets:`` bindings, then the providers' credentials
    providers: Mapping[str, ProviderProfile] = field(default_factory=dict)  # instance name -> its profile
    # provider -> minted credential's env var -> {material name -> file} (.token_mint; read by the privileged side)
    refresh: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    listen_port: int = 3128
    reload_interval: float = 0.1
    connect_timeout: float = 10.0
    max_connections: int = 256  # per sandbox; over it new connections get 503 (see .limits)
    idle_timeout: float = 300.0  # seconds without a byte from either side before a connection is aborted

    def __post_init__(self) -> None:
        if self.mode not in (ENFORCE, MONITOR):
            raise ConfigError(f"mode must be {ENFORCE} or {MONITOR}, not {self.mode!r}")
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int) \
                or not 1 <= self.max_connections <= 65536:  # fmt: skip
            raise ConfigError(f"max_connections must be an integer from 1 to 65536, not {self.max_connections!r}")
        if isinstance(self.idle_timeout, bool) or not isinstance(self.idle_timeout, (int, float)) \
                or not 0 < self.idle_timeout <= 86400:  # fmt: skip
            raise ConfigError(f"idle_timeout must be a number of seconds in (0, 86400], not {self.idle_timeout!r}")


def load_gateway_section(data: Mapping[str, Any], base_dir: str = ".", **defaults: Any) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from parsed YAML (relative paths are relative to ``base_dir``)."""

    def path(value: Any) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"expected a path, got {value!r}")
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))

    known = {"policy", "mode", "sandbox", "log", "ocsf_log", "extra_ca_file", "pin_binaries", "pins_file",
             "static_hosts", "secrets", "providers", "listen_port", "reload_interval", "connect_timeout",
             "max_connections", "idle_timeout"}  # fmt: skip
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown gateway settings: {', '.join(sorted(unknown))}")
    secrets = []
    for name, spec in (data.get("secrets") or {}).items():
        try:
            secrets.append(parse_binding(name, spec, path))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        providers, provider_secrets = parse_providers(data.get("providers"), path, (b.name for b in secrets))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    secrets.extend(provider_secrets)
    policy = path(data.get("policy", defaults.get("policy")))
    if not policy:
        raise ConfigError("gateway: 'policy' is required")
    static = {str(k).lower(): str(v) for k, v in (data.get("static_hosts") or {}).items()}
    return GatewayConfig(
        policy=policy,
        mode=str(data.get("mode", defaults.get("mode", ENFORCE))),
        sandbox=str(data.get("sandbox", defaults.get("sandbox", "sandbox"))),
        log=path(data.get("log", defaults.get("log"))),
        ocsf_log=path(data.get("ocsf_log", defaults.get("ocsf_log"))),
        extra_ca_file=path(data.get("extra_ca_file")),
        pin_binaries=bool(data.get("pin_binaries", False)),
        pins_file=path(data.get("pins_file")),
        static_hosts=static,
        secrets=tuple(secrets),
        providers=providers,
        refresh=refresh_material(data.get("providers"), path),
        listen_port=int(data.get("listen_port", 3128)),
        reload_interval=float(data.get("reload_interval", 0.1)),
        connect_timeout=float(data.get("connect_timeout", 10.0)),
        max_connections=data.get("max_connections", GatewayConfig.max_connections),
        idle_timeout=data.get("idle_timeout", GatewayConfig.idle_timeout),
    )


def config_from_args(
    policy: str, gateway_config: str | None = None, mode: str | None = None, log: str | None = None
) -> GatewayConfig:
    """The gateway settings for ``sandbox run``: ``--policy``, optional ``--gateway-config FILE`` (YAML, see
    docs/gateway.md), ``--mode`` and ``--gateway-log`` override the file. Raises ConfigError/OSError."""
    from ruamel.yaml import YAML

    section: dict = {}
    base = "."
    if gateway_config:
        with open(gateway_config, encoding="utf-8") as f:
            section = YAML(typ="safe").load(f) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{gateway_config}: expected a mapping")
        base = os.path.dirname(os.path.abspath(gateway_config))
    section["policy"] = os.path.abspath(policy)
    if mode:
        section["mode"] = mode
    if log:
        section["log"] = os.path.abspath(log)
    return load_gateway_section(section, base)


def current_digest(decisions: str, tail_bytes: int = 262144) -> str | None:
    """The digest of the policy the sandbox's gateway applies now: the last ``digest`` in its decision log
    (``listening``, a successful ``reload``, or any decision; a failed reload keeps the last good one)."""
    try:
        with open(decisions, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        if b'"digest"' not in raw:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # the first, partial line of the tail, or a line being written
        if isinstance(record, dict) and isinstance(record.get("digest"), str):
            return record["digest"]
    return None


#: ``(record, time in ms since the epoch, flush now)``: sees every record the log is given (the OCSF file, the
#: metrics), problems-only stderr or not; it must not raise and must be cheap (it runs on the gateway's loop).
DecisionObserver = Callable[[dict[str, Any], int, bool], None]


#: One decision-log line: the compact separators of ``json.dumps(..., separators=(",", ":"))``, with the encoder
#: made once (``json.dumps`` with any option builds a new encoder for every record, one per request).
_encode = json.JSONEncoder(separators=(",", ":")).encode


class DecisionLog:
    """One JSON object per line: every decision and every reload. Thread-safe.

    Denials and events are written through at once; ``allow`` records are batched and reach the file within
    ``flush_interval`` seconds (the reload watcher also flushes on every tick), which saves a write syscall
    per allowed request on the hot path.
    """

    def __init__(
        self, path: str | None = None, stream: TextIO | None = None, sandbox: str = "sandbox",
        flush_interval: float = 0.1,
    ) -> None:  # fmt: skip
        self.sandbox = sandbox
        self._own = path is not None
        # Without a log file the records go to stderr, which the sandboxed command shares with the operator's
        # terminal: only denials and failed reloads are written there, so a command's own output stays clean.
        self._only_problems = path is None and stream is None
        if path is not None:
            # Never follow a link or block on a FIFO planted where the log goes: the supervisor writes as root.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o640)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(f"{path}: decision log is not a regular file")
            os.set_blocking(fd, True)
            self._fh: TextIO = os.fdopen(fd, "a", buffering=1 << 16)
        else:
            self._fh = stream or sys.stderr
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.observers: list[DecisionObserver] = []

    def write(self, record: dict[str, Any]) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        if self.observers:
            ms = int(now.timestamp() * 1000)
            through = record.get("decision", record.get("event")) != "allow"
            for observe in self.observers:
                observe(record, ms, through)
        line = _encode({"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        "sandbox": self.sandbox, **record})  # fmt: skip
        key = str(record.get("decision", record.get("event", "?")))
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if self._only_problems and record.get("action") != "deny" and record.get("ok", True):
                return
            if self._fh.closed:
                return
            self._fh.write(line + "\n")
            now_m = time.monotonic()
            if key != "allow" or not self._own or now_m - self._last_flush >= self.flush_interval:
                self._fh.flush()
                self._last_flush = now_m

    def flush(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
            self._last_flush = time.monotonic()
        for observer in self.observers:
            flush = getattr(observer, "flush", None)
            if flush is not None:
                flush()

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._fh.close()
        for observer in self.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()
