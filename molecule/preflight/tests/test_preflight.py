"""Preflight ran the real checks inside the container and cached the facts other roles use."""

import json


def test_stable_facts_are_cached(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/clawfleet_preflight.fact").content_string)
    assert fact["landlock_abi"] >= 1
    assert fact["machine"] == host.system_info.arch
    codename = host.system_info.codename
    assert fact["distro"] == {"bookworm": "debian 12", "trixie": "debian 13"}[codename]
    assert fact["gpu_count"] == 0


def test_the_same_check_runs_from_the_probe(host):
    out = host.run(
        "PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/usr/local/lib/clawfleet-probe python3 -m clawfleet.host check --json"
    )
    assert out.rc == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    verdicts = {c["name"]: c["verdict"] for c in report["checks"]}
    assert verdicts["landlock"] == verdicts["seccomp"] == verdicts["namespaces"] == "pass"


def test_probe_is_sources_only(host):
    listing = host.run("find /usr/local/lib/clawfleet-probe -type f").stdout.split()
    assert listing and all(path.endswith(".py") for path in listing)
    assert "/usr/local/lib/clawfleet-probe/clawfleet/host/checks.py" in listing
