"""``clawfleet policy apply|status|ledger``: put a new policy in place on this host, prove the gateway enforces
it, roll back on its own when it does not, and keep an audit trail (see docs/fleet.md).

``apply NEWFILE --name NAME``: validate NEWFILE (exit 2, nothing touched) -> compare digests with the live
``DIR/NAME.yaml`` (same: ``unchanged``, nothing written, no ledger line) -> keep the live file as
``NAME.yaml.previous`` -> write NEWFILE's bytes atomically (temp file in DIR, fsync, rename) -> wait until the
gateway daemon reports the sandbox running with the new digest -> on failure write the previous content back
and wait for its digest (``rolled_back``), or remove the file when there was none (``failed``). One JSON
object on stdout; one ledger record per apply that wrote something. Exit 0 unchanged/would_apply/applied,
1 rolled_back/failed, 2 invalid input.

``apply - --name NAME``: the same with the policy read from stdin, so that a fleet tool needs one remote command
per host and sandbox (no upload, no separate validation, stat or read of the live file): the bytes are applied
from memory (no staged copy is written), ``--verify-if-deployed`` asks systemd whether the gateway is installed and
running, and the JSON reports what the caller used to read separately (``exists``, ``diff``,
``needs_restart``, ``gateway_installed``, ``gateway_running``).

Everything the Ansible role and ``clawfleet fleet push`` do on a host goes through :func:`apply_policy`, so the
two paths share validation, placement, verification, rollback and the ledger.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import getpass
import grp
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from clawfleet import paths
from clawfleet.atomicfile import write_atomic

from . import ledger as ledger_mod
from .canonical import digest as policy_digest
from .differ import diff as policy_diff
from .errors import PolicyError
from .loader import load_file, load_text
from .model import Policy

__all__ = [
    "DEFAULT_POLICY_DIR",
    "DEFAULT_SOCKET",
    "ApplyOptions",
    "LockTimeout",
    "apply_bytes",
    "apply_policy",
    "locked",
    "policy_status",
    "register_apply_subcommands",
]

DEFAULT_POLICY_DIR = paths.POLICY_DIR
DEFAULT_SOCKET = paths.CONTROL_SOCKET
DEFAULT_GROUP = "clawfleet"
POLL_INTERVAL = 0.05

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
RESULT_EXIT = {"unchanged": EXIT_OK, "would_apply": EXIT_OK, "applied": EXIT_OK, "rolled_back": EXIT_FAILED,
               "failed": EXIT_FAILED, "invalid": EXIT_INVALID}  # fmt: skip


def default_operator() -> str:
    user = os.environ.get("SUDO_USER")
    if user:
        return user
    try:
        return os.getlogin()
    except OSError:
        return getpass.getuser()


# -- talking to the gateway daemon (its control socket only) ---------------------------------------------


def sandbox_status(name: str, socket_path: str) -> tuple[dict[str, Any] | None, str]:
    """(the daemon's status answer, '') or (None, why there is none)."""
    from clawfleet.control_protocol import request

    try:
        for answer in request({"cmd": "status", "name": name}, socket_path):
            if isinstance(answer, dict) and "error" in answer:
                return None, f"gateway daemon: {answer['error']}"
            if isinstance(answer, dict):
                return answer, ""
        return None, "gateway daemon gave no answer"
    except (FileNotFoundError, ConnectionRefusedError):
        return None, f"no gateway daemon at {socket_path}"
    except (OSError, ValueError) as exc:
        return None, f"gateway daemon at {socket_path}: {exc}"


@dataclasses.dataclass
class Verification:
    ok: bool
    latency_s: float | None
    reason: str
    status: dict[str, Any] | None


def wait_for_digest(name: str, want: str, socket_path: str, timeout: float, settle: float = 0.2) -> Verification:
    """Poll the daemon until the sandbox runs and enforces ``want`` (latency from the call), then check once more
    after ``settle`` seconds that it still runs with it (health probe). Fails early only when the daemon answers
    that it does not know the sandbox."""
    start = time.monotonic()
    deadline = start + timeout
    reason = "timed out"
    while True:
        status, why = sandbox_status(name, socket_path)
        now = time.monotonic()
        if status is not None:
            state, enforced = status.get("state"), status.get("policy_digest")
            if state == "running" and enforced == want:
                latency = now - start
                if settle > 0:
                    time.sleep(settle)
                    again, why2 = sandbox_status(name, socket_path)
                    if again is None or again.get("state") != "running" or again.get("policy_digest") != want:
                        got = why2 or f"state {again.get('state')!r}, digest {again.get('policy_digest')}"  # type: ignore[union-attr]
                        return Verification(False, None, f"health probe after {settle}s failed: {got}", again)
                return Verification(True, round(latency, 3), "", status)
            if state != "running":  # the daemon may be restarting it: keep asking until the deadline
                reason = f"sandbox {name!r} is not running (state {state!r}) after {timeout}s"
            else:
                reason = f"gateway still enforces {enforced} after {timeout}s (want {want})"
        else:
            reason = why
            if why.startswith("gateway daemon:"):  # it answered: no such sandbox
                return Verification(False, None, why, None)
        if now >= deadline:
            return Verification(False, None, reason, status)
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))


