"""Issue 14, findings 3, 5 and 8 from INSIDE a real sandbox: curl as the sandbox user sends the ambiguous paths,
a GET carrying a second request, and a path crafted to make glob matching backtrack, through the gateway to a
recording origin on 127.0.0.1. Root only (CI runs as root, so nothing skips there)."""

from __future__ import annotations

import os

import pytest

from .test_sandbox import box, world  # noqa: F401  (fixtures: a real sandbox, origins on 127.0.0.1)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")


def test_ambiguous_paths_get_bodies_and_backtracking_paths_from_a_sandbox(box, world):  # noqa: F811
    e = world["echo"].port
    box.write_policy(f"""\
    site:
      name: site
      endpoints:
        - host: origin.test
          port: {e}
          allowed_ips: [127.0.0.1/32]
          protocol: rest
          rules:
            - allow: {{method: GET, path: "/ok/**"}}
            - allow: {{method: GET, path: "/files/*-*-*.txt"}}
          deny_rules:
            - {{method: GET, path: "/ok/admin/**"}}
      binaries: [{{path: /usr/bin/curl}}]
    """)
    base = f"https://origin.test:{e}"
    smuggled = f"GET /ok/admin/x HTTP/1.1\\r\\nHost: origin.test:{e}\\r\\n\\r\\n"
    long_path = "/files/" + "-" * 7000
    before = len(world["echo"].seen)
    proc = box.sh(f"""
        c() {{ curl -s -o /dev/null --max-time 60 -w '%{{http_code}}' --path-as-is "$@"; echo " $?"; }}
        c {base}/ok/a
        c '{base}/ok/admin;x/y'
        c '{base}/ok/admin;/x'
        c '{base}/ok/..;/admin/x'
        c '{base}/ok/%2e%2e/admin/x'
        c '{base}/ok/admin%20/x'
        c {base}/ok/admin
        c {base}/ok/%61dmin/x
        c {base}/ok/%61bc
        c -X GET --data-binary "$(printf '{smuggled}')" {base}/ok/a
        c {base}{long_path}
        c {base}/files/a-b-c.txt
    """)
    lines = proc.stdout.split("\n")
    assert lines[:12] == ["200 0", "400 0", "400 0", "400 0", "400 0", "400 0", "403 0", "403 0", "200 0",
                          "400 0", "403 0", "200 0"], proc  # fmt: skip
    seen = [r["path"] for r in world["echo"].seen[before:]]
    assert seen == ["/ok/a", "/ok/abc", "/files/a-b-c.txt"]  # the origin got only the allowed, canonical paths
    recs = [r for r in box.records() if r.get("kind") == "tls_request"]
    assert all(r["binary"] == "/usr/bin/curl" for r in recs)
    assert [r["path"] for r in recs if r["action"] == "allow"] == seen  # judged == received
