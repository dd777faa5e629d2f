"""The preflight role on this machine: a host that fails several checks is refused with every failure listed."""

from __future__ import annotations


def test_failing_host_lists_every_failed_check_and_its_fix(run_role):
    run = run_role(
        "preflight",
        {
            "preflight_min_kernel": "99.0",
            "preflight_min_landlock_abi": 99,
            "preflight_min_disk_gib": 10_000_000,
            "preflight_min_cpus": 512,
        },
    )
    assert run.rc != 0
    assert "is not ready for clawfleet (4 failed check(s))" in run.output
    for name, fix in [
        ("kernel", "upgrade the kernel"),
        ("landlock", "landlock"),
        ("disk", "free space"),
        ("cpus", "more vCPUs"),
    ]:
        assert f"[{name}:" in run.output, name
        assert fix in run.output, fix


def test_ignored_check_only_warns_and_the_host_passes(run_role):
    run = run_role("preflight", {"preflight_min_disk_gib": 10_000_000, "preflight_ignore_errors": ["disk"]})
    assert run.rc == 0, run.output
    assert "WARN disk" in run.output
    assert "is not ready" not in run.output


def test_default_thresholds_pass_on_this_machine(run_role):
    run = run_role("preflight", {})
    assert run.rc == 0, run.output
    assert "PASS landlock" in run.output and "PASS seccomp" in run.output
