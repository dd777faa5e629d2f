"""Verify a host converged by site.yml: packages, group and directory modes as the base role promises."""

import pytest


@pytest.mark.parametrize("package", ["python3", "python3-venv", "ca-certificates", "iproute2", "libseccomp2"])
def test_runtime_prerequisites_installed(host, package):
    assert host.package(package).is_installed


def test_clawfleet_group_is_a_system_group(host):
    group = host.group("clawfleet")
    assert group.exists
    assert group.gid < 1000


@pytest.mark.parametrize(
    ("path", "group", "mode"),
    [
        ("/etc/clawfleet", "root", 0o755),
        ("/etc/clawfleet/policies", "clawfleet", 0o750),
        ("/etc/clawfleet/secrets", "root", 0o700),
        ("/var/lib/clawfleet", "clawfleet", 0o750),
        ("/var/log/clawfleet", "clawfleet", 0o750),
    ],
)
def test_directories_have_tight_modes(host, path, group, mode):
    d = host.file(path)
    assert d.is_directory
    assert d.user == "root"
    assert d.group == group
    assert d.mode == mode


def test_systemd_is_pid1_and_running(host):
    # The roles that follow install services: the test host must be a real systemd host, not a shell.
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state == "running", f"{state}; failed units:\n{failed}"
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
