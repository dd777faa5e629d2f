"""clawfleet egress gateway: the sandbox's only way out (see docs/gateway.md).

Modules: :mod:`.addr` (targets, address normalisation, destination guard), :mod:`.ident` (caller
identification from the kernel), :mod:`.ca` (per-sandbox CA), :mod:`.proxy` (the asyncio + h11 proxy),
:mod:`.reload` (hot reload), :mod:`.embedded` (gateway + sandbox in one supervisor), :mod:`.approvals`
(pending / approve / suggest), :mod:`.control` (daemon and control socket), :mod:`.cli`.
"""
