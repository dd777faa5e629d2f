"""clawfleet: sandboxed, policy-governed AI agents across a fleet of Linux hosts."""

__version__ = "0.1.0"
