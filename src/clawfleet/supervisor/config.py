"""The daemon config file (``clawfleet gateway serve --config FILE``)::

    state_dir: /var/lib/clawfleet/gateway        # per-sandbox output, decision logs, CA keys (ca/, 0700)
    control_socket: /run/clawfleet/gateway.sock  # unix socket, root only (0600)
    runtime_dir: /run/clawfleet                  # sandboxes/NAME.json (published pids), gateway/NAME/ (CA bundle)
    launch_sandboxes: true                       # false: systemd runs them (clawfleet-sandbox@NAME.service)
    sandboxes: [agents/coder.yaml, agents/researcher.yaml]   # sandbox definition files (clawfleet.sandbox.definition)
    ocsf_logs: false                             # true: OCSF JSON lines in state_dir/NAME.ocsf.jsonl as well
    metrics_listen: 127.0.0.1:9464               # or unix:/run/clawfleet/gateway-metrics.sock; default: none
    gateway_user: clawfleet-gateway              # each sandbox's proxy runs as this user, without privileges
                                                 # (clawfleet.gateway.privsep); absent: in the daemon (root)

Relative paths are relative to the file. Problems are reported as ``FILE:LINE:COL: key: message``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from clawfleet import paths
from clawfleet.gateway.metrics import MetricsError, parse_listen
from clawfleet.sandbox.definition import DefinitionError, load_mapping

__all__ = ["DAEMON_KEYS", "DaemonConfig", "load_daemon_config"]

DAEMON_KEYS = frozenset({"state_dir", "control_socket", "runtime_dir", "launch_sandboxes", "sandboxes", "ocsf_logs",
                         "metrics_listen", "gateway_user"})  # fmt: skip


@dataclass(frozen=True)
class DaemonConfig:
    path: str
    state_dir: str
    control_socket: str
    runtime_dir: str
    launch_sandboxes: bool
    sandboxes: tuple[str, ...]  # definition files, absolute
    ocsf_logs: bool = False  # every sandbox's gateway also writes OCSF lines (docs/gateway.md "OCSF events")
    metrics_listen: str | None = None  # Prometheus metrics (docs/gateway.md "Metrics"): loopback or unix socket
    gateway_user: str | None = None  # the user of the unprivileged parser processes (None: parse in the daemon)
    problems: tuple[str, ...] = ()  # what the daemon tolerates and `gateway check` refuses (unknown keys)


def load_daemon_config(path: str) -> DaemonConfig:
    """Raises DefinitionError (positioned) or OSError."""
    doc = load_mapping(path)
    data = doc.data
    base = os.path.dirname(os.path.abspath(path))
    items = data.get("sandboxes") or []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise DefinitionError.at(doc, ("sandboxes",), "expected a list of definition files")
    ocsf_logs = data.get("ocsf_logs", False)
    if not isinstance(ocsf_logs, bool):
        raise DefinitionError.at(doc, ("ocsf_logs",), "expected true or false")
    metrics_listen = data.get("metrics_listen")
    if metrics_listen is not None:
        try:
            parse_listen(metrics_listen)
        except MetricsError as exc:
            raise DefinitionError.at(doc, ("metrics_listen",), str(exc)) from None
    user = data.get("gateway_user")
    if user is not None and (not isinstance(user, str) or not user):
        raise DefinitionError.at(doc, ("gateway_user",), "expected a user name")
    unknown = sorted(set(data) - DAEMON_KEYS)
    problems: tuple[str, ...] = ()
    if unknown:
        message = f"unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(DAEMON_KEYS))})"
        problems = (str(doc.problem((unknown[0],), message, at_key=True)),)
    return DaemonConfig(
        path=os.path.abspath(path),
        state_dir=os.path.join(base, str(data.get("state_dir", paths.GATEWAY_STATE_DIR))),
        control_socket=os.path.join(base, str(data.get("control_socket", paths.CONTROL_SOCKET))),
        runtime_dir=os.path.join(base, str(data.get("runtime_dir", paths.RUNTIME_DIR))),
        launch_sandboxes=bool(data.get("launch_sandboxes", True)),
        sandboxes=tuple(os.path.join(base, item) for item in items),
        gateway_user=user,
        problems=problems,
        ocsf_logs=ocsf_logs,
        metrics_listen=metrics_listen,
    )
