"""Pending approvals, approve, and learn mode, all from the gateway's JSON decision log.

* :func:`pending`: enforced denials aggregated by (sandbox, binary, host, port[, method, path]) with a stable
  short ID, counts and first/last time. Approved IDs are remembered next to the log (``LOG.approved``).
* :func:`approve`: writes the matching rule into the policy file through the same path as ``clawfleet policy
  apply`` (:func:`clawfleet.policy.apply.apply_bytes`: validated, the directory locked, the policy it was computed
  from verified by digest, ``FILE.previous`` kept, written atomically, a ledger record), so the running gateway
  hot-reloads it. L4 denials add ``{host, port}`` for the binary; L7 denials
  add a ``protocol: rest`` endpoint allowing exactly that method and path.
* :func:`suggest`: a minimal policy that allows exactly the traffic a (monitor-mode) log observed.

``register_policy_subcommands(policy_subparsers)`` adds ``pending``, ``approve`` and ``suggest`` to the
``clawfleet policy`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clawfleet.atomicfile import write_atomic
from clawfleet.paths import POLICY_LEDGER as DEFAULT_LEDGER

from .request_target import TargetRefused, canonicalize_target

__all__ = ["ApproveError", "Pending", "approve", "approved_ids", "pending", "pending_entry", "read_log",
           "register_policy_subcommands", "suggest"]  # fmt: skip

_REQUEST_KINDS = ("http", "tls_request", "tunnel_request")


def read_log(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def _is_decision(rec: dict[str, Any]) -> bool:
    return "decision" in rec and bool(rec.get("binary")) and bool(rec.get("host")) and bool(rec.get("port"))


def _l7(rec: dict[str, Any]) -> bool:
    return rec.get("kind") in _REQUEST_KINDS and bool(rec.get("method")) and bool(rec.get("path"))


def _path_only(path: str) -> str:
    """The path as the engine judged it: decoded (a rule glob is matched against the decoded path)."""
    try:
        return canonicalize_target(path).path
    except TargetRefused:  # refused before any rule could apply; shown as logged
        return path.partition("?")[0].partition("#")[0] or "/"


@dataclass
class Pending:
    id: str
    sandbox: str
    binary: str
    host: str
    port: int
    method: str | None = None
    path: str | None = None
    count: int = 0
    first: str = ""
    last: str = ""
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pending_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    l7 = _l7(rec) and rec.get("rule") is not None  # host allowed, request refused
    return (rec.get("sandbox", ""), rec["binary"], rec["host"], int(rec["port"]),
            rec["method"] if l7 else None, _path_only(rec["path"]) if l7 else None)  # fmt: skip


def _approved_file(log: str) -> str:
    return log + ".approved"


def _approved(log: str) -> set[str]:
    try:
        with open(_approved_file(log)) as f:
            return set(json.load(f))
    except (OSError, ValueError):
        return set()


def pending_entry(rec: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """``(key, id)`` of the pending approval a decision record stands for, or None when it is not a denial a policy
    rule could approve (also what the gateway's ``clawfleet_gateway_approvals_pending`` metric counts)."""
    if not _is_decision(rec) or rec.get("action") != "deny" or rec.get("decision") != "deny":
        return None
    if str(rec.get("reason", "")).startswith(("caller not identified", "destination guard")):
        return None  # nothing a policy rule could approve
    key = _pending_key(rec)
    return key, hashlib.sha256(json.dumps(key).encode()).hexdigest()[:10]


def approved_ids(log: str) -> set[str]:
    """The ids already approved for the decision log ``log`` (its ``.approved`` ledger)."""
    return _approved(log)


def pending(log: str, records: Iterable[dict[str, Any]] | None = None) -> list[Pending]:
    done = _approved(log)
    out: dict[tuple[Any, ...], Pending] = {}
    for rec in records if records is not None else read_log(log):
        entry = pending_entry(rec)
        if entry is None:
            continue
        key, pid = entry
        if pid in done:
            continue
        reason = str(rec.get("reason", ""))
        p = out.get(key)
        if p is None:
            p = out[key] = Pending(pid, key[0], key[1], key[2], key[3], key[4], key[5], first=rec.get("time", ""))
        p.count += 1
        p.last = rec.get("time", "")
        if reason not in p.reasons and len(p.reasons) < 3:
            p.reasons.append(reason)
    return sorted(out.values(), key=lambda p: (-p.count, p.id))


def _rule_key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(parts).lower()).strip("_")[:60]


