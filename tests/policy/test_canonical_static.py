"""static_digest: what a running sandbox cannot take without a restart, and only that."""

from __future__ import annotations

from clawfleet.policy import load_text, static_digest

BASE = """\
version: 1
filesystem_policy:
  read_only: [/usr]
  read_write: [/sandbox]
process:
  run_as_user: sandbox
network_policies:
  api: {name: api, endpoints: [{host: a.test, port: 443}], binaries: [{path: /usr/bin/curl}]}
"""


def test_network_changes_leave_it_alone() -> None:
    other = BASE.replace("a.test", "b.test").replace("port: 443", "port: 8443")
    assert static_digest(load_text(BASE)) == static_digest(load_text(other))


def test_filesystem_process_and_landlock_changes_move_it() -> None:
    base = static_digest(load_text(BASE))
    for changed in (
        BASE.replace("read_only: [/usr]", "read_only: [/usr, /etc]"),
        BASE.replace("run_as_user: sandbox", "run_as_user: other"),
        BASE + "landlock: {compatibility: best_effort}\n",
    ):
        assert static_digest(load_text(changed)) != base, changed
