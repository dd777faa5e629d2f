"""A sandbox and its gateway as two processes, so that a sandbox outlives a gateway restart.

The sandbox side (:func:`run_attached_sandbox`: ``clawfleet gateway sandbox --config DAEMON NAME``, the
``clawfleet-sandbox@NAME`` unit, or a child of the daemon: ``python -m clawfleet.supervisor run-sandbox``) runs
the supervisor and the sandboxed command and publishes the supervisor's pid in ``RUNTIME/sandboxes/NAME.json``
once the network namespace exists. The daemon's
:class:`AttachedGateway` watches that file and listens inside the namespace (``setns``) whenever the gateway or
the sandbox (re)starts. While no gateway listens, the namespace holds only ``lo`` and nothing on the proxy port:
every connection is refused (fail closed), and traffic resumes when the gateway is back, without touching the
sandbox. The interception CA is kept root-only in the gateway's state directory so that a restarted gateway
presents the CA the running sandbox already trusts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from clawfleet import paths
from clawfleet.atomicfile import write_atomic
from clawfleet.gateway.assembly import assemble
from clawfleet.gateway.ca import SandboxCA
from clawfleet.gateway.config import GatewayConfig, load_gateway_section
from clawfleet.gateway.metrics import GatewayMetrics
from clawfleet.gateway.privsep import Parser, start_parser
from clawfleet.policy import load_file, static_digest
from clawfleet.sandbox.definition import SandboxDefinition, load_definition

__all__ = ["METRICS_SUBDIR", "AttachedGateway", "RuntimePaths", "gateway_config_for", "read_json",
           "run_attached_sandbox", "sandbox_alive"]  # fmt: skip

DEFAULT_RUNTIME_DIR = paths.RUNTIME_DIR
_PARSER_RESTART_DELAY = 1.0  # seconds between a sandbox's parser dying and its replacement (privsep)
_PARSER_READY_TIMEOUT = 120.0  # seconds a new parser may take to drop and accept before it is stopped, tried again
#: seconds a sandbox waits for its gateway to serve its namespace before it gives up without running its command;
#: 50 sandboxes starting at once on a loaded 2-core host took 28 s, 68-102 s before the parser forkserver
#: (docs/gateway.md, Scaling)
ATTACH_TIMEOUT = 180.0
METRICS_SUBDIR = "gateway-metrics"  # under the runtime dir: the parsers' metrics files, one directory per sandbox
EX_TEMPFAIL = 75  # the gateway is not up yet: systemd's Restart= tries again


@dataclasses.dataclass(frozen=True)
class RuntimePaths:
    runtime_dir: str
    name: str

    @property
    def bundle_dir(self) -> str:  # mounted read-only into the sandbox
        return os.path.join(self.runtime_dir, "gateway", self.name)

    @property
    def ca_bundle(self) -> str:
        return os.path.join(self.bundle_dir, "ca-bundle.pem")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.runtime_dir, "sandboxes", f"{self.name}.json")

    @property
    def parser_metrics(self) -> str:  # the privsep parser's multiprocess metrics (clawfleet.gateway.metrics)
        return os.path.join(self.runtime_dir, METRICS_SUBDIR, self.name)

    @property
    def attached(self) -> str:
        return os.path.join(self.runtime_dir, "sandboxes", f"{self.name}.attached")


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def sandbox_alive(record: dict[str, Any] | None) -> int | None:
    """The supervisor pid of a published sandbox if that process still holds the recorded namespace (pid reuse
    cannot make the gateway listen in some other process's namespace)."""
    if not record or not isinstance(record.get("pid"), int):
        return None
    pid = record["pid"]
    inode = _netns_inode(pid)
    return pid if inode is not None and inode == record.get("netns") else None


def gateway_config_for(d: SandboxDefinition, state_dir: str, ocsf_logs: bool = False) -> GatewayConfig:
    """The gateway settings of one sandbox definition (its ``gateway:`` section, see docs/gateway.md);
    ``ocsf_logs`` (the daemon config's): OCSF lines in ``state_dir/NAME.ocsf.jsonl`` unless the section names a
    file."""
    section = dict(d.gateway)
    section.setdefault("policy", d.policy)
    section.setdefault("mode", d.mode)
    section.setdefault("sandbox", d.name)
    section.setdefault("log", os.path.join(state_dir, f"{d.name}.decisions.jsonl"))
    if ocsf_logs:
        section.setdefault("ocsf_log", os.path.join(state_dir, f"{d.name}.ocsf.jsonl"))
    if d.secrets:
        section["secrets"] = dict(d.secrets)
    return load_gateway_section(section, d.base)


class AttachedGateway:
    """The gateway of one defined sandbox inside the daemon: follows the sandbox's published namespace."""

    def __init__(self, d: SandboxDefinition, state_dir: str, runtime_dir: str, *, ocsf_logs: bool = False,
                 metrics: GatewayMetrics | None = None,
                 parser_user: tuple[int, int] | None = None) -> None:  # fmt: skip
        """``parser_user``: (uid, gid) of an unprivileged process that serves this sandbox's traffic
        (:mod:`clawfleet.gateway.privsep`); None: this process serves it."""
        self.name = d.name
        self.parser_user = parser_user
        self.parser: Parser | None = None
        self.metrics = metrics
        self.paths = RuntimePaths(runtime_dir, self.name)
        self.config = gateway_config_for(d, state_dir, ocsf_logs)
        self._command = [str(c) for c in d.command]
        # The CA key is kept (root only) so that a restarted gateway presents the CA the sandbox already trusts.
        ca = SandboxCA.persistent(os.path.join(state_dir, "ca", f"{self.name}.pem"), self.name)
        self.parts = assemble(self.config, ca=ca, metrics=metrics)
        self.log, self.holder, self.ca, self.pins, self.gateway = (self.parts.log, self.parts.holder, self.parts.ca,
                                                                   self.parts.pins, self.parts.gateway)  # fmt: skip
        os.makedirs(self.paths.bundle_dir, mode=0o755, exist_ok=True)
        os.chmod(self.paths.bundle_dir, 0o755)  # noqa: S103 - the sandbox reads the bundle; the CA key is not here
        os.makedirs(os.path.dirname(self.paths.pidfile), mode=0o755, exist_ok=True)
        write_atomic(self.paths.ca_bundle, self.ca.bundle_text(extra_ca_file=self.config.extra_ca_file), 0o644)
        self.attached_pid: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._born = time.time()
        self._running: dict[str, Any] | None = None  # the published record of the sandbox seen running

    async def run(self, interval: float = 0.2) -> None:
        watch = asyncio.ensure_future(self.holder.watch(self.config.reload_interval))
        minting = self.gateway.minting
        if minting is not None:  # minted values reach the parser with the other secrets (parser.update below)
            mint_task = asyncio.ensure_future(minting.run(self.gateway.secrets))
            watch.add_done_callback(lambda _t: mint_task.cancel())
        try:
            while True:
                record = read_json(self.paths.pidfile)
                pid = sandbox_alive(record)
                self._process_events(record if pid else None)
                if self.parser is not None and not self.parser.alive():
                    status = await self.parser.reported_status()
                    self.log.write({"event": "parser_exited", "netns_pid": self.attached_pid, "status": status})
                    await self._detach()  # listened again below, with a new parser
                    # one that dies at once (a bad setup) is not restarted in a loop: offline meanwhile
                    await asyncio.sleep(_PARSER_RESTART_DELAY)
                    continue
                if self.parser is not None:
                    self.parser.update(self.holder, self.gateway.secrets)
                if pid != self.attached_pid:
                    await self._detach()
                    if pid is not None:
                        await self._attach(pid)
                await asyncio.sleep(interval)
        finally:
            watch.cancel()
            await self._detach()
            await self.parts.aclose()

    def _process_events(self, record: dict[str, Any] | None) -> None:
        """Process events for the sandbox's supervisor process: a launch when a sandbox started after this gateway
        (one that a restarted gateway adopts was not launched now), an exit when it is gone. The sandbox is not
        this process's child, so its exit code is not known here (``sandbox status`` has it when the daemon
        launched it)."""
        seen = self._running
        if seen is not None and (record is None or record.get("pid") != seen.get("pid")):
            self._running = None
            self.log.write({"event": "process_exit", "pid": seen.get("pid"), "command": self._command,
                            "exit_code": None})  # fmt: skip
        if record is not None and self._running is None:
            self._running = record
            started = record.get("started")
            if isinstance(started, (int, float)) and started >= self._born - 1:
                self.log.write({"event": "process_start", "pid": record.get("pid"), "command": self._command})

    async def _attach(self, pid: int) -> None:
        from clawfleet.gateway.ident import Identifier
        from clawfleet.gateway.listen import listen_in_netns

        try:
            sock = await asyncio.get_running_loop().run_in_executor(None, listen_in_netns, pid,
                                                                    self.config.listen_port)  # fmt: skip
        except OSError as exc:
            self.log.write({"event": "attach_failed", "netns_pid": pid, "error": str(exc)})
            return
        identifier = Identifier(netns_pid=pid, pins=self.pins)
        if self.parser_user is not None:
            try:
                metrics_dir = self._parser_metrics_dir(self.parser_user) if self.metrics is not None else None
                parser = await start_parser(
                    config=self.config, ca_pem=self.ca.pem(), holder=self.holder, secrets=self.gateway.secrets,
                    router_identity=self.gateway.router_identity, listener=sock, identifier=identifier,
                    user=self.parser_user, metrics_dir=metrics_dir)  # fmt: skip
            except OSError as exc:
                identifier.close()
                self.log.write({"event": "attach_failed", "netns_pid": pid, "error": f"parser: {exc}"})
                return
            # NAME.attached tells the sandbox that its traffic is served under its policy, so it is written once the
            # parser accepts as its user, not when it was started: the sandbox runs nothing before (issue 16).
            self.parser = parser  # from here a cancelled run() stops it (_detach)
            try:
                await parser.wait_ready(_PARSER_READY_TIMEOUT)
            except OSError as exc:
                self.parser = None
                await parser.stop()
                self.log.write({"event": "attach_failed", "netns_pid": pid, "error": f"parser: {exc}"})
                return
            # the run loop was not updating it during the wait: a policy or secret that changed meanwhile goes
            # to the parser before the sandbox is let go
            parser.update(self.holder, self.gateway.secrets)
        else:
            self.gateway.identify = identifier.identify_async
            self._server = await self.gateway.serve_socket(sock)
        self.attached_pid = pid
        self.log.write({"event": "listening", "netns_pid": pid, "port": self.config.listen_port,
                        "digest": self.holder.digest, "effective_digest": self.holder.effective_digest,
                        "mode": self.config.mode})  # fmt: skip
        write_atomic(self.paths.attached, json.dumps({"pid": pid, "gateway_pid": os.getpid()}).encode(), 0o644)

    def _parser_metrics_dir(self, user: tuple[int, int]) -> str | None:
        """The directory where this sandbox's parser keeps its metrics files; the daemon reads them at each scrape
        (GatewayMetrics.follow). root:GATEWAY_GROUP 0770: the parser (group) creates its files after dropping
        privileges, no other local user can, and the daemon removes a dead parser's live gauge as the directory's
        owner (no CAP_DAC_OVERRIDE). The group change is CAP_CHOWN's, in the unit's set for this. None (the parser
        runs without metrics, logged) when it cannot be made."""
        assert self.metrics is not None
        where = self.paths.parser_metrics
        try:
            os.makedirs(os.path.dirname(where), mode=0o755, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(where, 0o700)
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchown(fd, 0, user[1])
                os.fchmod(fd, 0o770)
            finally:
                os.close(fd)
        except OSError as exc:
            self.log.write({"event": "metrics_unavailable", "error": str(exc)})
            return None
        self.metrics.follow(self.name, where)
        return where

    async def _detach(self) -> None:
        if self._server is None and self.parser is None:
            return
        if self.parser is not None:
            parser, self.parser = self.parser, None
            await parser.stop()
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(ValueError):
                self.gateway.servers.remove(server)
            server.close()
        self.attached_pid = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths.attached)


def _wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


class NotAttached(Exception):
    """The gateway did not serve the sandbox's namespace in time: the command is not started."""


def run_attached_sandbox(definition: str, runtime_dir: str = DEFAULT_RUNTIME_DIR, *, bundle_timeout: float = 60.0,
                         attach_timeout: float = ATTACH_TIMEOUT) -> int:  # fmt: skip
    """Sandbox-side entry: run one defined sandbox whose traffic the gateway daemon carries. The command starts
    only once the gateway serves the sandbox's network namespace under its policy (``NAME.attached`` names this
    sandbox's supervisor); after ``attach_timeout`` seconds without it the start is abandoned (nothing in the
    sandbox has run) and the exit status is EX_TEMPFAIL, which the daemon and systemd retry."""
    from clawfleet.gateway.listen import sandbox_env
    from clawfleet.sandbox.launcher import Launcher

    d = load_definition(definition)
    paths = RuntimePaths(runtime_dir, d.name)
    port = int(d.gateway.get("listen_port", GatewayConfig.listen_port))
    if not _wait_for(lambda: os.path.isfile(paths.ca_bundle), bundle_timeout, 0.2):
        print(f"clawfleet sandbox {d.name}: no CA bundle at {paths.ca_bundle} after {bundle_timeout:.0f} s: "
              "is the gateway daemon (clawfleet-gateway.service) running?", file=sys.stderr)  # fmt: skip
        return EX_TEMPFAIL
    # Before to_spec reads the policy again: if the file changes in between, the record names the older static
    # sections and `policy status` reports a pending restart, never a false "in sync".
    started_static = static_digest(load_file(d.policy))
    spec = d.to_spec(dict(os.environ))
    spec = dataclasses.replace(spec, read_only=(*spec.read_only, paths.bundle_dir),
                               env={**dict(spec.env), **sandbox_env(port, paths.ca_bundle)})  # fmt: skip

    published: list[int] = []
    not_attached: list[NotAttached] = []

    def publish(pid: int) -> None:
        published.append(pid)
        record = {"pid": pid, "netns": _netns_inode(pid), "started": time.time(), "definition": definition,
                  "static_digest": started_static}  # fmt: skip
        write_atomic(paths.pidfile, json.dumps(record).encode(), 0o644)
        # No command before its gateway serves: the namespace has only lo and nothing would listen on the proxy
        # port (every connection refused, nothing leaves), but a command started then would have its first
        # requests fail. An exception here makes the launcher kill the sandbox before anything in it ran.
        if not _wait_for(lambda: (read_json(paths.attached) or {}).get("pid") == pid, attach_timeout):
            why = (f"the gateway has not attached after {attach_timeout:.0f} s: the command was not started "
                   "(is the gateway daemon running? see its decision log's attach_failed)")  # fmt: skip
            not_attached.append(NotAttached(why))
            raise not_attached[-1]

    os.makedirs(os.path.dirname(paths.pidfile), mode=0o755, exist_ok=True)
    launcher = Launcher(spec, on_netns_ready=publish)
    try:
        code = launcher.run()
    finally:
        if published and (read_json(paths.pidfile) or {}).get("pid") == published[-1]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.pidfile)
    if launcher.report.error:
        print(f"clawfleet sandbox {d.name}: {launcher.report.error}", file=sys.stderr)
    if not_attached:
        return EX_TEMPFAIL
    return code
