"""Gateway settings, credential bindings and the decision log.

A gateway section (in a sandbox definition file or a stand-alone YAML file)::

    policy: /etc/clawfleet/policies/agent.yaml   # OpenShell-compatible policy (hot-reloaded)
    mode: enforce                                # or: monitor (log what would be denied, allow it)
    log: /var/log/clawfleet/agent.decisions.jsonl
    extra_ca_file: /etc/clawfleet/internal-ca.pem  # trusted for upstream TLS, besides the system store
    pin_binaries: true                           # sha256 trust-on-first-use per binary path
    static_hosts: {ollama.internal: 127.0.0.1}   # names the gateway resolves itself (no DNS query)
    secrets:
      GITHUB_TOKEN:
        file: /etc/clawfleet/secrets/github_token  # root-only; the value is the file minus a final newline
        hosts: [api.github.com, "*.githubusercontent.com"]  # only these hosts ever receive the real value

Inside the sandbox a credential is the placeholder ``clawfleet:secret:GITHUB_TOKEN`` (the sandbox launcher's
``openshell:resolve:env:GITHUB_TOKEN`` spelling works too). The gateway replaces placeholders in request
header values (including inside ``Authorization: Basic`` credentials) and the request target, only on
requests to a bound host, only after the request was allowed; anywhere else the placeholder passes as is.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["ConfigError", "DecisionLog", "GatewayConfig", "SecretBinding", "Secrets", "load_gateway_section"]

PLACEHOLDER_PREFIXES = ("clawfleet:secret:", "openshell:resolve:env:")
_PLACEHOLDER = re.compile(rb"(?:clawfleet:secret:|openshell:resolve:env:)([A-Za-z_][A-Za-z0-9_]{0,127})")
ENFORCE, MONITOR = "enforce", "monitor"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SecretBinding:
    name: str
    file: str
    hosts: tuple[str, ...]

    def bound_to(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)


class Secrets:
    """Placeholder -> real value, only for hosts a secret is bound to. Values are read from root-only files
    (re-read when the file changes) and never logged."""

    def __init__(self, bindings: Iterable[SecretBinding] = ()) -> None:
        self.bindings = {b.name: b for b in bindings}
        self._values: dict[str, tuple[tuple[int, int], bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self.bindings)

    def bound(self, host: str) -> bool:
        return any(b.bound_to(host) for b in self.bindings.values())

    def _value(self, name: str) -> bytes:
        b = self.bindings[name]
        st = os.stat(b.file)
        key = (st.st_mtime_ns, st.st_size)
        cached = self._values.get(name)
        if cached and cached[0] == key:
            return cached[1]
        with open(b.file, "rb") as f:
            value = f.read().removesuffix(b"\n").removesuffix(b"\r")
        self._values[name] = (key, value)
        return value

    def _sub(self, host: str, data: bytes, used: set[str]) -> bytes:
        def repl(m: re.Match[bytes]) -> bytes:
            name = m.group(1).decode()
            b = self.bindings.get(name)
            if b is None or not b.bound_to(host):
                return m.group(0)
            used.add(name)
            return self._value(name)

        return _PLACEHOLDER.sub(repl, data)

    def inject(self, host: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, list, set[str]]:
        used: set[str] = set()
        if not self.bindings:
            return target, headers, used
        out = []
        for name, value in headers:
            if name == b"authorization" and value[:6].lower() == b"basic ":
                try:
                    raw = base64.b64decode(value[6:].strip(), validate=True)
                except ValueError:
                    raw = b""
                if raw and (b"clawfleet:secret:" in raw or b"openshell:resolve:env:" in raw):
                    value = b"Basic " + base64.b64encode(self._sub(host, raw, used))
            if b"clawfleet:secret:" in value or b"openshell:resolve:env:" in value:
                value = self._sub(host, value, used)
            out.append((name, value))
        if b"clawfleet:secret:" in target or b"openshell:resolve:env:" in target:
            target = self._sub(host, target, used)
        return target, out, used


@dataclass
class GatewayConfig:
    policy: str
    mode: str = ENFORCE
    sandbox: str = "sandbox"
    log: str | None = None
    extra_ca_file: str | None = None
    pin_binaries: bool = False
    pins_file: str | None = None
    static_hosts: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[SecretBinding, ...] = ()
    listen_port: int = 3128
    reload_interval: float = 0.1
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in (ENFORCE, MONITOR):
            raise ConfigError(f"mode must be {ENFORCE} or {MONITOR}, not {self.mode!r}")


def load_gateway_section(data: Mapping[str, Any], base_dir: str = ".", **defaults: Any) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from parsed YAML (relative paths are relative to ``base_dir``)."""

    def path(value: Any) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"expected a path, got {value!r}")
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))

    known = {"policy", "mode", "sandbox", "log", "extra_ca_file", "pin_binaries", "pins_file", "static_hosts",
             "secrets", "listen_port", "reload_interval", "connect_timeout"}  # fmt: skip
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown gateway settings: {', '.join(sorted(unknown))}")
    secrets = []
    for name, spec in (data.get("secrets") or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", str(name)):
            raise ConfigError(f"invalid secret name {name!r}")
        if not isinstance(spec, Mapping) or "file" not in spec or not spec.get("hosts"):
            raise ConfigError(f"secret {name}: needs 'file' and a non-empty 'hosts' list")
        hosts = tuple(str(h).lower() for h in spec["hosts"])
        secrets.append(SecretBinding(str(name), path(spec["file"]) or "", hosts))
    policy = path(data.get("policy", defaults.get("policy")))
    if not policy:
        raise ConfigError("gateway: 'policy' is required")
    static = {str(k).lower(): str(v) for k, v in (data.get("static_hosts") or {}).items()}
    return GatewayConfig(
        policy=policy,
        mode=str(data.get("mode", defaults.get("mode", ENFORCE))),
        sandbox=str(data.get("sandbox", defaults.get("sandbox", "sandbox"))),
        log=path(data.get("log", defaults.get("log"))),
        extra_ca_file=path(data.get("extra_ca_file")),
        pin_binaries=bool(data.get("pin_binaries", False)),
        pins_file=path(data.get("pins_file")),
        static_hosts=static,
        secrets=tuple(secrets),
        listen_port=int(data.get("listen_port", 3128)),
        reload_interval=float(data.get("reload_interval", 0.1)),
        connect_timeout=float(data.get("connect_timeout", 10.0)),
    )


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

    def write(self, record: dict[str, Any]) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        line = json.dumps(
            {"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "sandbox": self.sandbox,
             **record},
            separators=(",", ":"),
        )  # fmt: skip
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

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._fh.close()
