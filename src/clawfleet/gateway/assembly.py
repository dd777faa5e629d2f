"""The one way a gateway is put together: decision log, policy holder (hot reload), interception CA, binary pins
and the proxy, from a :class:`GatewayConfig`. Used by the supervisor's embedded and attached modes, the
stand-alone ``clawfleet gateway proxy`` and the test fixture, so the parts are wired (and closed) alike."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ca import SandboxCA
from .config import DecisionLog, GatewayConfig
from .ident import Caller, HashPins
from .proxy import Gateway
from .reload import PolicyHolder

if TYPE_CHECKING:  # metrics (prometheus_client) is the caller's, when it exports any: not on the sandbox start path
    import os

    from clawfleet.policy.model import Policy

    from .metrics import GatewayMetrics

__all__ = ["AssembledGateway", "Identify", "assemble", "assembled"]

#: (peer, local) address -> the calling process (see :mod:`.ident`).
Identify = Callable[[tuple, tuple], "Caller | Awaitable[Caller]"]


@dataclass
class AssembledGateway:
    config: GatewayConfig
    log: DecisionLog
    holder: PolicyHolder
    ca: SandboxCA
    pins: HashPins | None
    gateway: Gateway

    metrics: GatewayMetrics | None = None

    async def aclose(self) -> None:
        """Stop serving (open connections are cancelled), then close the CA and the log."""
        await self.gateway.close()
        self.close_files()

    def close_files(self) -> None:
        if self.metrics is not None:
            self.metrics.remove(self.config.sandbox, self.gateway)
        self.ca.close()
        self.log.close()


def assemble(config: GatewayConfig, *, ca: SandboxCA | None = None, identify: Identify | None = None,
             metrics: GatewayMetrics | None = None,
             policy: tuple[Policy, os.stat_result] | None = None) -> AssembledGateway:  # fmt: skip
    """The parts of one gateway. ``ca``: a CA to present (default: a fresh one named after ``config.sandbox``);
    ``identify``: how callers are identified (None until a namespace is known); ``metrics``: the process's
    Prometheus registry to count into (see :mod:`.metrics`); ``policy``: ``config.policy`` already loaded, with
    its file's stat (see :class:`.reload.PolicyHolder`). Raises PolicyError when the policy does not load or does
    not compile (nothing is left open)."""
    log = DecisionLog(config.log, sandbox=config.sandbox)
    try:
        if config.ocsf_log:
            from .ocsf import OcsfContext, OcsfLog  # only with an OCSF file: not on the sandbox start path

            log.observers.append(OcsfLog(config.ocsf_log, OcsfContext(config.sandbox, config.listen_port)))
        holder = PolicyHolder(config.policy, log, config.providers, loaded=policy)
    except BaseException:
        log.close()
        raise
    ca = ca if ca is not None else SandboxCA(config.sandbox)
    pins = HashPins(config.pins_file) if config.pin_binaries else None
    gateway = Gateway(config, holder, log, identify, ca)
    if metrics is not None:
        gateway.metrics = metrics
        log.observers.append(metrics.add(config.sandbox, gateway, holder, config.log))
    return AssembledGateway(config, log, holder, ca, pins, gateway, metrics)


@contextlib.contextmanager
def assembled(config: GatewayConfig, *, ca: SandboxCA | None = None, identify: Identify | None = None,
              metrics: GatewayMetrics | None = None) -> Iterator[AssembledGateway]:  # fmt: skip
    """:func:`assemble` for a ``with`` block; the caller stops serving (``await parts.gateway.close()``) inside
    it, the CA and the log are closed on the way out."""
    parts = assemble(config, ca=ca, identify=identify, metrics=metrics)
    try:
        yield parts
    finally:
        parts.close_files()
