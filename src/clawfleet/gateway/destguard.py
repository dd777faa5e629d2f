"""The destination guard for one caller: an address is reached only under a rule that allows THIS caller.

``allowed_ips`` belongs to an endpoint of a rule, and a rule lists binaries. Merging the ``allowed_ips`` of
every endpoint that names a host:port would let a binary allowed that host:port by one rule reach the
addresses another rule grants to another binary (curl granted ``localhost:8080`` on 127.0.0.1 must not
open the host's loopback to python3, which is allowed ``localhost:8080`` without ``allowed_ips``). So each
address the gateway is about to connect to is decided again by the policy engine for the caller, with that
address (``resolved_ip``): only the endpoints that both allow the caller and grant the address count. For a
request inside a tunnel or in absolute form the same holds with its method and path, so an L7 rule of an
endpoint without the grant cannot carry a request to that address.
"""

from __future__ import annotations

from clawfleet.policy import Decision
from clawfleet.policy.engine import Engine

from .addr import guard_ip
from .ident import Caller

__all__ = ["address_verdict"]


def address_verdict(engine: Engine, caller: Caller | None, decision: Decision, host: str, port: int, ip: str,
                    method: str | None = None, path: str | None = None, body: bytes | None = None,
                    content_type: str | None = None) -> str | None:  # fmt: skip
    """``None`` if ``ip`` may be connected to for this caller's ``decision`` on host:port; else why not.

    Only monitor mode lets a denied decision (or an unidentified caller) reach this point; then the guard
    still applies, with the grants of every endpoint for host:port, as monitor mode logs what enforce mode
    would refuse rather than opening addresses no rule grants.
    """
    if caller is not None and caller.pin_error is None and decision.allowed:
        d = engine.decide(caller.exe, caller.ancestors, host, port, method=method, path=path, resolved_ip=ip,
                          body=body, content_type=content_type)  # fmt: skip
        if d.allowed:
            return None
        return f"address {ip} is not granted (allowed_ips) by a rule that allows this caller: {d.reason}"
    granted = tuple(a for c in engine.candidates(host, port) for a in c.endpoint.allowed_ips)
    return guard_ip(ip, granted)
