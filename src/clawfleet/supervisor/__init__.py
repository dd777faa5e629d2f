"""The supervisor: runs sandboxes with their gateways (see docs/gateway.md, "Daemon").

Modules: :mod:`.config` (the daemon config file), :mod:`.check` (``clawfleet gateway check``), :mod:`.embedded`
(a sandbox and its gateway in one process: ``clawfleet sandbox run``), :mod:`.attach` (a sandbox and its gateway
as two processes: the gateway attaches to a running sandbox's namespace), :mod:`.daemon` (``clawfleet gateway
serve``: starts, restarts and stops sandboxes), :mod:`.control_server` and :mod:`.control_client` (the control
socket: ``clawfleet sandbox list|status|logs|connect|stop``), :mod:`.cli`.

Depends on :mod:`clawfleet.sandbox` and :mod:`clawfleet.gateway`; neither depends on it.
"""
