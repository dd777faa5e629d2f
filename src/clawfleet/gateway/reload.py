"""The live policy: loaded at start, re-read when the file changes, the last good one kept on error.

The file is polled (``stat``: inode, size, mtime_ns) every ``interval`` seconds (100 ms by default), so a
change is applied well under a second after the file lands, whether it was edited in place or replaced
by rename. An invalid file is logged (``{"event": "reload", "ok": false, "error": ...}``) and ignored.
Changes to static sections (filesystem_policy, landlock, process, version) cannot take effect in a running
sandbox: the network part is applied and the record says ``"static_changed": [...], "needs_restart": true``.
A policy whose ``credential_binding`` names a provider the gateway does not have is invalid here, at start and on
reload (``clawfleet.policy.require_bindings``): ``policy apply`` then sees the digest unconfirmed and rolls back.

Providers v2: the gateway enforces the *effective* policy, the file's (the *base* policy) plus one
``_provider_<name>`` rule per configured provider whose profile has endpoints (``clawfleet.policy.compose``, as
upstream composes it), so a provider's endpoints are reachable for its profile's binaries without being copied
into every policy. The composition is redone on every reload; a user policy cannot hold these names (the loader
refuses them), so a provider rule never replaces a rule of the file's.

Which digest is reported: ``digest`` (decision log, daemon status ``policy_digest``, metrics) stays the *base*
policy's, the file an operator wrote: ``policy apply`` waits for it and ``policy status`` compares it, with no need
to know the gateway's providers. The providers are fixed for the gateway's life (a ``providers:`` change needs a
restart), so base digest and gateway configuration name the effective policy; its own digest is reported beside
it as ``effective_digest`` (the ``listening`` and ``reload`` records, daemon status), the same as
``clawfleet policy digest FILE --provider NAME=PROFILE`` prints offline.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping

from clawfleet.policy import Engine, PolicyError, compile_policy, compose, diff, digest, load_file, require_bindings
from clawfleet.policy.model import Policy
from clawfleet.policy.profiles import ProviderProfile

from .config import DecisionLog

__all__ = ["PolicyHolder"]


class PolicyHolder:
    def __init__(self, path: str, log: DecisionLog | None = None,
                 providers: Mapping[str, ProviderProfile] | None = None,
                 loaded: tuple[Policy, os.stat_result] | None = None) -> None:  # fmt: skip
        """``providers``: the gateway's provider instances, which the policy's credential bindings must name and
        whose profiles' endpoints are composed into the policy enforced. ``loaded``: the file at ``path`` already
        parsed by the caller, with the stat taken before it was read (``clawfleet.policy.load_file_and_stat``; the
        sandbox's own policy, for `clawfleet sandbox run`): any later change to the file differs from that stat, so
        :meth:`check` reloads it as it would a file read here."""
        self.path = path
        self.log = log
        self.providers = dict(providers or {})
        if loaded is None:
            self._sig = self._stat()
            base = self._load()  # an invalid policy at start is fatal (PolicyError)
        else:
            base, st = loaded
            self._sig = _signature(st)
            require_bindings(base, self.providers)  # as _load does
        self.static_policy = base  # what the sandbox was built with
        self._set(base, *self._effective(base))
        self.generation = 0
        self._lock = threading.Lock()

    @classmethod
    def given(cls, policy: Policy, providers: Mapping[str, ProviderProfile] | None = None) -> PolicyHolder:
        """A holder without a file, for the unprivileged parser process (:mod:`.privsep`): the privileged process
        watches the file (it may be unreadable here) and hands every new *base* policy over (:meth:`replace`);
        each process composes it with the same ``providers`` (the gateway's configuration), so both report the
        same digests."""
        self = cls.__new__(cls)
        self.path, self.log, self._sig, self.providers = "", None, None, dict(providers or {})
        self.static_policy = policy
        self._set(policy, *self._effective(policy))
        self.generation = 0
        self._lock = threading.Lock()
        return self

    def _effective(self, base: Policy) -> tuple[Policy, Engine]:
        """The policy enforced (``base`` plus the providers' rules) and its engine; PolicyError if it does not
        compile."""
        policy = compose(base, self.providers)
        return policy, compile_policy(policy)

    def _set(self, base: Policy, policy: Policy, engine: Engine) -> None:
        #: the file's policy (what policy apply writes; ``digest`` is its digest)
        self.base = base
        #: the effective policy the engine enforces: ``base`` plus the ``_provider_*`` rules
        self.policy, self.engine = policy, engine
        self.digest, self.effective_digest = digest(base), digest(policy)

    def replace(self, policy: Policy) -> None:
        """Apply a base policy handed over by the process that watches the file (already logged there)."""
        effective = self._effective(policy)
        with self._lock:
            self._set(policy, *effective)
            self.generation += 1

    def _load(self) -> Policy:
        policy = load_file(self.path)
        require_bindings(policy, self.providers)
        return policy

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            return _signature(os.stat(self.path))
        except OSError:
            return None

    def check(self) -> bool:
        """Reload if the file changed; True if a new policy was applied."""
        if not self.path:
            return False
        sig = self._stat()
        if sig == self._sig or sig is None:
            return False
        with self._lock:
            self._sig = sig
            try:
                new = self._load()
                new_digest = digest(new)
                if new_digest == self.digest:  # touched, not changed: nothing to compose or compile
                    return False
                effective = self._effective(new)
            except PolicyError as exc:
                self._emit({"event": "reload", "ok": False, "error": str(exc).splitlines()[:20],
                            "kept_digest": self.digest})  # fmt: skip
                return False
            changes = diff(self.base, new)
            static = sorted({c.section for c in diff(self.static_policy, new).changes if c.static})
            old = self.digest
            self._set(new, *effective)
            self.generation += 1
            record = {"event": "reload", "ok": True, "old_digest": old, "digest": new_digest,
                      "effective_digest": self.effective_digest,
                      "changes": [c.label for c in changes.changes]}  # fmt: skip
            if static:
                record.update(static_changed=static, needs_restart=True)
            self._emit(record)
            return True

    def _emit(self, record: dict) -> None:
        if self.log is not None:
            self.log.write(record)

    async def watch(self, interval: float = 0.1) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.log is not None:
                self.log.flush()
            try:
                self.check()
            except Exception as exc:  # never let the watcher die
                self._emit({"event": "reload", "ok": False, "error": [f"{type(exc).__name__}: {exc}"]})


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a changed policy file (edited in place or replaced by rename)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