# -- files -------------------------------------------------------------------------------------------------


def _gid(group: str | None) -> int:
    if group:
        with contextlib.suppress(KeyError):
            return grp.getgrnam(group).gr_gid
    return 0


def _write_owned(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Atomically (see :mod:`clawfleet.atomicfile`); the owner is set only when running as root."""
    if os.geteuid() == 0:
        write_atomic(path, data, mode, uid=uid, gid=gid)
    else:
        write_atomic(path, data, mode)


@contextlib.contextmanager
def locked(directory: str, timeout: float | None = None) -> Iterator[None]:
    """One change at a time per policy directory (flock on the directory itself: no lock file to leave behind).
    Waits for the lock; with ``timeout``, raises :class:`LockTimeout` after that many seconds."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            errno.EWOULDBLOCK, f"another policy change holds the lock (waited {timeout:g}s)", directory
                        ) from None
                    time.sleep(POLL_INTERVAL)
        yield
    finally:
        os.close(fd)


def _read_live(path: str) -> tuple[bytes | None, Policy | None, str]:
    """(bytes, parsed policy, problem) of the live file; (None, None, '') when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, None, ""
    try:
        return data, load_text(data, path), ""
    except PolicyError as exc:
        return data, None, f"live policy {path} is invalid: {str(exc).splitlines()[0]}"


class LockTimeout(OSError):
    """The policy directory stayed locked by another apply or approve."""


# -- apply -------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived while the new policy was not yet proven."""


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP (an Ansible or SSH timeout, a dropped session) into :class:`Interrupted` while we wait
    for the gateway, so that an unproven policy is rolled back instead of left in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclasses.dataclass
class ApplyOptions:
    name: str
    policy_dir: str = DEFAULT_POLICY_DIR
    socket: str = DEFAULT_SOCKET
    timeout: float = 20.0
    ledger: str | None = ledger_mod.DEFAULT_LEDGER
    operator: str | None = None
    source_commit: str | None = None
    check: bool = False
    verify: bool = True
    group: str = DEFAULT_GROUP
    settle: float = 0.2
    host: str | None = None
    #: The live file (default ``policy_dir/NAME.yaml``).
    live: str | None = None
    #: Compare and swap: the digest the live policy must still have (None: whatever it has). A policy edited in
    #: between (another apply or approve) fails the change instead of being overwritten.
    expect_previous: str | None = None
    #: Keep the live file's mode and owner (approve edits a file in place) instead of 0640 root:``group``.
    keep_owner: bool = False
    #: Seconds to wait for the policy directory's lock (None: as long as it takes).
    lock_timeout: float | None = None
    #: Verify a sandbox's first policy too (False: only where a live policy existed; the gateway cannot know a
    #: sandbox deployed for the first time until it starts, and the gateway role verifies after that start).
    verify_first: bool = True
    #: Why a change is not verified, recorded in the ledger's detail.
    no_verify_reason: str = "--no-verify"


