"""Where clawfleet lives on a host: the one place these paths are written down (the Ansible roles create them).

Every runtime default below can be overridden by a flag or a config key; tests always do.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_SOCKET",
    "EMBEDDED_GATEWAY_ROOT",
    "ETC_DIR",
    "GATEWAY_STATE_DIR",
    "POLICY_DIR",
    "POLICY_LEDGER",
    "POLICY_STAGING_DIR",
    "RUNTIME_DIR",
    "SECRETS_DIR",
    "STATE_DIR",
    "VENV",
    "VENV_CLAWFLEET",
]

#: The runtime package's virtual environment (installed from the offline wheelhouse).
VENV = "/opt/clawfleet/venv"
VENV_CLAWFLEET = f"{VENV}/bin/clawfleet"

#: Configuration written by the roles.
ETC_DIR = "/etc/clawfleet"
POLICY_DIR = f"{ETC_DIR}/policies"  # NAME.yaml: the live policy of sandbox NAME (hot-reloaded)
SECRETS_DIR = f"{ETC_DIR}/secrets"  # root-only secret files the gateway injects

#: Persistent state.
STATE_DIR = "/var/lib/clawfleet"
GATEWAY_STATE_DIR = f"{STATE_DIR}/gateway"  # per-sandbox output, decision logs, CA keys
POLICY_LEDGER = f"{STATE_DIR}/policy-ledger.jsonl"  # the hash-chained audit trail of policy changes
POLICY_STAGING_DIR = f"{STATE_DIR}/policy-staging"  # where `fleet push` uploads a policy before applying it

#: Runtime state (tmpfs, gone at reboot).
RUNTIME_DIR = "/run/clawfleet"  # sandboxes/NAME.json (published pids), gateway/NAME/ (CA bundles)
CONTROL_SOCKET = f"{RUNTIME_DIR}/gateway.sock"  # the supervisor's control socket (root only)
EMBEDDED_GATEWAY_ROOT = f"{RUNTIME_DIR}/gateway"  # CA bundles of `sandbox run`'s embedded gateways
