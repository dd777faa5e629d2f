"""Prometheus metrics of the gateways of one process (the daemon's, or one ``sandbox run``), label ``sandbox``.

Counted from what the gateway already produces, so the proxy's hot path gains almost nothing:

- decisions and reload results: a :class:`~.config.DecisionLog` observer (every record the log is given);
- latency: one histogram observation per forwarded request (``Gateway._forward``);
- bytes: the kernel's own count for each sandbox connection (``TCP_INFO`` ``tcpi_bytes_received`` /
  ``tcpi_bytes_acked``), read once when the connection ends: L4 relays, TLS tunnels and plain HTTP alike, with
  no counting per chunk;
- active connections, policy digest and generation: read from the live gateways when scraped.

Under privilege separation (``gateway_user``, :mod:`.privsep`) a sandbox's proxy runs in a parser process of its
own: there the same counters are kept in ``prometheus_client``'s multiprocess mode (memory-mapped files in a
directory of that sandbox, ``PROMETHEUS_MULTIPROC_DIR`` in the parser's environment, see :meth:`GatewayMetrics.follow`)
and the daemon adds them to its own at scrape time; the active-connections gauge is ``livesum`` (a dead parser's
file is removed, :func:`parser_stopped`), counters of a replaced parser keep counting in the total.

Served by :func:`serve_metrics` on a loopback TCP port or a root-only unix socket, never on the sandbox side
(docs/gateway.md "Metrics"). ``prometheus_client`` is already the router's (a runtime dependency): its text
format and registry are the reference implementation, and it is pure Python with no further dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import h11
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from clawfleet.policy.approvals import approved_ids, pending_entry, read_log

if TYPE_CHECKING:
    from .config import DecisionObserver
    from .proxy import Gateway
    from .reload import PolicyHolder

__all__ = ["MULTIPROC_ENV", "GatewayMetrics", "MetricsError", "parse_listen", "parser_stopped", "serve_metrics",
           "tcp_bytes"]  # fmt: skip

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_REQUEST_KINDS = frozenset({"http", "tunnel_request", "tls_request"})
# struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, 24 u32, then u64 pacing_rate, max_pacing_rate,
# bytes_acked (offset 120, since 4.1), bytes_received (offset 128, since 4.1)
_TCP_INFO_LEN = 136
_BYTES_AT = 120
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported (the parser's environment)
_MAX_PENDING = 100_000  # distinct pending ids remembered per sandbox (a bound on memory, far above any real list)


class MetricsError(ValueError):
    pass


def tcp_bytes(sock: Any) -> tuple[int, int] | None:
    """``(bytes received from the peer, bytes sent to it and acknowledged)`` of a TCP socket, from the kernel."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, ValueError, AttributeError):
        return None
    if len(info) < _TCP_INFO_LEN:
        return None  # a kernel before 4.1: no byte counts
    acked, received = struct.unpack_from("=QQ", info, _BYTES_AT)
    return received, acked


