"""After side_effect.yml: the runtime link points at the 0.1.1 venv, the 0.1.0 venv is kept for rollback, the
services were restarted after the switch in order, and both failed upgrades left the 0.1.0 link in place."""

import json

import pytest

LINK = "/opt/clawfleet/venv"
UNITS = ["clawfleet-router.service", "clawfleet-gateway.service", "clawfleet-sandbox@demo.service"]


@pytest.fixture
def record(host):
    return json.loads(host.check_output("cat /root/runtime-upgrades.json"))


def _link_mtime_monotonic_usec(host) -> int:
    # The link's mtime on the clock systemd stamps units with (see restart-stale.py).
    code = f"import os,time; print(int((os.lstat('{LINK}').st_mtime - time.time() + time.monotonic()) * 1e6))"
    return int(host.check_output(f'/usr/bin/python3 -c "{code}"'))


def _started(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show --property=ActiveEnterTimestampMonotonic --value {unit}"))


def test_link_points_at_the_new_digest_venv(host, record):
    target = host.check_output(f"readlink {LINK}")
    assert target == f"/opt/clawfleet/venvs/{record['v2_digest'][7:23]}"
    assert host.file(f"{target}/.clawfleet-bundle").content_string == record["v2_digest"]
    assert host.file(f"{target}/.clawfleet-complete").exists
    assert host.check_output("/usr/local/bin/clawfleet --version").startswith("clawfleet 0.1.1")


def test_previous_venv_is_kept_for_rollback(host, record):
    previous = record["v1_venv"]
    assert previous.startswith("/opt/clawfleet/venvs/") and previous != host.check_output(f"readlink {LINK}")
    assert host.file("/opt/clawfleet/venvs/.previous").content_string.strip() == previous
    assert host.file(f"{previous}/.clawfleet-complete").exists
    assert host.check_output(f"{previous}/bin/python -c 'import clawfleet; print(clawfleet.__version__)'") == "0.1.0"


def test_services_restarted_after_the_switch_in_order(host, record):
    cut = _link_mtime_monotonic_usec(host)
    started = [_started(host, unit) for unit in UNITS]
    assert all(host.service(unit).is_running for unit in UNITS)
    assert all(t > cut for t in started), (cut, started)
    assert started == sorted(started)  # router, then gateway, then sandbox
    assert record["restarted"] == UNITS
    assert record["venv_built"] == "reused"  # complete since the rolled-back attempt: not installed twice


def test_corrupt_bundle_left_the_previous_link(record):
    assert record["link_after_corrupt"] == record["v1_venv"]
    assert "bundle verification failed, nothing installed" in record["corrupt_msg"]


def test_failed_upgrade_rolled_back_to_the_previous_link(record):
    assert record["link_after_rollback"] == record["v1_venv"]
    msg = record["poisoned_msg"]
    assert "runtime upgrade to " + record["v2_digest"] in msg
    assert '"Restart the services still running older code (router, gateway, sandboxes)"' in msg
    assert "clawfleet-gateway.service" in msg
    assert f"Rolled back: {LINK} points at {record['v1_venv']} again" in msg
    # The gateway that failed on 0.1.1 came back on 0.1.0.
    assert record["gateway_after_rollback"] == "active"
