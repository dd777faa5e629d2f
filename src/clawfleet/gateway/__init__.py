"""clawfleet egress gateway: the sandbox's only way out (see docs/gateway.md).

Modules: :mod:`.addr` (targets, address normalisation, destination guard), :mod:`.ident` (caller
identification from the kernel), :mod:`.ca` (per-sandbox CA), :mod:`.proxy` (the asyncio + h11 proxy),
:mod:`.reload` (hot reload), :mod:`.config` (settings, decision log), :mod:`.listen` (a listening socket in a
sandbox's namespace, the sandbox's proxy variables), :mod:`.assembly` (the one way a gateway is put together),
:mod:`.cli` (``gateway proxy``). Running sandboxes with their gateways is :mod:`clawfleet.supervisor`'s job.
"""
