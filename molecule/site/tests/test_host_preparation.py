"""Verify a host converged by the whole site.yml: preflight facts, base layout, swap, GPU skip, Docker, runtime."""

import json

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
    # The roles install services: the test host must be a real systemd host, not a shell.
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state == "running", f"{state}; failed units:\n{failed}"
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_preflight_passed_and_cached_its_facts(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/clawfleet_preflight.fact").content_string)
    assert fact["landlock_abi"] >= 1
    assert fact["distro"].startswith("debian ")


def test_swap_file_prepared(host):
    swapfile = host.file("/swapfile")
    assert swapfile.mode == 0o600 and swapfile.user == "root"
    assert "/swapfile none swap sw 0 0" in host.file("/etc/fstab").content_string


def test_gpu_stack_skipped_on_a_gpu_less_host(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/clawfleet_gpu.fact").content_string)
    assert fact["present"] is False
    assert not host.file("/etc/systemd/system/clawfleet-vllm.service").exists


def test_docker_engine_runs_with_the_systemd_cgroup_driver(host):
    assert host.service("docker").is_running
    assert host.check_output("docker info --format '{{.CgroupDriver}}'") == "systemd"


def test_runtime_installed_from_the_bundle(host):
    assert host.check_output("clawfleet --version").startswith("clawfleet ")
    assert host.file("/opt/clawfleet/venv/.clawfleet-bundle").content_string.startswith("sha256:")
    report = json.loads(host.run("clawfleet host check --json").stdout)
    verdicts = {c["name"]: c["verdict"] for c in report["checks"]}
    assert verdicts["landlock"] == verdicts["seccomp"] == "pass"
