"""The kernel sandbox: namespaces, Landlock, seccomp, cgroups. See docs/sandbox.md.

Kernel-facing modules take a :class:`~clawfleet.sandbox.spec.SandboxSpec`; only :mod:`.from_policy` (and its
callers :mod:`.run_args` and :mod:`.definition`) read policies. The package imports :mod:`clawfleet.policy` and
level 0, nothing else (no gateway, router, fleet or supervisor). Nothing is imported here so that ``clawfleet``
stays fast to start.
"""
