"""Run one command per host, optionally after uploading files, through pyinfra's Python API.

Connectors are pyinfra's: a plain name is SSH (``ssh_user``, ``ssh_key``, ... as host data in an inventory
file), ``@docker/CONTAINER`` runs in a container, ``@local`` on this machine. pyinfra is a controller
dependency (extra ``fleet``), imported only here and only when a fleet command runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import posixpath
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["HostRun", "Target", "load_targets", "run_on_hosts"]

Target = tuple[str, dict[str, Any]]  # (pyinfra host name, host data)


@dataclasses.dataclass
class HostRun:
    connected: bool = False
    ran: bool = False
    stdout: str = ""
    stderr: str = ""
    error: str = ""


def _quiet_pyinfra(verbose: bool) -> None:
    logging.getLogger("pyinfra").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _inventory_groups(path: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """The host groups of a pyinfra inventory file: top-level lists of hosts (``"name"`` or ``("name", data)``),
    or ``(hosts, group_data)`` tuples; names starting with ``_`` are ignored. Loaded without ``pyinfra_cli``,
    which monkey-patches the whole process with gevent on import."""
    import runpy

    groups = []
    for key, value in runpy.run_path(path).items():
        if key.startswith("_"):
            continue
        hosts, data = (value[0], value[1]) if isinstance(value, tuple) and len(value) == 2 else (value, {})
        if not isinstance(hosts, list) or not isinstance(data, dict):
            continue
        if all(isinstance(h, str) or (isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], str)) for h in hosts):
            groups.append((hosts, data))
    return groups


def load_targets(
    hosts: Sequence[str],
    inventory: str | None,
    *,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
) -> list[Target]:
    """``--hosts`` entries (comma-separated lists allowed), then the hosts of a pyinfra inventory file, in order,
    without duplicates. A host's data: its own, over its groups' (earlier groups win).

    SSH hosts get strict host key checking unless their data says otherwise: pyinfra's default, ``accept-new``,
    trusts whatever key a host shows the first time, so a first push to a new host (or to a name an attacker
    answers for) would hand the policy and sudo to an unverified machine. ``accept_new_host_keys`` is the explicit
    opt-in for enrolling hosts; ``known_hosts`` names the file to check against."""
    targets: dict[str, dict[str, Any]] = {}
    for entry in hosts:
        for name in (n.strip() for n in entry.split(",")):
            if name:
                targets.setdefault(name, {})
    if inventory:
        for group_hosts, group_data in _inventory_groups(inventory):
            for host in group_hosts:
                name, data = (host, {}) if isinstance(host, str) else host
                merged = targets.setdefault(name, {})
                for k, v in {**group_data, **data}.items():
                    if k in data or k not in merged:
                        merged[k] = v
    for name, data in targets.items():
        if name.startswith("@"):
            continue  # @local, @docker/...: no SSH, no host key
        data.setdefault("ssh_strict_host_key_checking", "accept-new" if accept_new_host_keys else "yes")
        if known_hosts:
            data.setdefault("ssh_known_hosts_file", known_hosts)
    return list(targets.items())


def _cooperative_io(targets: Sequence[Target]) -> None:
    """SSH (paramiko: blocking sockets and a thread per connection) only runs hosts concurrently under gevent's
    monkey patching, which pyinfra's own CLI applies on start. Do the same, once, when a target is reached over
    SSH (a name without ``@``); ``@local`` and ``@docker`` use gevent's subprocess and need nothing."""
    if not any(not name.startswith("@") for name, _ in targets):
        return
    import warnings

    from gevent import monkey

    if monkey.is_module_patched("socket"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "patching after ssl was imported": nothing has opened a connection yet
        monkey.patch_all()


def run_on_hosts(
    targets: Sequence[Target],
    command: str,
    uploads: Sequence[tuple[bytes, str]] = (),
    *,
    sudo: bool = False,
    parallel: int = 20,
    verbose: bool = False,
) -> dict[str, HostRun]:
    """Connect to every target (in parallel), upload each ``(content, remote path)`` (mode 0600, in a directory
    made 0700), then run ``command`` with errors ignored: the caller reads the command's own output. pyinfra's
    console output goes to stderr, never stdout."""
    from pyinfra.api import BaseStateCallback, Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.operations import files, server

    _quiet_pyinfra(verbose)
    runs = {name: HostRun() for name, _ in targets}
    if not targets:
        return runs
    _cooperative_io(targets)
    inventory = Inventory(([(name, dict(data)) for name, data in targets], {}))
    state = State(inventory, Config(PARALLEL=parallel))
    connect_errors: dict[str, str] = {}

    class _ConnectErrors(BaseStateCallback):
        @staticmethod
        def host_connect_error(state, host, error) -> None:
            connect_errors[host.name] = str(error.args[0] if error.args else error)

    state.add_callback_handler(_ConnectErrors())
    with contextlib.redirect_stdout(sys.stderr):
        try:
            connect_all(state)
        except PyinfraError as exc:  # every host failed to connect
            for run in runs.values():
                run.error = f"could not connect: {exc}"
        for host in inventory:
            run = runs[host.name]
            run.connected = host in state.activated_hosts and host not in state.failed_hosts
            if not run.connected:
                why = connect_errors.get(host.name)
                run.error = f"could not connect: {why}" if why else (run.error or "could not connect")
        if not any(r.connected for r in runs.values()):
            return runs
        shells: dict[Any, Any] = {}
        try:
            for directory in sorted({posixpath.dirname(dest) for _content, dest in uploads}):
                add_op(state, files.directory, path=directory, mode="700", _sudo=sudo)
            for content, dest in uploads:
                add_op(state, files.put, src=io.BytesIO(content), dest=dest, mode="600", create_remote_dir=True,
                       _sudo=sudo)  # fmt: skip
            shells = add_op(state, server.shell, commands=[command], _sudo=sudo, _ignore_errors=True)
            run_ops(state)
        except PyinfraError as exc:  # raised when no host is left (an upload failed everywhere)
            for run in runs.values():
                run.error = run.error or str(exc)
        for host in inventory:
            run = runs[host.name]
            meta = shells.get(host)
            if not run.connected:
                continue
            if meta is None or not meta.is_complete():
                run.error = run.error or "upload failed, command not run"
                continue
            run.ran = True
            run.stdout = "\n".join(meta.stdout_lines)
            run.stderr = "\n".join(meta.stderr_lines)
        with contextlib.suppress(Exception):
            disconnect_all(state)
    return runs