def _make_policy_dir(directory: str, group: str | None) -> None:
    """The policy directory as the base role makes it (root:GROUP 0750: the gateway reads it through the group),
    for a host where only the policy role or ``fleet push`` ran."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(directory, 0, _gid(group))
        os.chmod(directory, 0o750)  # noqa: S103 - root:GROUP, read by the gateway through its group


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith(".") and "\0" not in name


def apply_policy(newfile: str, opts: ApplyOptions) -> dict[str, Any]:
    """Validate, place, verify, roll back; returns the result object (``result`` decides the exit code)."""
    try:
        with open(newfile, "rb") as f:
            data = f.read()
    except OSError as exc:
        out = _result(opts)
        out["error"] = f"{newfile}: {exc.strerror}"
        return out
    return apply_bytes(data, newfile, opts)


def _result(opts: ApplyOptions) -> dict[str, Any]:
    out: dict[str, Any] = {"host": opts.host or socket.gethostname(), "sandbox": opts.name, "result": "invalid",
                           "digest": None, "previous_digest": None, "diff": "", "enforce_latency_s": None,
                           "error": None}  # fmt: skip
    return out


def apply_bytes(data: bytes, newfile: str, opts: ApplyOptions) -> dict[str, Any]:
    """:func:`apply_policy` of ``data`` (``newfile`` names it in messages and the diff): the one path every policy
    change on a host takes (``policy apply``, ``policy approve``, ``fleet push``)."""
    out = _result(opts)
    if not _valid_name(opts.name):
        out["error"] = f"--name {opts.name!r} is not a sandbox name"
        return out
    try:
        new = load_text(data, newfile)  # validate exactly the bytes that will be written
    except PolicyError as exc:
        out["error"] = str(exc)
        out["problems"] = [str(p) for p in exc.problems]
        return out
    new_digest = policy_digest(new)
    out["digest"] = new_digest
    directory = opts.policy_dir
    live = opts.live or os.path.join(directory, f"{opts.name}.yaml")
    previous = live + ".previous"
    if not opts.check and not os.path.isdir(directory):
        _make_policy_dir(directory, opts.group)
    lock = locked(directory, opts.lock_timeout) if os.path.isdir(directory) else contextlib.nullcontext()
    with lock:
        old_bytes, old, live_problem = _read_live(live)
        old_digest = policy_digest(old) if old is not None else None
        out["previous_digest"] = old_digest
        out["exists"] = old_bytes is not None
        if opts.verify and old_bytes is None and not opts.verify_first:
            opts = dataclasses.replace(opts, verify=False, no_verify_reason="first policy of this sandbox")
        if opts.expect_previous is not None and old_digest != opts.expect_previous:
            out["result"] = "failed"
            out["error"] = (f"{live} changed meanwhile (digest {old_digest}, expected {opts.expect_previous}): "
                            "nothing written")  # fmt: skip
            return out
        if old is not None:
            d = dataclasses.replace(policy_diff(old, new), old_name=live, new_name=newfile)
            out["diff"] = d.render()
            out["needs_restart"] = d.needs_restart
        else:
            out["diff"] = live_problem or f"+++ {newfile}  {new_digest}\nnew policy (no {live} yet)"
            out["needs_restart"] = False
        if old_digest == new_digest:
            out["result"] = "unchanged"
            if opts.verify and not opts.check:
                status, _why = sandbox_status(opts.name, opts.socket)
                out["enforced_digest"] = status.get("policy_digest") if status else None
                out["in_sync"] = out["enforced_digest"] == new_digest
            return out
        if opts.check:
            out["result"] = "would_apply"
            return out
        return _place_and_verify(data, new_digest, old_bytes, old_digest, live, previous, opts, out)


def _place_and_verify(data: bytes, new_digest: str, old_bytes: bytes | None, old_digest: str | None, live: str,
                      previous: str, opts: ApplyOptions, out: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    gid = _gid(opts.group)
    if old_bytes is not None:
        st = os.stat(live)
        _write_owned(previous, old_bytes, st.st_mode & 0o7777, st.st_uid, st.st_gid)
        if opts.keep_owner:
            _write_owned(live, data, st.st_mode & 0o7777, st.st_uid, st.st_gid)
        else:
            _write_owned(live, data, 0o640, 0, gid)
    else:
        _write_owned(live, data, 0o640, 0, gid)
    if not opts.verify:
        out["result"] = "applied"
        out["detail"] = f"not verified ({opts.no_verify_reason})"
        return _record(out, opts)
    interrupted = False
    try:
        with _interruptible():
            check = wait_for_digest(opts.name, new_digest, opts.socket, opts.timeout, opts.settle)
    except (Interrupted, KeyboardInterrupt) as exc:
        interrupted = True
        check = Verification(False, None, f"interrupted by {exc or 'SIGINT'}", None)
    if check.ok:
        out["result"] = "applied"
        out["enforce_latency_s"] = check.latency_s
        return _record(out, opts)
    out["error"] = f"verify failed: {check.reason}"
    if old_bytes is None:
        # Nothing to go back to: take the unverified file away, so that a re-run tries again instead of
        # reporting "unchanged", and a gateway started later fails closed rather than running it unproven.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(live)
        out["result"] = "failed"
        out["detail"] = out["error"] + f"; removed {live} (there was no previous policy)"
        return _record(out, opts)
    st = os.stat(previous)
    _write_owned(live, old_bytes, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    out["result"] = "rolled_back"
    back = (
        wait_for_digest(opts.name, old_digest, opts.socket, opts.timeout, 0) if old_digest and not interrupted else None
    )
    out["rollback_verified"] = bool(back and back.ok)
    if back is not None and back.ok:
        suffix = "previous policy restored and enforced"
    else:
        why = (
            back.reason if back else ("not waited for (interrupted)" if interrupted else "previous policy was invalid")
        )
        suffix = f"previous policy restored; not confirmed: {why}"
    out["detail"] = f"{out['error']}; {suffix}"
    return _record(out, opts)


def _record(out: dict[str, Any], opts: ApplyOptions) -> dict[str, Any]:
    if not opts.ledger:
        return out
    record = {"host": out["host"], "sandbox": out["sandbox"], "digest": out["digest"],
              "previous_digest": out["previous_digest"], "source_commit": opts.source_commit,
              "operator": opts.operator or default_operator(), "result": out["result"],
              "detail": out.get("detail") or "", "enforce_latency_s": out["enforce_latency_s"]}  # fmt: skip
    try:
        ledger_mod.append(opts.ledger, record, group=opts.group)
    except OSError as exc:
        out["ledger_error"] = f"{opts.ledger}: {exc.strerror or exc}"
        print(f"clawfleet policy apply: could not write the ledger: {out['ledger_error']}", file=sys.stderr)
    return out


# -- status ------------------------------------------------------------------------------------------------


def policy_status(policy_dir: str, socket_path: str, ledger: str | None) -> list[dict[str, Any]]:
    """Per ``DIR/*.yaml``: the file's digest against the digest the gateway enforces, and the last ledger record."""
    last = ledger_mod.last_records(ledger) if ledger else {}
    rows = []
    try:
        names = sorted(n for n in os.listdir(policy_dir) if n.endswith(".yaml") and not n.startswith("."))
    except FileNotFoundError:
        names = []
    for filename in names:
        name = filename[: -len(".yaml")]
        row: dict[str, Any] = {"name": name, "file": os.path.join(policy_dir, filename), "file_digest": None,
                               "enforced_digest": None, "state": None, "in_sync": False, "restart_pending": False,
                               "error": None}  # fmt: skip
        try:
            row["file_digest"] = policy_digest(load_file(row["file"]))
        except PolicyError as exc:
            row["error"] = f"invalid policy file: {str(exc).splitlines()[0]}"
        except OSError as exc:
            row["error"] = f"{row['file']}: {exc.strerror}"
        status, why = sandbox_status(name, socket_path)
        if status is not None:
            row["state"] = status.get("state")
            row["enforced_digest"] = status.get("policy_digest")
            row["restart_pending"] = bool(status.get("restart_pending"))
        else:
            row["state"] = "unknown"
            row["error"] = row["error"] or why
        # The gateway hot-reloads the network part only: a sandbox still running the filesystem, Landlock or process
        # sections it started with is not in sync, whatever digest the gateway reports.
        row["in_sync"] = (row["file_digest"] is not None and row["file_digest"] == row["enforced_digest"]
                          and not row["restart_pending"])  # fmt: skip
        row["last_ledger"] = last.get(name)
        rows.append(row)
    return rows


# -- CLI ---------------------------------------------------------------------------------------------------


def _short(d: str | None) -> str:
    return "-" if not d else d.removeprefix("sha256:")[:12]


def _cmd_apply(args: argparse.Namespace) -> int:
    if args.staging_dir is not None:  # stderr: stdout carries the one JSON object a controller parses
        print("clawfleet policy apply: --staging-dir is deprecated and ignored (the policy is applied from memory)",
              file=sys.stderr)  # fmt: skip
    opts = ApplyOptions(name=args.name, policy_dir=args.policy_dir, socket=args.socket, timeout=args.timeout,
                        ledger=args.ledger or None, operator=args.operator or default_operator(),
                        source_commit=args.source_commit, check=args.check, verify=not args.no_verify,
                        group=args.group, settle=args.settle, host=args.host_label)  # fmt: skip
    gateway: dict[str, bool] = {}
    if args.verify_if_deployed:
        # One command per host and sandbox does what the role used to ask in separate round trips.
        from .unit_state import unit_state

        unit = unit_state(args.gateway_unit)
        gateway = {"gateway_installed": unit.installed, "gateway_running": unit.running}
        opts = dataclasses.replace(opts, verify_first=False)
        if not unit.installed:
            opts = dataclasses.replace(opts, verify=False, no_verify_reason=f"{args.gateway_unit} not installed")
    try:
        out = _apply_stdin(args, opts) if args.newfile == "-" else apply_policy(args.newfile, opts)
    except PolicyError as exc:  # stdin over the size limit
        out = {**_result(opts), "error": str(exc)}
    except OSError as exc:
        out = {"host": opts.host or socket.gethostname(), "sandbox": opts.name, "result": "failed", "digest": None,
               "previous_digest": None, "diff": "", "enforce_latency_s": None,
               "error": f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}"}  # fmt: skip
    out.update(gateway)
    if out["result"] == "invalid":
        print(out["error"], file=sys.stderr)
    print(json.dumps(out))
    return RESULT_EXIT[out["result"]]


def _apply_stdin(args: argparse.Namespace, opts: ApplyOptions) -> dict[str, Any]:
    """``apply -``: the policy's bytes from stdin, named ``--stdin-label`` in messages and the diff, applied from
    memory (nothing read a staged copy, so none is written)."""
    from .stdin import read_stdin

    label = args.stdin_label or "<stdin>"
    return apply_bytes(read_stdin(label), label, opts)


def _cmd_status(args: argparse.Namespace) -> int:
    rows = policy_status(args.policy_dir, args.socket, args.ledger or None)
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'SANDBOX':<20} {'STATE':<8} {'FILE':<13} {'ENFORCED':<13} {'SYNC':<5} LAST CHANGE")
        for r in rows:
            led = r["last_ledger"]
            change = f"{led['time']} {led['result']} by {led['operator']}" if led else "-"
            print(f"{r['name']:<20} {r['state'] or '-':<8} {_short(r['file_digest']):<13} "
                  f"{_short(r['enforced_digest']):<13} {'yes' if r['in_sync'] else 'NO':<5} {change}"
                  + (f"  ({r['error']})" if r["error"] else "")
                  + ("  (static sections changed: restart the sandbox)" if r["restart_pending"] else ""))  # fmt: skip
    return 1 if args.fail_on_drift and not all(r["in_sync"] for r in rows) else 0


def _cmd_ledger(args: argparse.Namespace) -> int:
    path = args.ledger
    if not os.path.exists(path):
        print(f"clawfleet policy ledger: {path} does not exist (no policy applied yet)", file=sys.stderr)
        return 1 if args.verify else 0
    if args.verify:
        count, breaks = ledger_mod.verify(path)
        if args.json:
            print(json.dumps({"ledger": path, "records": count, "ok": not breaks,
                              "breaks": [{"line": b.line, "reason": b.reason} for b in breaks]}))  # fmt: skip
        else:
            for b in breaks:
                print(f"{path}:{b}", file=sys.stderr)
            if not breaks:
                print(f"{path}: chain intact ({count} records)")
        return 1 if breaks else 0
    records = [r for _n, r, _raw in ledger_mod.read_records(path) if r is not None]
    if args.sandbox:
        records = [r for r in records if r.get("sandbox") == args.sandbox]
    if args.json:
        for r in records:
            print(json.dumps(r))
        return 0
    for r in records:
        lat = r.get("enforce_latency_s")
        print(f"{r.get('time')} {r.get('host')} {r.get('sandbox')} {r.get('result'):<11} "
              f"{_short(r.get('previous_digest'))} -> {_short(r.get('digest'))} by {r.get('operator')} "
              f"commit={(r.get('source_commit') or '-')[:12]} latency={'-' if lat is None else f'{lat:.3f}s'}"
              + (f"  {r['detail']}" if r.get("detail") else ""))  # fmt: skip
    return 0


def register_apply_subcommands(sub: Any) -> None:
    """Add ``apply``, ``status`` and ``ledger`` to the ``clawfleet policy`` subparsers."""
    p = sub.add_parser("apply", help="place a policy for a sandbox, verify the gateway enforces it, roll back if not",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    p.add_argument("newfile", metavar="NEWFILE", help="the new policy; - reads it from stdin")
    p.add_argument("--name", required=True, help="sandbox name: the live policy is DIR/NAME.yaml")
    p.add_argument("--policy-dir", default=DEFAULT_POLICY_DIR, metavar="DIR")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help="gateway daemon control socket")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the gateway (default 20)")
    p.add_argument("--ledger", default=ledger_mod.DEFAULT_LEDGER, help="audit ledger ('' for none)")
    p.add_argument("--operator", help="who applies (default: $SUDO_USER or the login user)")
    p.add_argument("--source-commit", metavar="SHA", help="commit the policy came from")
    p.add_argument("--check", action="store_true", help="only report what would change (the diff)")
    p.add_argument("--no-verify", action="store_true", help="do not wait for the gateway (first deployment)")
    p.add_argument("--group", default=DEFAULT_GROUP, help="group of the policy file if it exists (else root)")
    p.add_argument("--settle", type=float, default=0.2, help="health probe: re-check after this many seconds")
    p.add_argument("--host-label", metavar="NAME", help="host name in the output and ledger (default: hostname)")
    p.add_argument("--stdin-label", metavar="LABEL", help="with NEWFILE -: the name messages give it (<stdin>)")
    # removed (nothing read the copy it wrote), accepted and ignored for one release: an older controller rolling
    # out to an upgraded host still passes it (fleet push before 0.2); drop it in the release after
    p.add_argument("--staging-dir", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--verify-if-deployed", action="store_true",
                   help="verify only where the gateway unit is installed and the sandbox had a policy (first "
                        "deployments: the gateway role verifies after the start); reports gateway_installed and "
                        "gateway_running. --no-verify still wins")  # fmt: skip
    p.add_argument("--gateway-unit", default="clawfleet-gateway.service", metavar="UNIT",
                   help="the gateway's systemd unit, for --verify-if-deployed")  # fmt: skip
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser("status", help="per sandbox: policy file digest vs the digest the gateway enforces")
    p.add_argument("--policy-dir", default=DEFAULT_POLICY_DIR, metavar="DIR")
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    p.add_argument("--ledger", default=ledger_mod.DEFAULT_LEDGER)
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when any sandbox is out of sync")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("ledger", help="list the policy audit ledger, or --verify its hash chain")
    p.add_argument("--ledger", default=ledger_mod.DEFAULT_LEDGER)
    p.add_argument("--sandbox", metavar="NAME")
    p.add_argument("--verify", action="store_true", help="check the hash chain (exit 1 on a break, naming the line)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ledger)
