"""Run one sandbox with its gateway in the same supervisor process (``clawfleet sandbox run``).

The gateway's proxy listens inside the sandbox's network namespace (:func:`clawfleet.gateway.listen.listen_in_netns`)
as soon as the launcher has made it; its asyncio loop runs on a thread of this process, in the host's namespace,
where the upstream sockets are opened. See docs/gateway.md for the wiring::

    from clawfleet.gateway.config import config_from_args
    from clawfleet.supervisor.embedded import run_sandbox
    code, launcher = run_sandbox(spec, config_from_args(policy, gateway_config, mode, gateway_log))
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from clawfleet import paths
from clawfleet.gateway.config import GatewayConfig
from clawfleet.gateway.listen import sandbox_env

if TYPE_CHECKING:
    import asyncio

    from clawfleet.gateway.assembly import AssembledGateway
    from clawfleet.gateway.ident import Identifier
    from clawfleet.policy.model import Policy
    from clawfleet.sandbox.launcher import Launcher
    from clawfleet.sandbox.spec import SandboxSpec

__all__ = ["EmbeddedGateway", "run_sandbox"]

STATE_ROOT = paths.EMBEDDED_GATEWAY_ROOT


class EmbeddedGateway:
    """The gateway for one sandbox: policy holder, CA, asyncio loop thread, netns hook.

    Made in two steps so that `clawfleet sandbox run` can fork the sandbox before the gateway's heavy imports
    (asyncio, h11, cryptography): ``EmbeddedGateway(config)`` only makes the state directory whose CA bundle
    :meth:`prepare` points the sandbox at; :meth:`start` (``Launcher(on_forked=...)``, else the hook) imports and
    assembles the gateway and writes the bundle, always before anything in the sandbox runs.
    """

    def __init__(self, config: GatewayConfig, *, state_root: str = STATE_ROOT,
                 policy: tuple[Policy, os.stat_result] | None = None) -> None:  # fmt: skip
        """``policy``: ``config.policy`` already loaded, with its file's stat (``load_file_and_stat``): the parse
        the sandbox was built from, so the file is not read and parsed a second time (nor a newer one read)."""
        self.config = config
        self._policy = policy
        os.makedirs(state_root, mode=0o755, exist_ok=True)
        self.state_dir = tempfile.mkdtemp(prefix=f"{_safe(config.sandbox)}-", dir=state_root)
        os.chmod(self.state_dir, 0o755)  # noqa: S103 - the sandbox reads the bundle; the CA key is never here
        self.ca_bundle = os.path.join(self.state_dir, "ca-bundle.pem")
        self.parts: AssembledGateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.identifier: Identifier | None = None
        self.argv: tuple[str, ...] = ()
        self.pid: int | None = None

    def start(self, _pid: int | None = None) -> None:
        """Assemble the gateway (an invalid policy raises PolicyError), write the CA bundle, start the loop."""
        if self.parts is not None:
            return
        import asyncio

        from clawfleet.gateway.assembly import assemble

        self.parts = assemble(self.config, policy=self._policy)
        self.log, self.holder, self.ca, self.pins, self.gateway = (self.parts.log, self.parts.holder, self.parts.ca,
                                                                   self.parts.pins, self.parts.gateway)  # fmt: skip
        _write_new(self.ca_bundle, self.ca.bundle_text(extra_ca_file=self.config.extra_ca_file), 0o644)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="gateway", daemon=True)
        self._thread.start()
        # Not waited for: the hook's serve_socket is the one round trip to the loop thread before the sandbox goes
        # on (close() cancels the watch through this future).
        self._watch = asyncio.run_coroutine_threadsafe(self.holder.watch(self.config.reload_interval), self.loop)

    def _run_loop(self) -> None:
        import asyncio

        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        """The spec with the CA bundle mounted read-only and the proxy variables set."""
        env = {**dict(spec.env), **sandbox_env(self.config.listen_port, self.ca_bundle)}
        self.argv = tuple(spec.argv)
        return dataclasses.replace(spec, read_only=(*spec.read_only, self.state_dir), env=env)

    def hook(self, pid: int) -> None:
        """``Launcher(on_netns_ready=...)``: listen inside the sandbox's namespace, identify callers there."""
        import asyncio

        from clawfleet.gateway.ident import Identifier
        from clawfleet.gateway.listen import listen_in_netns

        self.start()
        assert self.loop is not None
        sock = listen_in_netns(pid, self.config.listen_port)
        self.identifier = Identifier(netns_pid=pid, pins=self.pins)
        self.gateway.identify = self.identifier.identify_async
        asyncio.run_coroutine_threadsafe(self.gateway.serve_socket(sock), self.loop).result(10)
        self.log.write({"event": "listening", "netns_pid": pid, "port": self.config.listen_port,
                        "digest": self.holder.digest, "effective_digest": self.holder.effective_digest,
                        "mode": self.config.mode})  # fmt: skip
        self.pid = pid
        self.log.write({"event": "process_start", "pid": pid, "command": list(self.argv),
                        "supervisor_pid": os.getpid()})  # fmt: skip

    def exited(self, code: int) -> None:
        """The sandboxed command ended with ``code`` (a process event for the decision log and the OCSF file)."""
        if self.pid is not None:
            self.log.write({"event": "process_exit", "pid": self.pid, "command": list(self.argv), "exit_code": code,
                            "supervisor_pid": os.getpid()})  # fmt: skip

    def close(self) -> None:
        if self.loop is not None and self._thread is not None:
            import asyncio

            async def stop() -> None:
                self._watch.cancel()
                await self.gateway.close()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self.parts is not None:
            self.parts.close_files()


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` (never an existing file or a symlink: O_EXCL | O_NOFOLLOW) holding ``data``.

    Not atomicfile.write_atomic: the file is new in this process's own fresh state directory, read by the sandbox
    only after the launcher lets it go on, and removed with the directory at the end, so neither the rename nor
    the two fsyncs buy anything; where the runtime directory is on a disk rather than tmpfs they were a median
    16 ms of every start (220 KB of system bundle, on a loaded machine).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # after the data, and whatever the umask
    finally:
        os.close(fd)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "sandbox"


def run_sandbox(spec: SandboxSpec, config: GatewayConfig, *, warn: Callable[[str], None] | None = None,
                policy: tuple[Policy, os.stat_result] | None = None) -> tuple[int, Launcher]:  # fmt: skip
    """Run ``spec`` (a SandboxSpec) with its traffic through a gateway; returns ``(exit code, launcher)``. The gateway
    is started beside the forked sandbox, before anything in it runs (see :class:`EmbeddedGateway`); a gateway that
    fails to start aborts the sandbox (exit 125, the reason in ``launcher.report.error``). ``policy``: the policy
    ``spec`` was made from, with its file's stat (see :class:`EmbeddedGateway`)."""
    from clawfleet.sandbox.launcher import Launcher

    gw = EmbeddedGateway(config, policy=policy)
    try:
        launcher = Launcher(gw.prepare(spec), on_netns_ready=gw.hook, warn=warn, on_forked=gw.start)
        code = launcher.run()
        gw.exited(code)
    finally:
        gw.close()
    return code, launcher