class _Pending:
    """The ids ``clawfleet policy pending`` lists for one decision log, kept up to date from the records as they are
    written (seeded once from the file in a thread, so a large log never holds up the gateway's loop); approvals
    are read from the log's ``.approved`` ledger when it changed."""

    def __init__(self, sandbox: str, log: str | None) -> None:
        self.sandbox, self.log = sandbox, log
        self.ids: set[str] = set()
        self._lock = threading.Lock()  # the seeding thread adds while the loop adds and counts
        self._approved: set[str] = set()
        self._approved_sig: tuple[int, int] | None = None
        self._tailing = self._seeded = False
        self._tail_lock = threading.Lock()
        self._offset = 0
        if log is not None and os.path.exists(log):
            threading.Thread(target=self._seed, name=f"pending-{sandbox}", daemon=True).start()

    def _seed(self) -> None:
        assert self.log is not None
        try:
            for rec in read_log(self.log):
                self.add(rec)
        except OSError:
            pass

    def add(self, rec: dict[str, Any]) -> None:
        entry = pending_entry(rec)
        if entry is not None:
            with self._lock:
                if len(self.ids) < _MAX_PENDING:
                    self.ids.add(entry[1])

    def follow_file(self) -> None:
        """From now on the denials are written by another process (a privsep parser): read what the file gains
        instead, at each count (the whole file once, in a thread)."""
        if self.log is None or self._tailing:
            return
        self._tailing = True
        threading.Thread(target=self._tail, name=f"pending-{self.sandbox}", daemon=True).start()

    def _tail(self) -> None:
        assert self.log is not None
        with self._tail_lock:
            try:
                with open(self.log, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < self._offset:
                        self._offset = 0  # truncated or replaced: read it again (ids are a set)
                    f.seek(self._offset)
                    data = f.read(size - self._offset)
            except OSError:
                return
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            self._offset += end
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self.add(rec)
        self._seeded = True

    def count(self) -> int:
        assert self.log is not None
        if self._tailing and self._seeded:
            self._tail()  # what was appended since the last scrape: small
        try:
            st = os.stat(self.log + ".approved")
            sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            sig = None
        if sig != self._approved_sig:
            self._approved, self._approved_sig = approved_ids(self.log), sig
        with self._lock:
            return len(self.ids - self._approved)


class _Live(Collector):
    """Gauges read from the live gateways at scrape time."""

    def __init__(self) -> None:
        self.gateways: dict[str, tuple[Gateway, PolicyHolder]] = {}
        self.pending: dict[str, _Pending] = {}

    def collect(self) -> Iterator[Any]:
        active = GaugeMetricFamily("clawfleet_gateway_active_connections", "Client connections open now",
                                   labels=["sandbox"])  # fmt: skip
        generation = GaugeMetricFamily("clawfleet_gateway_policy_generation",
                                       "Policies applied since the gateway started (0: the one it started with)",
                                       labels=["sandbox"])  # fmt: skip
        info = InfoMetricFamily("clawfleet_gateway_policy", "The policy the gateway applies now",
                                labels=["sandbox"])  # fmt: skip
        pending = GaugeMetricFamily("clawfleet_gateway_approvals_pending",
                                    "Denials a policy rule could approve, not approved yet (clawfleet policy pending); "
                                    "for a gateway with a decision log file", labels=["sandbox"])  # fmt: skip
        for name, (gateway, holder) in sorted(self.gateways.items()):
            active.add_metric([name], gateway.active)
            generation.add_metric([name], holder.generation)
            info.add_metric([name], {"digest": holder.digest, "mode": gateway.config.mode})
            waiting = self.pending.get(name)
            if waiting is not None and waiting.log is not None:
                pending.add_metric([name], waiting.count())
        yield active
        yield generation
        yield info
        yield pending

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected anew on every scrape; nothing to check at registration


class _Merged(Collector):
    """This process's metrics plus those its sandboxes' parser processes keep in multiprocess files, one family
    per name (samples with the same labels summed: the daemon's zero ``active`` and its parser's count, say)."""

    def __init__(self, own: CollectorRegistry) -> None:
        self.own = own
        self.parsers: dict[str, str] = {}  # sandbox -> its parser's multiprocess directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}

        def merge(m: Metric, only: str | None) -> None:
            fam = families.get(m.name)
            if fam is None:
                fam = families[m.name] = Metric(m.name, m.documentation, m.type, m.unit)
                sums[m.name] = {}
            at = sums[m.name]
            for s in m.samples:
                # a parser's files count for its own sandbox only: one cannot write another sandbox's series
                if only is not None and s.labels.get("sandbox") != only:
                    continue
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in at:
                    old = fam.samples[at[key]]
                    fam.samples[at[key]] = old._replace(value=old.value + s.value)
                else:
                    at[key] = len(fam.samples)
                    fam.samples.append(s)

        for m in self.own.collect():
            merge(m, None)
        for sandbox, directory in sorted(self.parsers.items()):
            # file by file (the library merges a whole directory at once): one file that does not parse, planted or
            # half-written, is skipped alone; per-file sums add up to the directory's (counters, histogram buckets,
            # livesum gauges)
            for path in sorted(glob.glob(os.path.join(directory, "*.db"))):
                try:
                    found = MultiProcessCollector.merge([path], accumulate=True)
                except Exception:  # noqa: S112 - written by the parser: whatever fails to parse is skipped
                    continue
                for m in found:
                    merge(m, sandbox)
        yield from families.values()

    def describe(self) -> Iterator[Any]:
        return iter(())


def parser_stopped(pid: int, directory: str) -> None:
    """A parser process ended: its live gauges (active connections) go; its counters stay in the totals."""
    with contextlib.suppress(OSError):
        mark_process_dead(pid, directory)


class GatewayMetrics:
    """One registry for all the gateways of a process; each gateway registers itself (:meth:`add`).

    ``parser``: this is a privsep parser process, which counts into multiprocess files (``MULTIPROC_ENV`` and
    prometheus_client's value class set by :func:`.privsep.parser_child` first) for the daemon to serve; it has no
    reload and no registry of its own to serve, and it reports its open connections through :meth:`set_active`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, parser: bool = False) -> None:
        self.parser = parser
        self._own = r = CollectorRegistry(auto_describe=True)
        self._merged = _Merged(r)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._merged)
        self.decisions = Counter("clawfleet_gateway_decisions",
                                 "Decisions by sandbox, kind (connect, http, tunnel_request, tls_request), policy rule "
                                 "('-' when none matched), action taken and the policy's decision",
                                 ["sandbox", "kind", "rule", "action", "decision"], registry=r)  # fmt: skip
        self.latency = Histogram("clawfleet_gateway_request_duration_seconds",
                                 "Forwarded requests: time from the request head to the response's last byte",
                                 ["sandbox", "kind"], buckets=_LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.bytes = Counter("clawfleet_gateway_bytes",
                             "Bytes on sandbox connections (from_sandbox: sent by the sandbox; to_sandbox: delivered "
                             "to it), counted by the kernel when a connection ends",
                             ["sandbox", "direction"], registry=r)  # fmt: skip
        self.connections = Counter("clawfleet_gateway_connections", "Client connections ended",
                                   ["sandbox"], registry=r)  # fmt: skip
        self.refused = Counter("clawfleet_gateway_connections_refused",
                               "Connections refused over max_connections", ["sandbox"], registry=r)  # fmt: skip
        self.reloads = Counter("clawfleet_gateway_policy_reloads",
                               "Policy reloads by result (ok: applied; failed: invalid file, last good policy kept)",
                               ["sandbox", "result"], registry=r)  # fmt: skip
        # set by the daemon only (it watches the policy files); mostrecent should a parser ever set it
        self.reload_ok = Gauge("clawfleet_gateway_policy_last_reload_ok",
                               "1 when the last reload applied, 0 when it failed (the last good policy is kept)",
                               ["sandbox"], registry=r, multiprocess_mode="mostrecent")  # fmt: skip
        # a parser's open connections; the daemon's own gateways are read at scrape time (_Live)
        self.active = Gauge("clawfleet_gateway_active_connections", "Client connections open now", ["sandbox"],
                            registry=None, multiprocess_mode="livesum")  # fmt: skip
        self.events = Counter("clawfleet_gateway_events", "Other gateway events (idle_timeout, bad_request, ...)",
                              ["sandbox", "event"], registry=r)  # fmt: skip
        self._live = _Live()
        if not parser:
            r.register(self._live)

    def follow(self, sandbox: str, directory: str) -> None:
        """Serve the counts that ``sandbox``'s parser process keeps in ``directory`` (its multiprocess files)."""
        self._merged.parsers[sandbox] = directory
        waiting = self._live.pending.get(sandbox)
        if waiting is not None:
            waiting.follow_file()  # the parser writes the denials to the decision log now, not this process

    def unfollow(self, sandbox: str) -> None:
        self._merged.parsers.pop(sandbox, None)

    def set_active(self, sandbox: str, count: int) -> None:
        self.active.labels(sandbox).set(count)

    def add(self, sandbox: str, gateway: Gateway, holder: PolicyHolder, log: str | None = None) -> DecisionObserver:
        """Register a gateway (``log``: its decision log file, for the pending approvals); returns the observer its
        decision log feeds."""
        self._live.gateways[sandbox] = (gateway, holder)
        waiting = self._live.pending[sandbox] = _Pending(sandbox, log)
        if not self.parser:
            self.reload_ok.labels(sandbox).set(1)
            # Both results exported at 0 from the start: a counter series that first appears at 1 gives
            # increase()/rate() nothing to compare with, so a dashboard would never see the first reload.
            for result in ("ok", "failed"):
                self.reloads.labels(sandbox, result)

        def observe(record: dict[str, Any], _time_ms: int, _flush: bool) -> None:
            event = record.get("event")
            if event is None and "decision" in record:
                rule = record.get("rule")
                self.decisions.labels(sandbox, str(record.get("kind")), rule if isinstance(rule, str) else "-",
                                      str(record.get("action")), str(record.get("decision"))).inc()  # fmt: skip
                if record.get("action") == "deny" and waiting.log is not None:
                    waiting.add({**record, "sandbox": sandbox})
            elif event == "reload":
                ok = bool(record.get("ok"))
                self.reloads.labels(sandbox, "ok" if ok else "failed").inc()
                self.reload_ok.labels(sandbox).set(1 if ok else 0)
            elif event == "connection_refused":
                self.refused.labels(sandbox).inc(int(record.get("refused") or 1))
            elif isinstance(event, str):
                self.events.labels(sandbox, event).inc()

        return observe

    def remove(self, sandbox: str, gateway: Gateway) -> None:
        if self._live.gateways.get(sandbox, (None,))[0] is gateway:
            del self._live.gateways[sandbox]
            self._live.pending.pop(sandbox, None)

    def request_done(self, sandbox: str, kind: str, seconds: float) -> None:
        if kind in _REQUEST_KINDS:
            self.latency.labels(sandbox, kind).observe(seconds)

    def connection_done(self, sandbox: str, sock: Any) -> None:
        self.connections.labels(sandbox).inc()
        counted = tcp_bytes(sock) if sock is not None else None
        if counted is not None:
            received, acked = counted
            self.bytes.labels(sandbox, "from_sandbox").inc(received)
            self.bytes.labels(sandbox, "to_sandbox").inc(acked)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def parse_listen(value: str) -> tuple[str, Any]:
    """``unix:/PATH`` (a root-only socket) or a loopback ``HOST:PORT`` (127.0.0.0/8 or [::1]); anything else is
    refused: the metrics name sandboxes, rules and digests, and are never offered beyond the host."""
    if not isinstance(value, str) or not value:
        raise MetricsError(f"metrics_listen must be 'unix:/PATH' or a loopback HOST:PORT, not {value!r}")
    if value.startswith("unix:"):
        path = value[5:]
        if not os.path.isabs(path):
            raise MetricsError(f"metrics_listen {value!r}: the socket path must be absolute")
        return "unix", path
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        addr = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise MetricsError(f"metrics_listen {value!r}: expected an IP address and a port (127.0.0.1:9464)") from None
    if not sep or not addr.is_loopback:
        raise MetricsError(f"metrics_listen {value!r}: only a loopback address (127.0.0.0/8, ::1) or a unix socket")
    if not 1 <= number <= 65535:
        raise MetricsError(f"metrics_listen {value!r}: port out of range")
    return "tcp", (str(addr), number)


async def serve_metrics(metrics: GatewayMetrics, listen: str) -> asyncio.base_events.Server:
    """Answer ``GET /metrics`` on ``listen`` (see :func:`parse_listen`); other paths get 404."""
    kind, where = parse_listen(listen)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(8192), 10)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if not isinstance(event, h11.Request):
                    return
                break
            path = event.target.split(b"?", 1)[0]
            if event.method in (b"GET", b"HEAD") and path == b"/metrics":
                status, ctype, body = 200, metrics.content_type.encode(), metrics.render()
            else:
                status, ctype, body = 404, b"text/plain", b"only GET /metrics here\n"
            headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]  # fmt: skip
            out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
            if event.method != b"HEAD":
                out += conn.send(h11.Data(data=body)) or b""
            writer.write(out + (conn.send(h11.EndOfMessage()) or b""))
            await writer.drain()
        except (h11.ProtocolError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    if kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        os.makedirs(os.path.dirname(where) or "/", mode=0o755, exist_ok=True)
        old = os.umask(0o177)  # 0600 from the start: no moment where another user could connect
        try:
            return await asyncio.start_unix_server(handle, path=where)
        finally:
            os.umask(old)
    host, port = where
    return await asyncio.start_server(handle, host=host, port=port, reuse_address=True)
