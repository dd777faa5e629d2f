"""``python -m clawfleet.supervisor run-sandbox DEFINITION RUNTIME_DIR``: how the daemon launches a sandbox
process (:func:`clawfleet.supervisor.attach.run_attached_sandbox`) without loading the command line;
``gateway-parser-forkserver FD DAEMON_PID``: the process that forks the sandboxes' unprivileged proxies
(:mod:`clawfleet.gateway.privsep`, :mod:`clawfleet.gateway.parser_forkserver`)."""

from __future__ import annotations

import sys

from clawfleet.supervisor.attach import run_attached_sandbox


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "run-sandbox":
        return run_attached_sandbox(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "gateway-parser-forkserver":  # forks the unprivileged proxies (privsep)
        from clawfleet.gateway.privsep import forkserver_main

        return forkserver_main(argv[1:])
    print("usage: python -m clawfleet.supervisor run-sandbox DEFINITION RUNTIME_DIR | gateway-parser-forkserver FD PID",
          file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main())
