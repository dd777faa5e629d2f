"""``python -m clawfleet.supervisor run-sandbox DEFINITION RUNTIME_DIR``: how the daemon launches a sandbox
process (:func:`clawfleet.supervisor.attach.run_attached_sandbox`) without loading the command line;
``gateway-parser``: how it starts a sandbox's unprivileged proxy (:mod:`clawfleet.gateway.privsep`)."""

from __future__ import annotations

import sys

from clawfleet.supervisor.attach import run_attached_sandbox


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "run-sandbox":
        return run_attached_sandbox(argv[1], argv[2])
    if argv == ["gateway-parser"]:  # one sandbox's unprivileged proxy, started by the daemon (privsep)
        from clawfleet.gateway.privsep import parser_main

        return parser_main()
    print("usage: python -m clawfleet.supervisor run-sandbox DEFINITION RUNTIME_DIR | gateway-parser", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