def _granted_ips(policy: dict[str, Any] | None, host: str, port: int) -> list[str]:
    """``allowed_ips`` the policy already grants for host:port: a new rule for the same destination keeps them,
    so approving a binary never needs (nor silently widens) the operator's address grant."""
    found: list[str] = []
    for rule in ((policy or {}).get("network_policies") or {}).values():
        for ep in (rule or {}).get("endpoints") or []:
            ports = ep.get("ports") or ([ep["port"]] if "port" in ep else [])
            if str(ep.get("host", "")).lower() == host and port in ports:
                found += [str(ip) for ip in ep.get("allowed_ips") or [] if str(ip) not in found]
    return found


def _endpoint(
    host: str, port: int, requests: Iterable[tuple[str, str]] = (), allowed_ips: list[str] | None = None
) -> dict[str, Any]:
    ep: dict[str, Any] = {"host": host, "port": port}
    if allowed_ips:
        ep["allowed_ips"] = list(allowed_ips)
    rules = [{"allow": {"method": m, "path": p}} for m, p in sorted(set(requests))]
    if rules:
        ep["protocol"] = "rest"
        ep["rules"] = rules
    return ep


class ApproveError(Exception):
    """The approval was not written; the message says why (nothing was changed)."""


def approve(log: str, policy_path: str, pid: str, *, ledger: str | None = None, operator: str | None = None,
            lock_timeout: float | None = None, group: str = "clawfleet") -> dict[str, Any]:  # fmt: skip
    """Add the rule for pending item ``pid`` to ``policy_path``; returns the rule added. Raises KeyError (no such
    item), PolicyError, OSError (LockTimeout: another change holds the policy directory) or ApproveError."""
    from ruamel.yaml import YAML

    from . import apply as apply_mod
    from .canonical import digest
    from .loader import load_text

    match = [p for p in pending(log) if p.id == pid]
    if not match:
        raise KeyError(f"no pending approval with ID {pid!r} in {log}")
    p = match[0]
    requests = [(p.method, p.path)] if p.method and p.path and not any(c in p.path for c in "*?") else []
    with open(policy_path, "rb") as f:
        current = f.read()
    base_digest = digest(load_text(current, policy_path))
    yaml = YAML()  # round-trip: keeps the operator's comments and layout
    doc = yaml.load(current.decode("utf-8"))
    endpoint = _endpoint(p.host, p.port, requests, _granted_ips(doc, p.host, p.port))
    rule = {"name": f"approved {p.id}: {p.binary} -> {p.host}:{p.port}",
            "endpoints": [endpoint], "binaries": [{"path": p.binary}]}  # fmt: skip
    if doc.get("network_policies") is None:
        doc["network_policies"] = {}
    doc["network_policies"][_rule_key("approved", p.id)] = rule
    buf = io.StringIO()
    yaml.dump(doc, buf)
    text = buf.getvalue()
    load_text(text, policy_path)  # refuse to write a policy the gateway would reject
    directory, filename = os.path.split(os.path.abspath(policy_path))
    opts = apply_mod.ApplyOptions(
        name=filename.removesuffix(".yaml").removesuffix(".yml"), policy_dir=directory,
        live=os.path.join(directory, filename),
        ledger=ledger, operator=operator, source_commit=None, verify=False, group=group,
        expect_previous=base_digest, keep_owner=True, lock_timeout=lock_timeout,
    )  # fmt: skip
    out = apply_mod.apply_bytes(text.encode("utf-8"), f"{policy_path} + approval {p.id}", opts)
    if out["result"] != "applied":
        raise ApproveError(out["error"] or f"policy not changed ({out['result']})")
    done = _approved(log) | {p.id}
    write_atomic(_approved_file(log), json.dumps(sorted(done)), 0o644)
    return rule


