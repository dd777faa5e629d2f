"""OCSF 1.8.0 events from the gateway's decision log: the classes and fields upstream OpenShell emits.

Every record the gateway writes to its decision log (:class:`~.config.DecisionLog`) is projected here into zero
or more OCSF events, so the two files say the same thing from the same data (upstream's shorthand log and its
``openshell-ocsf`` JSON lines are derived the same way). The native log stays the source for clawfleet's own
tools (``policy pending/approve/suggest``, ``sandbox status``'s digest); the OCSF file is for SIEMs.

| native record | OCSF class | activity |
| --- | --- | --- |
| ``kind: connect`` decision, ``address_refused`` | Network Activity [4001] | Open (1) |
| ``kind: http / tunnel_request / tls_request`` decision | HTTP Activity [4002] | by method (Get 3, Post 6, ...) |
| ``kind: websocket_message`` decision (one client WebSocket message) | Network Activity [4001] | Other (99) |
| ``connection_refused`` (over ``max_connections``) | Network Activity [4001] | Refuse (5) |
| ``idle_timeout`` | Network Activity [4001] | Reset (3) |
| ``tls_handshake_failed``, ``bad_request`` | Network Activity [4001] | Fail (4) |
| ``listening`` | Device Config State Change [5019] + Network Activity [4001] Listen (7) | Log (1) |
| ``reload`` (ok / failed) | Device Config State Change [5019] | Log (1) |
| the daemon's ``reloaded`` / ``reload_failed`` (definitions) | Device Config State Change [5019] | Log (1) |
| ``process_start`` / ``process_exit`` | Process Activity [1007] | Launch (1) / Terminate (2) |

docs/gateway.md "OCSF events" has the field list; ``tests/gateway/test_ocsf.py`` validates every event against
the pinned OCSF 1.8.0 schema (``tests/data/ocsf-1.8.0``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["OCSF_VERSION", "OcsfContext", "OcsfLog", "events"]

OCSF_VERSION = "1.8.0"

_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal"}
_STATUS = {1: "Success", 2: "Failure"}
_ACTION = {1: "Allowed", 2: "Denied", 3: "Observed"}
_DISPOSITION = {1: "Allowed", 2: "Blocked", 17: "Logged", 25: "Rejected"}
_NETWORK_ACTIVITY = {1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 7: "Listen", 99: "Other"}
# HTTP Activity's activity_id per method (OCSF 1.8.0; upstream's ActivityId::http_label)
_HTTP_ACTIVITY = {"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8,
                  "PATCH": 9}  # fmt: skip
_HTTP_ACTIVITY_NAME = {1: "Connect", 2: "Delete", 3: "Get", 4: "Head", 5: "Options", 6: "Post", 7: "Put",
                       8: "Trace", 9: "Patch", 99: "Other"}  # fmt: skip
_STATE = {0: "Unknown", 1: "Disabled", 2: "Enabled", 99: "Other"}
# Profiles declared in metadata.profiles, as upstream declares them per class: they admit the profile's
# attributes (action/disposition/firewall_rule: security_control; proxy_endpoint: network_proxy; ...).
_NET_PROFILES = ["security_control", "network_proxy", "container", "host"]
_HOST_PROFILES = ["security_control", "container", "host"]
# firewall_rule.type: which control decided (upstream writes its engine, "opa", "ssrf", "middleware")
ENGINE_POLICY, ENGINE_GUARD, ENGINE_LIMITS, ENGINE_IDENTITY = "policy", "destination_guard", "limits", "identity"


class OcsfContext:
    """What every event of one gateway carries: product, host (``device``) and sandbox (``device.container``;
    ``sandbox=None`` for the daemon's own events, which concern no one sandbox)."""

    def __init__(self, sandbox: str | None, listen_port: int = 3128, hostname: str | None = None) -> None:
        from clawfleet import __version__

        self.sandbox = sandbox
        self.listen_port = listen_port
        self.hostname = hostname or socket.gethostname()
        self.product = {"name": "clawfleet gateway", "vendor_name": "clawfleet", "version": __version__}
        # The parts every event of this gateway shares, built once (events refer to them; never mutated).
        self._metadata = {tuple(p): {"version": OCSF_VERSION, "product": self.product, "profiles": p,
                                     "log_name": "decisions"} for p in (_NET_PROFILES, _HOST_PROFILES)}  # fmt: skip
        # type_id 0: the gateway cannot tell a server from a laptop; OS type 200 is Linux. The sandbox is the
        # device's container (OCSF 1.8.0 has no top-level `container`, where upstream writes it).
        self._device: dict[str, Any] = {
            "hostname": self.hostname,
            "type_id": 0,
            "type": "Unknown",
            "os": {"name": "Linux", "type_id": 200, "type": "Linux"},
        }
        if sandbox is not None:
            self._device["container"] = {"name": sandbox}
        self._proxy = {"ip": "127.0.0.1", "port": listen_port}

    def base(self, class_uid: int, class_name: str, category_uid: int, category_name: str, activity_id: int,
             activity_name: str, severity_id: int, time_ms: int, profiles: list[str]) -> dict[str, Any]:  # fmt: skip
        return {
            "class_uid": class_uid, "class_name": class_name, "category_uid": category_uid,
            "category_name": category_name, "activity_id": activity_id, "activity_name": activity_name,
            "type_uid": class_uid * 100 + activity_id, "type_name": f"{class_name}: {activity_name}",
            "time": time_ms, "severity_id": severity_id, "severity": _SEVERITY[severity_id],
            "metadata": self._metadata[tuple(profiles)], "device": self._device,
        }  # fmt: skip

    def proxy_endpoint(self) -> dict[str, Any]:
        return self._proxy


def _status(ev: dict[str, Any], ok: bool, detail: str | None = None) -> None:
    ev["status_id"] = 1 if ok else 2
    ev["status"] = _STATUS[ev["status_id"]]
    if detail:
        ev["status_detail"] = detail


def _verdict(ev: dict[str, Any], record: dict[str, Any]) -> None:
    """action/disposition/severity/status from the record: allowed, denied, or (monitor mode) a denial that was
    let through: action Observed, disposition Logged, so a SIEM can tell it from a real allow."""
    allowed = record.get("action") == "allow"
    would_deny = record.get("decision") == "deny"
    if allowed and not would_deny:
        action, disposition, severity = 1, 1, 1
    elif allowed:  # monitor mode
        action, disposition, severity = 3, 17, 2
    else:
        action, disposition, severity = 2, 2, 3
    ev.update(action_id=action, action=_ACTION[action], disposition_id=disposition,
              disposition=_DISPOSITION[disposition], severity_id=severity, severity=_SEVERITY[severity])  # fmt: skip
    _status(ev, allowed, None if allowed and not would_deny else record.get("reason"))


def _process(exe: str | None, pid: int | None, ancestors: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    proc: dict[str, Any] = {"name": exe or "unknown", "pid": pid if isinstance(pid, int) else 0}
    if exe:
        proc["path"] = exe
    parent: dict[str, Any] | None = None
    for name in reversed(list(ancestors)):  # ancestors run from the parent up; pid 0: not recorded
        node: dict[str, Any] = {"name": name, "path": name, "pid": 0}
        if parent is not None:
            node["parent_process"] = parent
        parent = node
    if parent is not None:
        proc["parent_process"] = parent
    return proc


def _dst(host: str | None, port: int | None) -> dict[str, Any]:
    ep: dict[str, Any] = {}
    if host:
        ep["ip" if _is_ip(host) else "domain"] = host.strip("[]")
    if isinstance(port, int):
        ep["port"] = port
    return ep or {"name": "unknown"}


def _is_ip(host: str) -> bool:
    # A name never has ':' and is never all digits and dots (the gateway refuses other IPv4 spellings): only those
    # hosts pay for ipaddress, which is slow on the common case, a name (it raises).
    bare = host.strip("[]")
    if ":" not in bare and not bare.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return False
    return True


def _firewall_rule(record: dict[str, Any], engine: str = ENGINE_POLICY) -> dict[str, Any]:
    rule = record.get("rule")
    if engine == ENGINE_POLICY and record.get("binary") is None and record.get("decision") == "deny" \
            and str(record.get("reason", "")).startswith("caller not identified"):  # fmt: skip
        engine = ENGINE_IDENTITY
    out: dict[str, Any] = {"name": rule if isinstance(rule, str) and rule else "-", "type": engine}
    if isinstance(record.get("digest"), str):
        out["version"] = record["digest"]  # the policy digest the decision was made under
    return out


def _unmapped(record: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    out = {k: record[k] for k in keys if record.get(k) is not None}
    return out or None


def _actor(record: dict[str, Any]) -> dict[str, Any] | None:
    if record.get("binary") is None and record.get("pid") is None:
        return None
    return {"process": _process(record.get("binary"), record.get("pid"), record.get("ancestors") or ())}


def _observed_between(ev: dict[str, Any]) -> None:
    # 3 "Neither": the gateway is a proxy between the endpoints (upstream writes 2, "Destination")
    ev["observation_point_id"], ev["observation_point"] = 3, "Neither"


def _proxied(
    ctx: OcsfContext,
    class_uid: int,
    class_name: str,
    activity: int,
    activity_name: str,
    time_ms: int,
    record: dict[str, Any],
) -> dict[str, Any]:
    """The parts every Network Activity category event of the gateway shares: its class, the proxy endpoint,
    the observation point and the calling process."""
    ev = ctx.base(class_uid, class_name, 4, "Network Activity", activity, activity_name, 1, time_ms, _NET_PROFILES)
    ev["proxy_endpoint"] = ctx.proxy_endpoint()
    _observed_between(ev)
    actor = _actor(record)
    if actor is not None:
        ev["actor"] = actor
    return ev


def _network(ctx: OcsfContext, activity: int, time_ms: int, record: dict[str, Any]) -> dict[str, Any]:
    return _proxied(ctx, 4001, "Network Activity", activity, _NETWORK_ACTIVITY[activity], time_ms, record)


def _decision(ctx: OcsfContext, time_ms: int, record: dict[str, Any]) -> dict[str, Any]:
    kind, host, port = record.get("kind"), record.get("host"), record.get("port")
    method = str(record.get("method") or "")
    if kind == "connect":
        ev = _network(ctx, 1, time_ms, record)
        ev["dst_endpoint"] = _dst(host, port)
        ev["message"] = f"CONNECT {'allowed' if record.get('action') == 'allow' else 'denied'} {host}:{port}"
    elif kind == "websocket_message":  # as upstream's WEBSOCKET_L7_REQUEST: Network Activity, Other
        ev = _network(ctx, 99, time_ms, record)
        ev["dst_endpoint"] = _dst(host, port)
        verb = "allowed" if record.get("action") == "allow" else "denied"
        what = method or f"close {record.get('close_code')}"
        ev["message"] = f"WEBSOCKET_L7_REQUEST {verb} {what} {host}:{port}{record.get('path') or ''}"
        _verdict(ev, record)
        ev["firewall_rule"] = _firewall_rule(record)
        extra = _unmapped(record, "method", "path", "tls", "message_bytes", "close_code")
        if extra:
            ev["unmapped"] = extra
        return ev
    else:
        activity = _HTTP_ACTIVITY.get(method, 99)
        ev = _proxied(ctx, 4002, "HTTP Activity", activity, _HTTP_ACTIVITY_NAME[activity], time_ms, record)
        scheme = "https" if kind == "tls_request" else "http"
        raw = str(record.get("path") or "/")
        path, _, query = raw.partition("?")
        url: dict[str, Any] = {"scheme": scheme, "path": path or "/"}
        if host:
            url["hostname"] = host
        if isinstance(port, int):
            url["port"] = port
        if query:
            url["query_string"] = query
        if host:
            default = 443 if scheme == "https" else 80
            hostport = host if port in (None, default) else f"{host}:{port}"
            url["url_string"] = f"{scheme}://{hostport}{raw}"
        # http_method is an enum of the nine standard methods in OCSF 1.8.0: another one stays in the activity
        # (Other) and in unmapped.method
        ev["http_request"] = {"http_method": method, "url": url} if activity != 99 else {"url": url}
        ev["dst_endpoint"] = _dst(host, port)
        verb = "allowed" if record.get("action") == "allow" else "denied"
        ev["message"] = f"{method} {verb} {url.get('url_string', raw)}"
    if kind == "connect":
        ev["is_src_dst_assignment_known"] = True
    _verdict(ev, record)
    ev["firewall_rule"] = _firewall_rule(record)
    extra = _unmapped(record, "kind", "mode", "sha256", "body_bytes")
    if kind != "connect" and method and method not in _HTTP_ACTIVITY:
        extra = {**(extra or {}), "method": method}
    if extra:
        ev["unmapped"] = extra
    return ev


def _config(ctx: OcsfContext, time_ms: int, ok: bool, message: str, severity: int, state: int,
            unmapped: dict[str, Any] | None, detail: str | None = None) -> dict[str, Any]:  # fmt: skip
    ev = ctx.base(5019, "Device Config State Change", 5, "Discovery", 1, "Log", severity, time_ms, _HOST_PROFILES)
    _status(ev, ok, detail)
    ev["message"] = message
    ev["state_id"], ev["state"] = state, _STATE[state]
    if unmapped:
        ev["unmapped"] = unmapped
    return ev


def events(ctx: OcsfContext, record: dict[str, Any], time_ms: int) -> Iterator[dict[str, Any]]:
    """The OCSF events one decision-log record stands for (none for records without a security meaning)."""
    event = record.get("event")
    if "decision" in record and event is None:
        yield _decision(ctx, time_ms, record)
    elif event == "address_refused":
        ev = _network(ctx, 1, time_ms, record)
        ev["dst_endpoint"] = _dst(record.get("host"), record.get("port"))
        ev["message"] = f"CONNECT denied {record.get('host')}:{record.get('port')} (refused addresses)"
        _verdict(ev, {**record, "action": "deny", "decision": "deny"})
        ev["firewall_rule"] = _firewall_rule(record, ENGINE_GUARD)
        ev["unmapped"] = {"addresses": record.get("addresses") or []}
        yield ev
    elif event == "connection_refused":
        ev = _network(ctx, 5, time_ms, record)
        ev["dst_endpoint"] = ctx.proxy_endpoint()
        ev["message"] = f"connections over the cap of {record.get('max_connections')} refused"
        ev.update(action_id=2, action=_ACTION[2], disposition_id=25, disposition=_DISPOSITION[25], severity_id=2,
                  severity=_SEVERITY[2])  # fmt: skip
        _status(ev, False, "gateway_busy")
        ev["firewall_rule"] = {"name": "max_connections", "type": ENGINE_LIMITS}
        ev["unmapped"] = _unmapped(record, "open", "max_connections", "refused")
        yield ev
    elif event in ("idle_timeout", "tls_handshake_failed", "bad_request"):
        activity = 3 if event == "idle_timeout" else 4
        ev = _network(ctx, activity, time_ms, record)
        ev["dst_endpoint"] = ctx.proxy_endpoint()
        ev["message"] = event.replace("_", " ")
        ev["severity_id"] = 2 if event != "idle_timeout" else 1
        ev["severity"] = _SEVERITY[ev["severity_id"]]
        _status(ev, False, str(record.get("error") or event))
        if event == "idle_timeout":
            ev["unmapped"] = _unmapped(record, "idle_timeout")
        yield ev
    elif event == "listening":
        digest = record.get("digest")
        yield _config(ctx, time_ms, True, f"Policy loaded [policy_hash:{digest}]", 1, 2,
                      _unmapped(record, "digest", "mode"))  # fmt: skip
        ev = _network(ctx, 7, time_ms, {})
        ev["dst_endpoint"] = ctx.proxy_endpoint()
        ev["message"] = f"127.0.0.1:{record.get('port', ctx.listen_port)}"
        _status(ev, True)
        yield ev
    elif event == "reload":
        if record.get("ok"):
            changes = record.get("changes") or []
            unmapped = _unmapped(record, "digest", "old_digest", "changes", "static_changed", "needs_restart")
            yield _config(ctx, time_ms, True, f"Policy reloaded successfully [policy_hash:{record.get('digest')}"
                          f" changes:{len(changes)}]", 1, 2, unmapped)  # fmt: skip
        else:
            error = record.get("error")
            detail = "; ".join(error) if isinstance(error, list) else str(error)
            yield _config(ctx, time_ms, False, "Policy reload failed, keeping the last good policy", 3, 99,
                          _unmapped(record, "kept_digest"), detail[:2000])  # fmt: skip
    elif event == "reloaded":  # the daemon's definitions (SIGHUP / `gateway reload`)
        what = {k: record.get(k) or [] for k in ("added", "removed", "changed")}
        counts = " ".join(f"{k}:{len(v)}" for k, v in what.items())
        yield _config(ctx, time_ms, True, f"Sandbox definitions reloaded [{counts}]", 1, 2,
                      _unmapped(record, "added", "removed", "changed", "restart_needed_for"))  # fmt: skip
    elif event == "reload_failed":
        yield _config(ctx, time_ms, False, "Sandbox definitions reload failed, keeping the running set", 3, 99,
                      _unmapped(record, "kept"), str(record.get("error"))[:2000])  # fmt: skip
    elif event in ("process_start", "process_exit"):
        start = event == "process_start"
        activity = 1 if start else 2
        ev = ctx.base(1007, "Process Activity", 1, "System Activity", activity, "Launch" if start else "Terminate",
                      1, time_ms, _HOST_PROFILES)  # fmt: skip
        command = record.get("command") or []
        proc = _process(command[0] if command else None, record.get("pid"))
        if command:
            proc["cmd_line"] = " ".join(str(c) for c in command)
        ev["process"] = proc
        # the actor: the supervisor that started (or saw the end of) the sandboxed command
        ev["actor"] = {"process": _process(record.get("supervisor") or "clawfleet-supervisor",
                                           record.get("supervisor_pid"))}  # fmt: skip
        code = record.get("exit_code")
        if start:
            ev["launch_type_id"], ev["launch_type"] = 1, "Spawn"
            ev["message"] = f"Process started: pid={record.get('pid')}"
            _status(ev, True)
        else:
            if isinstance(code, int):
                ev["exit_code"] = code
            ev["message"] = f"Process exited with code {code if code is not None else 'unknown'}"
            _status(ev, code in (0, None))
        ev.update(action_id=1, action=_ACTION[1], disposition_id=1, disposition=_DISPOSITION[1])
        yield ev


class OcsfLog:
    """The OCSF JSON-lines file of one gateway (``ocsf_log``): a :class:`~.config.DecisionLog` observer."""

    def __init__(self, path: str | int, ctx: OcsfContext) -> None:
        """``path``: the file, or a descriptor open on it for appending (a privsep parser's, handed over by the
        daemon like its decision log: the parser opens no file)."""
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.ctx = ctx
        if isinstance(path, int):
            fd = path
        else:
            # as the decision log: never follow a link or block on a FIFO planted where the file goes
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o640)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{path}: OCSF log is not a regular file")
        os.set_blocking(fd, True)
        self._fh: TextIO = os.fdopen(fd, "a", buffering=1 << 16, encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any], time_ms: int, flush: bool) -> None:
        lines = "".join(self._dumps(ev) + "\n" for ev in events(self.ctx, record, time_ms))
        if not lines:
            return
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(lines)
            if flush:
                self._fh.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
