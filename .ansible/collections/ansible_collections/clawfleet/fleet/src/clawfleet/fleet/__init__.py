"""clawfleet fleet: policy rollouts to many hosts without Ansible (``clawfleet fleet push|status``), through
pyinfra's Python API (extra ``fleet``; controller only, not installed on hosts). See docs/fleet.md."""
