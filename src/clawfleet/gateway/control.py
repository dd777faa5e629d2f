"""The gateway daemon (``clawfleet gateway serve --config FILE``) and its control socket.

Daemon config::

    state_dir: /var/lib/clawfleet/gateway        # per-sandbox output, decision logs, CA keys (ca/, 0700)
    control_socket: /run/clawfleet/gateway.sock  # unix socket, root only (0600)
    runtime_dir: /run/clawfleet                  # sandboxes/NAME.json (published pids), gateway/NAME/ (CA bundle)
    launch_sandboxes: true                       # false: systemd runs them (clawfleet-sandbox@NAME.service)
    sandboxes: [agents/coder.yaml, agents/researcher.yaml]

Sandbox definition file::

    name: coder
    command: [/usr/bin/python3, /sandbox/agent.py]
    policy: coder-policy.yaml          # hot-reloaded
    user: clawfleet-sbx                # default: the policy's process.run_as_user
    workdir: /srv/coder                # mounted at /sandbox
    mode: enforce                      # or monitor
    limits: {memory_max: 2G, pids_max: 512}
    env: {LOG_LEVEL: info}
    credentials: [GITHUB_TOKEN]        # placeholders in the sandbox's environment
    secrets: {GITHUB_TOKEN: {file: /etc/clawfleet/secrets/gh, hosts: [api.github.com]}}
    inference: {route: "https://inference.local/v1", env: [OPENAI_BASE_URL]}
    gateway: {extra_ca_file: ..., static_hosts: {...}, pin_binaries: true}

Each sandbox runs in a process of its own (``clawfleet gateway sandbox --config DAEMON NAME``: a systemd unit, or a
child of the daemon when ``launch_sandboxes`` is true, restarted when it fails) that outlives the daemon; the
daemon attaches a gateway to it (:mod:`clawfleet.gateway.attach`). Output goes to ``state_dir/NAME.out``, decisions
to ``state_dir/NAME.decisions.jsonl``.
Control protocol: one JSON request line, JSON answer lines: ``{"cmd": "list"}``, ``{"cmd": "status",
"name": N}``, ``{"cmd": "logs", "name": N, "follow": bool, "lines": 100}``, ``{"cmd": "stop", "name": N}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Daemon", "build_spec_from_definition", "check_file", "load_definition", "register_sandbox_subcommands",
           "request"]  # fmt: skip

from clawfleet import paths

from .attach import DEFAULT_RUNTIME_DIR, AttachedGateway, _read_json, run_attached_sandbox, sandbox_alive
from .control_cli import DEFAULT_SOCKET, register_sandbox_subcommands


def _load_yaml(path: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    with open(path, encoding="utf-8") as f:
        data = YAML(typ="safe").load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def load_definition(path: str) -> dict[str, Any]:
    d = _load_yaml(path)
    base = os.path.dirname(os.path.abspath(path))
    for key in ("name", "command", "policy"):
        if not d.get(key):
            raise ValueError(f"{path}: '{key}' is required")
    if isinstance(d["command"], str):
        d["command"] = ["/bin/sh", "-c", d["command"]]
    if not os.path.isabs(d["policy"]):
        d["policy"] = os.path.join(base, d["policy"])
    d["_base"] = base
    return d


DEFINITION_KEYS = frozenset({"name", "command", "policy", "user", "workdir", "mode", "limits", "env", "credentials",
                             "secrets", "inference", "gateway"})  # fmt: skip
DAEMON_KEYS = frozenset({"state_dir", "control_socket", "runtime_dir", "launch_sandboxes", "sandboxes"})


def check_definition(path: str) -> dict[str, Any]:
    """Everything the daemon would refuse when it starts the sandbox, found now (no sandbox is started)."""
    from clawfleet.policy import load_file

    from .config import load_gateway_section

    d = load_definition(path)
    unknown = set(d) - DEFINITION_KEYS - {"_base"}
    if unknown:
        raise ValueError(
            f"{path}: unknown keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(DEFINITION_KEYS))})"
        )
    if d.get("mode", "enforce") not in ("enforce", "monitor"):
        raise ValueError(f"{path}: mode must be enforce or monitor, not {d['mode']!r}")
    if not isinstance(d["command"], list) or not all(isinstance(a, str) for a in d["command"]):
        raise ValueError(f"{path}: command must be a string or a list of strings")
    section = dict(d.get("gateway") or {})
    section.setdefault("policy", d["policy"])
    if d.get("secrets"):
        section["secrets"] = d["secrets"]
    config = load_gateway_section(section, d["_base"])
    for b in config.secrets:
        if not os.path.isfile(b.file):
            raise ValueError(f"{path}: secret {b.name}: no file {b.file}")
    missing = set(d.get("credentials") or []) - {b.name for b in config.secrets}
    if missing:
        raise ValueError(f"{path}: credentials without a secrets binding: {', '.join(sorted(missing))}")
    load_file(d["policy"])  # PolicyError with every problem, positioned
    from clawfleet.sandbox import environment

    explicit = {str(k): str(v) for k, v in (d.get("env") or {}).items()}
    environment.build({}, "check", explicit=explicit, credentials=list(d.get("credentials") or []))  # EnvError
    limits = d.get("limits") or {}
    unknown = set(limits) - {"memory_max", "pids_max"}
    if unknown:
        raise ValueError(f"{path}: unknown limits: {', '.join(sorted(unknown))}")
    return d


def check_file(path: str) -> list[str]:
    """Validate a daemon config (and every definition it lists) or a single definition file.

    Returns the names of the sandboxes checked; raises ValueError/OSError with a message an operator can act on.
    """
    data = _load_yaml(path)
    if "name" in data or "command" in data:
        return [check_definition(path)["name"]]
    unknown = set(data) - DAEMON_KEYS
    if unknown:
        raise ValueError(
            f"{path}: unknown keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(DAEMON_KEYS))})"
        )
    base = os.path.dirname(os.path.abspath(path))
    names: list[str] = []
    for item in data.get("sandboxes") or []:
        name = check_definition(os.path.join(base, item))["name"]
        if name in names:
            raise ValueError(f"{path}: duplicate sandbox name {name!r}")
        names.append(name)
    return names


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


def build_spec_from_definition(d: dict[str, Any], environ: dict[str, str]):
    from clawfleet.policy import load_file
    from clawfleet.sandbox import environment
    from clawfleet.sandbox.cli import _size
    from clawfleet.sandbox.spec import SANDBOX_WORKDIR, SandboxSpec, resolve_user

    policy = load_file(d["policy"])
    fs = policy.filesystem
    read_write = tuple(fs.read_write)
    if fs.include_workdir and SANDBOX_WORKDIR not in read_write:
        read_write += (SANDBOX_WORKDIR,)
    name, uid, gid = resolve_user(str(d.get("user") or policy.process.run_as_user or "sandbox"),
                                  policy.process.run_as_group)  # fmt: skip
    explicit = {str(k): str(v) for k, v in (d.get("env") or {}).items()}
    inference = d.get("inference") or {}
    if inference.get("route"):
        for var in inference.get("env") or ["OPENAI_BASE_URL"]:
            explicit[str(var)] = str(inference["route"])
    env = environment.build(environ, name, explicit=explicit, credentials=list(d.get("credentials") or []))
    limits = d.get("limits") or {}
    mem = limits.get("memory_max")
    return SandboxSpec(
        argv=tuple(str(a) for a in d["command"]),
        workdir=os.path.abspath(os.path.join(d["_base"], str(d.get("workdir", "/sandbox")))),
        uid=uid, gid=gid, user=name,
        read_only=tuple(fs.read_only), read_write=read_write,
        landlock_compat=policy.landlock.compatibility,
        memory_max=_size(str(mem)) if mem is not None else None,
        pids_max=int(limits.get("pids_max", 4096)),
        env=env, mode=str(d.get("mode", "enforce")),
    )  # fmt: skip


@dataclass
class Managed:
    name: str
    definition: str
    out: str
    gateway: AttachedGateway | None = None
    proc: subprocess.Popen | None = None  # when the daemon launches its sandboxes
    stopped: bool = False  # stopped on request: not restarted
    restarts: int = 0

    def record(self) -> dict[str, Any] | None:
        return _read_json(self.gateway.paths.pidfile) if self.gateway else None

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
                "policy_digest": gw.holder.digest if pid and gw else None}  # fmt: skip


class Daemon:
    def __init__(self, config_path: str) -> None:
        cfg = _load_yaml(config_path)
        base = os.path.dirname(os.path.abspath(config_path))
        self.config_path = os.path.abspath(config_path)
        self.state_dir = os.path.join(base, cfg.get("state_dir", paths.GATEWAY_STATE_DIR))
        self.socket_path = os.path.join(base, cfg.get("control_socket", DEFAULT_SOCKET))
        self.runtime_dir = os.path.join(base, cfg.get("runtime_dir", DEFAULT_RUNTIME_DIR))
        self.launch = bool(cfg.get("launch_sandboxes", True))
        self.restart_delay = 5.0
        self.sandboxes: dict[str, Managed] = {}
        self.definitions: dict[str, dict[str, Any]] = {}
        for item in cfg.get("sandboxes") or []:
            path = os.path.join(base, item)
            d = load_definition(path)
            if d["name"] in self.sandboxes:
                raise ValueError(f"duplicate sandbox name {d['name']!r}")
            self.definitions[d["name"]] = d
            self.sandboxes[d["name"]] = Managed(d["name"], path, os.path.join(self.state_dir, f"{d['name']}.out"))

    def start(self, m: Managed) -> None:
        """Launch the sandbox process unless one is already running (a restarted daemon adopts it)."""
        if sandbox_alive(m.record()):
            return
        out = open(m.out, "ab")  # noqa: SIM115 - handed to the child
        m.proc = subprocess.Popen(
            [sys.executable, "-m", "clawfleet.gateway.control", "run-sandbox", m.definition, self.runtime_dir],
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            req = json.loads(line or b"{}")
            cmd, name = req.get("cmd"), req.get("name")
            m = self.sandboxes.get(name) if name else None
            if cmd == "list":
                answer: Any = [s.info() for s in self.sandboxes.values()]
            elif m is None:
                answer = {"error": f"no sandbox named {name!r}"}
            elif cmd == "status":
                answer = m.info()
            elif cmd == "stop":
                await asyncio.get_running_loop().run_in_executor(None, self.stop, m)
                answer = m.info()
            elif cmd == "logs":
                await self._logs(m, writer, int(req.get("lines", 100)), bool(req.get("follow")))
                return
            else:
                answer = {"error": f"unknown command {cmd!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ValueError, ConnectionError) as exc:
            with contextlib.suppress(ConnectionError):
                writer.write(json.dumps({"error": str(exc)}).encode() + b"\n")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _logs(self, m: Managed, writer: asyncio.StreamWriter, lines: int, follow: bool) -> None:
        try:
            with open(m.out, "rb") as f:
                tail = f.read().splitlines()[-lines:] if lines > 0 else []
                for t in tail:
                    writer.write(json.dumps({"line": t.decode("utf-8", "replace")}).encode() + b"\n")
                await writer.drain()
                while follow:
                    chunk = f.readline()
                    if chunk:
                        writer.write(json.dumps({"line": chunk.decode("utf-8", "replace").rstrip("\n")}).encode()
                                     + b"\n")  # fmt: skip
                        await writer.drain()
                    elif not sandbox_alive(m.record()):
                        break
                    else:
                        await asyncio.sleep(0.2)
        except FileNotFoundError:
            writer.write(json.dumps({"error": "no output yet"}).encode() + b"\n")

    async def serve(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for name, d in self.definitions.items():
            self.sandboxes[name].gateway = AttachedGateway(d, self.state_dir, self.runtime_dir)
        tasks = [asyncio.ensure_future(m.gateway.run()) for m in self.sandboxes.values() if m.gateway]
        old = os.umask(0o077)
        try:
            server = await asyncio.start_unix_server(self._handle, path=self.socket_path)
        finally:
            os.umask(old)
        if self.launch:
            for m in self.sandboxes.values():
                self.start(m)
            tasks.append(asyncio.ensure_future(self._supervise()))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        if self.launch:
            for m in self.sandboxes.values():
                await loop.run_in_executor(None, self.stop, m)
        # Sandboxes run by systemd keep running, offline until the gateway is back (fail closed).
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


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


# -- client ---------------------------------------------------------------------------------------------


def request(req: dict[str, Any], socket_path: str = DEFAULT_SOCKET):
    """Send one request, yield each answer line (decoded)."""
    import socket as _socket

    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        s.connect(socket_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        with s.makefile("rb") as f:
            for line in f:
                yield json.loads(line)


def _client(args: argparse.Namespace) -> int:
    req: dict[str, Any] = {"cmd": args.sandbox_command}
    if getattr(args, "name", None):
        req["name"] = args.name
    if args.sandbox_command == "logs":
        req.update(follow=args.follow, lines=args.lines)
    if args.sandbox_command == "connect":
        return _connect(args)
    try:
        for answer in request(req, args.socket):
            if isinstance(answer, dict) and "error" in answer:
                print(f"clawfleet sandbox: {answer['error']}", file=sys.stderr)
                return 1
            if args.sandbox_command == "logs":
                print(answer["line"])
            elif args.sandbox_command == "list":
                for s in answer:
                    print(f"{s['name']:<20} {s['state']:<8} pid={s['pid']} exit={s['exit_code']}")
            else:
                print(json.dumps(answer, indent=1))
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"clawfleet sandbox: no gateway daemon at {args.socket}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _connect(args: argparse.Namespace) -> int:
    from clawfleet.sandbox.join import command_process, environ, join
    from clawfleet.sandbox.launcher import SetupError

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        status = next(request({"cmd": "status", "name": args.name}, args.socket))
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"clawfleet sandbox: no gateway daemon at {args.socket}", file=sys.stderr)
        return 1
    if "error" in status or status.get("state") != "running":
        print(f"clawfleet sandbox connect: {status.get('error') or args.name + ' is not running'}", file=sys.stderr)
        return 1
    try:
        spec = build_spec_from_definition(load_definition(status["definition"]), {})
        target = command_process(status["pid"], spec.uid)
        if target is None:
            print(f"clawfleet sandbox connect: no process of {args.name} runs as uid {spec.uid}", file=sys.stderr)
            return 1
        ca_bundle = environ(target).get("SSL_CERT_FILE")
        if ca_bundle:  # the gateway's CA bundle directory, mounted read-only at the sandbox's own start
            spec = dataclasses.replace(spec, read_only=(*spec.read_only, os.path.dirname(ca_bundle)))
        return join(target, dataclasses.replace(spec, argv=tuple(argv or ["/bin/sh"])))
    except SetupError as exc:
        print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
        return exc.code
    except (OSError, ValueError) as exc:
        print(f"clawfleet sandbox connect: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "run-sandbox":
        return run_attached_sandbox(argv[1], argv[2])
    print("usage: python -m clawfleet.gateway.control run-sandbox DEFINITION RUNTIME_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
