"""``clawfleet gateway serve --config FILE``: the daemon that runs the sandboxes of a daemon config
(:mod:`.config`) with their gateways.

Each sandbox runs in a process of its own (``clawfleet gateway sandbox --config DAEMON NAME``: a systemd unit, or a
child of the daemon when ``launch_sandboxes`` is true, restarted when it fails) that outlives the daemon; the
daemon attaches a gateway to it (:mod:`.attach`). Output goes to ``state_dir/NAME.out``, decisions to
``state_dir/NAME.decisions.jsonl``. The control socket is served by :mod:`.control_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from clawfleet.gateway.metrics import GatewayMetrics, serve_metrics
from clawfleet.gateway.ocsf import OcsfContext, OcsfLog
from clawfleet.gateway.privsep import parser_user, start_forkserver
from clawfleet.policy import PolicyError, static_digest
from clawfleet.sandbox.definition import SandboxDefinition, load_definition

from .attach import METRICS_SUBDIR, AttachedGateway, read_json, sandbox_alive
from .config import load_daemon_config
from .control_server import handle

__all__ = ["Daemon", "Managed"]

_DAEMON_WIDE = "state_dir/control_socket/runtime_dir/launch_sandboxes/ocsf_logs/metrics_listen/gateway_user"


@dataclass
class Managed:
    name: str
    definition: str
    out: str
    gateway: AttachedGateway | None = None
    proc: subprocess.Popen[bytes] | None = None  # when the daemon launches its sandboxes
    stopped: bool = False  # stopped on request: not restarted
    restarts: int = 0
    task: asyncio.Future[None] | None = None  # the gateway's run() in the daemon's loop

    def record(self) -> dict[str, Any] | None:
        return read_json(self.gateway.paths.pidfile) if self.gateway else None

    def info(self) -> dict[str, Any]:
        record = self.record()
        pid = sandbox_alive(record)
        exit_code = self.proc.returncode if self.proc is not None and self.proc.poll() is not None else None
        gw = self.gateway
        return {"name": self.name, "state": "running" if pid else "exited", "pid": pid,
                "started": record.get("started") if pid and record else None,
                "uptime_s": round(time.time() - record["started"], 1) if pid and record else None,
                "exit_code": exit_code, "restarts": self.restarts, "definition": self.definition,
                "output": self.out, "decisions": gw.config.log if gw else None,
                "gateway_attached": bool(pid and gw and gw.attached_pid == pid),
                "policy_digest": gw.holder.digest if pid and gw else None,  # the base policy's (the file's)
                "effective_policy_digest": gw.holder.effective_digest if pid and gw else None,  # + provider rules
                **self._static(record if pid else None)}  # fmt: skip

    def _static(self, record: dict[str, Any] | None) -> dict[str, Any]:
        """The static sections (filesystem, Landlock, process) the running sandbox started with, against the
        policy the gateway holds now: ``restart_pending`` is true when only a restart can apply the difference."""
        started = record.get("static_digest") if record else None
        current = static_digest(self.gateway.holder.base) if self.gateway and record else None
        return {"static_digest": started, "restart_pending": bool(started and current and started != current)}


class Daemon:
    def __init__(self, config_path: str) -> None:
        """Raises ValueError (DefinitionError, positioned) or OSError."""
        cfg = load_daemon_config(config_path)
        self.config_path = cfg.path
        self.state_dir = cfg.state_dir
        self.socket_path = cfg.control_socket
        self.runtime_dir = cfg.runtime_dir
        self.launch = cfg.launch_sandboxes
        self.ocsf_logs = cfg.ocsf_logs
        self.metrics_listen = cfg.metrics_listen
        # one registry for every sandbox's gateway in this process (label `sandbox`)
        self.metrics = GatewayMetrics() if cfg.metrics_listen else None
        self.ocsf: OcsfLog | None = None  # the daemon's own config changes (state_dir/daemon.ocsf.jsonl), in serve()
        # (uid, gid) the sandboxes' proxies run as (clawfleet.gateway.privsep); None: in this process
        self.gateway_user = cfg.gateway_user  # daemon-wide: a reload that changes it asks for a restart
        self.parser_user = parser_user(cfg.gateway_user) if cfg.gateway_user else None
        self.restart_delay = 5.0
        self.sandboxes: dict[str, Managed] = {}
        self.definitions: dict[str, SandboxDefinition] = {}
        # One reload at a time: SIGHUP and the control socket's `reload` may arrive together, and a reload awaits
        # between taking a sandbox's gateway down and making the new one.
        self._reloading = asyncio.Lock()
        for path in cfg.sandboxes:
            d = load_definition(path)
            if d.name in self.sandboxes:
                raise ValueError(f"duplicate sandbox name {d.name!r}")
            self.definitions[d.name] = d
            self.sandboxes[d.name] = Managed(d.name, path, os.path.join(self.state_dir, f"{d.name}.out"))

    def start(self, m: Managed) -> None:
        """Launch the sandbox process unless one is already running (a restarted daemon adopts it)."""
        if sandbox_alive(m.record()):
            return
        out = open(m.out, "ab")  # noqa: SIM115 - handed to the child
        m.proc = subprocess.Popen(
            [sys.executable, "-m", "clawfleet.supervisor", "run-sandbox", m.definition, self.runtime_dir],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        out.close()
        m.stopped = False

    def stop(self, m: Managed, timeout: float = 10.0) -> None:
        """SIGTERM to the sandbox's supervisor (it forwards it to the command), SIGKILL after ``timeout``."""
        m.stopped = True
        pid = sandbox_alive(m.record()) or (m.proc.pid if m.proc is not None and m.proc.poll() is None else None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _exists(pid) and time.monotonic() < deadline:
            if m.proc is not None:
                m.proc.poll()
            time.sleep(0.05)
        if _exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if m.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout)

    async def _supervise(self) -> None:
        """Restart launched sandboxes that failed (non-zero exit), after ``restart_delay``."""
        while True:
            await asyncio.sleep(self.restart_delay)
            for m in self.sandboxes.values():
                if m.stopped or m.proc is None or m.proc.poll() in (None, 0) or sandbox_alive(m.record()):
                    continue
                m.restarts += 1
                self.start(m)

    def _run_gateway(self, m: Managed, d: SandboxDefinition) -> None:
        m.gateway = AttachedGateway(d, self.state_dir, self.runtime_dir, ocsf_logs=self.ocsf_logs,
                                    metrics=self.metrics, parser_user=self.parser_user)  # fmt: skip
        m.task = asyncio.ensure_future(m.gateway.run())

    async def _end_gateway(self, m: Managed) -> None:
        """Stop one sandbox's gateway (its listener closes; the others keep theirs)."""
        if m.task is not None:
            m.task.cancel()
            await asyncio.gather(m.task, return_exceptions=True)
            m.task = None

    async def reload(self) -> dict[str, Any]:
        """SIGHUP: read the configuration and definitions again and apply the difference sandbox by sandbox.

        Only a sandbox whose definition was added, removed or changed has its gateway (re)made; every other sandbox
        keeps its gateway, its connections and its listener, so editing one definition no longer interrupts every
        sandbox on the host. Nothing changes when any file is invalid: the error is logged with its position and
        the running set stays. Daemon-wide settings (state dir, sockets, launch mode) need a restart."""
        async with self._reloading:
            return await self._reload()

    async def _reload(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            cfg = load_daemon_config(self.config_path)
            new: dict[str, SandboxDefinition] = {}
            for path in cfg.sandboxes:
                d = load_definition(path)
                d.check()  # what the sandbox would refuse at start (keys, policy, environment): refused now
                if d.name in new:
                    raise ValueError(f"duplicate sandbox name {d.name!r}")
                new[d.name] = d
        except (ValueError, OSError, PolicyError) as exc:
            outcome: dict[str, Any] = {"event": "reload_failed", "error": str(exc), "kept": sorted(self.definitions)}
            print(json.dumps(outcome), file=sys.stderr, flush=True)
            self._ocsf(outcome)
            return outcome
        daemon_wide = (cfg.state_dir, cfg.control_socket, cfg.runtime_dir, cfg.launch_sandboxes, cfg.ocsf_logs,
                       cfg.metrics_listen, cfg.gateway_user)  # fmt: skip
        needs_restart = daemon_wide != (self.state_dir, self.socket_path, self.runtime_dir, self.launch,
                                        self.ocsf_logs, self.metrics_listen, self.gateway_user)  # fmt: skip
        added = sorted(set(new) - set(self.definitions))
        removed = sorted(set(self.definitions) - set(new))
        changed = sorted(n for n in set(new) & set(self.definitions) if new[n] != self.definitions[n])
        for name in removed + changed:
            m = self.sandboxes[name]
            if self.launch:
                await loop.run_in_executor(None, self.stop, m)
            await self._end_gateway(m)
            if name in removed:
                del self.sandboxes[name], self.definitions[name]
        for name in added + changed:
            d = new[name]
            m = self.sandboxes.get(name) or Managed(name, d.path, os.path.join(self.state_dir, f"{name}.out"))
            m.definition = d.path
            self.sandboxes[name], self.definitions[name] = m, d
            self._run_gateway(m, d)
            if self.launch:
                self.start(m)
        outcome = {"event": "reloaded", "added": added, "removed": removed, "changed": changed,
                   "unchanged": sorted(set(new) - set(added) - set(changed)),
                   "restart_needed_for": _DAEMON_WIDE if needs_restart else None}  # fmt: skip
        print(json.dumps(outcome), file=sys.stderr, flush=True)
        self._ocsf(outcome)
        return outcome

    def _ocsf(self, outcome: dict[str, Any]) -> None:
        if self.ocsf is not None:
            self.ocsf(outcome, int(time.time() * 1000), True)

    async def serve(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for name, d in self.definitions.items():
            self._run_gateway(self.sandboxes[name], d)
        tasks: list[asyncio.Future[None]] = []
        old = os.umask(0o077)
        try:
            server = await asyncio.start_unix_server(functools.partial(handle, self), path=self.socket_path)
        finally:
            os.umask(old)
        # the parsers' metrics files of an earlier run: counters start again with the daemon, as its own do
        shutil.rmtree(os.path.join(self.runtime_dir, METRICS_SUBDIR), ignore_errors=True)
        if self.ocsf_logs:
            self.ocsf = OcsfLog(os.path.join(self.state_dir, "daemon.ocsf.jsonl"), OcsfContext(None))
        metrics_server = None
        if self.metrics is not None and self.metrics_listen:
            metrics_server = await serve_metrics(self.metrics, self.metrics_listen)
        if self.parser_user is not None:
            start_forkserver()  # the parsers' imports, once, while the sandboxes start
        if self.launch:
            for m in self.sandboxes.values():
                self.start(m)
            tasks.append(asyncio.ensure_future(self._supervise()))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Future[dict[str, Any]]] = set()

        def on_hup() -> None:
            t = asyncio.ensure_future(self.reload())
            reloads.add(t)
            t.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        async with server:
            await stop.wait()
        if metrics_server is not None:
            metrics_server.close()
            if self.metrics_listen and self.metrics_listen.startswith("unix:"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.metrics_listen[5:])
        if self.launch:
            for m in self.sandboxes.values():
                await loop.run_in_executor(None, self.stop, m)
        # Sandboxes run by systemd keep running, offline until the gateway is back (fail closed).
        tasks += [m.task for m in self.sandboxes.values() if m.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        if self.ocsf is not None:
            self.ocsf.close()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