def suggest(records: Iterable[dict[str, Any]], base: str | None = None) -> str:
    """Minimal policy YAML allowing exactly the observed (binary, host, port[, method, path]) traffic."""
    from clawfleet.policy import load_text
    from clawfleet.policy.yamlio import dump_yaml

    binaries: dict[tuple[str, int], set[str]] = {}
    requests: dict[tuple[str, int], dict[str, set[tuple[str, str]]]] = {}
    for rec in records:
        if not _is_decision(rec) or rec.get("kind") not in ("connect", *_REQUEST_KINDS):
            continue
        reason = str(rec.get("reason", ""))
        if reason.startswith(("caller not identified", "invalid host")):
            continue
        hp = (str(rec["host"]), int(rec["port"]))
        binaries.setdefault(hp, set()).add(rec["binary"])
        if _l7(rec):
            path = _path_only(rec["path"])
            if not any(c in path for c in "*?"):
                requests.setdefault(hp, {}).setdefault(rec["binary"], set()).add((rec["method"].upper(), path))
    doc: dict[str, Any] = {"version": 1}
    loaded: dict[str, Any] = {}
    if base:
        from ruamel.yaml import YAML

        with open(base, encoding="utf-8") as f:
            loaded = YAML(typ="safe").load(f) or {}
        for section in ("filesystem_policy", "landlock", "process"):
            if section in loaded:
                doc[section] = loaded[section]
    policies: dict[str, Any] = {}
    for (host, port), bins in sorted(binaries.items()):
        reqs = requests.get((host, port), {})
        if reqs:  # L7 observed: one rule per binary, exactly its requests
            for b in sorted(bins):
                policies[_rule_key("learned", host, str(port), os.path.basename(b))] = {
                    "name": f"learned: {b} -> {host}:{port}",
                    "endpoints": [_endpoint(host, port, reqs[b], _granted_ips(loaded, host, port))]
                    if reqs.get(b)
                    else [],
                    "binaries": [{"path": b}],
                }
            policies = {k: v for k, v in policies.items() if v["endpoints"]}
        else:
            policies[_rule_key("learned", host, str(port))] = {
                "name": f"learned: {host}:{port}",
                "endpoints": [_endpoint(host, port, (), _granted_ips(loaded, host, port))],
                "binaries": [{"path": b} for b in sorted(bins)],
            }
    doc["network_policies"] = policies
    text = dump_yaml(doc, header="Suggested by clawfleet policy suggest (learn mode): review before use.")
    load_text(text, "<suggested>")
    return text


# -- CLI ------------------------------------------------------------------------------------------------


def _cmd_pending(args: argparse.Namespace) -> int:
    items = pending(args.log)
    if args.json:
        print(json.dumps([p.to_dict() for p in items], indent=1))
        return 0
    if not items:
        print("no pending approvals")
        return 0
    for p in items:
        what = f"{p.method} {p.path} on " if p.method else ""
        print(f"{p.id}  {p.count:>5}x  {p.sandbox}: {p.binary} -> {what}{p.host}:{p.port}  ({p.reasons[0]})")
    return 0


def _cmd_approve(args: argparse.Namespace) -> int:
    from .apply import LockTimeout, default_operator
    from .errors import PolicyError

    try:
        rule = approve(args.log, args.policy, args.id, ledger=args.ledger or None,
                       operator=args.operator or default_operator(), lock_timeout=args.lock_timeout)  # fmt: skip
    except LockTimeout as exc:
        print(f"clawfleet policy approve: {exc.filename}: {exc.strerror}; nothing written", file=sys.stderr)
        return 1
    except ApproveError as exc:
        print(f"clawfleet policy approve: {exc}", file=sys.stderr)
        return 1
    except (KeyError, PolicyError, OSError) as exc:
        print(f"clawfleet policy approve: {exc}", file=sys.stderr)
        return 2
    print(f"added to {args.policy}: {rule['name']} (the gateway reloads it within a second)")
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from clawfleet.policy import PolicyError

    try:
        text = suggest(read_log(args.from_log), base=args.base)
    except (PolicyError, OSError) as exc:
        print(f"clawfleet policy suggest: {exc}", file=sys.stderr)
        return 2
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def register_policy_subcommands(sub: Any) -> None:
    """Add ``pending``, ``approve``, ``suggest`` to the ``clawfleet policy`` subparsers."""
    p = sub.add_parser("pending", help="list denied connections awaiting approval (from a gateway log)")
    p.add_argument("--log", required=True, metavar="FILE", help="the gateway's JSON decision log")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_pending)
    a = sub.add_parser("approve", help="write the rule for a pending approval into the policy (hot reload)")
    a.add_argument("id", metavar="ID")
    a.add_argument("--log", required=True, metavar="FILE", help="the gateway's JSON decision log")
    a.add_argument("--policy", required=True, metavar="FILE", help="the policy file the gateway watches")
    a.add_argument("--ledger", default=DEFAULT_LEDGER, help="audit ledger ('' for none), as for `policy apply`")
    a.add_argument("--operator", help="who approves (default: $SUDO_USER or the login user)")
    a.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                   help="give up when another policy change holds the lock this long (default: wait)")  # fmt: skip
    a.set_defaults(func=_cmd_approve)
    s = sub.add_parser("suggest", help="learn mode: a minimal policy allowing what a monitor-mode log observed")
    s.add_argument("--from-log", required=True, metavar="FILE")
    s.add_argument("--base", metavar="POLICY", help="copy filesystem/landlock/process from this policy")
    s.add_argument("-o", "--output", metavar="FILE")
    s.set_defaults(func=_cmd_suggest)
