"""The kernel sandbox: namespaces, Landlock, seccomp, cgroups. See docs/sandbox.md.

Kernel-facing modules take a :class:`~clawfleet.sandbox.spec.SandboxSpec`; only ``cli`` reads policies.
Nothing is imported here so that ``clawfleet`` stays fast to start.
"""
