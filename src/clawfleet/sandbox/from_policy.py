"""A policy (plus what the caller adds) becomes a :class:`SandboxSpec`: the one place that maps a policy's
filesystem, Landlock and process sections onto the kernel sandbox. ``clawfleet sandbox run`` (flags) and sandbox
definition files (:mod:`clawfleet.sandbox.definition`) both come through here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clawfleet.policy.model import Policy
from clawfleet.sandbox import environment
from clawfleet.sandbox.spec import DEFAULT_TMP_MAX, ENFORCE, SANDBOX_WORKDIR, SandboxSpec, resolve_user

__all__ = ["spec_from_policy"]


def spec_from_policy(
    policy: Policy,
    *,
    argv: Sequence[str],
    workdir: str,
    environ: Mapping[str, str],
    user: str | None = None,
    group: str | None = None,
    explicit_env: Mapping[str, str] | None = None,
    credentials: Sequence[str] = (),
    memory_max: int | None = None,
    pids_max: int | None = 4096,
    tmp_max: int = DEFAULT_TMP_MAX,
    landlock_max_abi: int | None = None,
    mode: str = ENFORCE,
    log: str | None = None,
) -> SandboxSpec:
    """The spec of ``argv`` confined by ``policy``. ``user`` defaults to the policy's ``process.run_as_user``
    (else ``sandbox``); ``group`` is passed as given (None: the user's primary group). The sandbox's environment
    is built from ``environ`` (see :mod:`clawfleet.sandbox.environment`). Raises ValueError (SpecError, EnvError)."""
    fs = policy.filesystem
    read_write = tuple(fs.read_write)
    if fs.include_workdir and SANDBOX_WORKDIR not in read_write:
        read_write += (SANDBOX_WORKDIR,)
    name, uid, gid = resolve_user(user or policy.process.run_as_user or "sandbox", group)
    env = environment.build(dict(environ), name, explicit=dict(explicit_env or {}), credentials=list(credentials))
    return SandboxSpec(
        argv=tuple(argv),
        workdir=workdir,
        uid=uid,
        gid=gid,
        user=name,
        read_only=tuple(fs.read_only),
        read_write=read_write,
        landlock_compat=policy.landlock.compatibility,
        landlock_max_abi=landlock_max_abi,
        memory_max=memory_max,
        pids_max=pids_max,
        tmp_max=tmp_max,
        env=env,
        mode=mode,
        log=log,
    )
