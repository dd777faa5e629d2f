"""``clawfleet host check``: this machine, the real captured GPU hosts, and synthetic hosts that must fail."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet.gpu.detect import detect_from_dir
from clawfleet.host import checks, facts
from clawfleet.host.checks import GIB, evaluate
from clawfleet.host.facts import Facts

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gpu-hosts"


def _verdicts(report: dict) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in report["checks"]}


def test_this_machine_json_report_and_exit_code():
    proc = subprocess.run([sys.executable, "-m", "clawfleet.cli", "host", "check", "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    names = [c["name"] for c in report["checks"]]
    assert names == ["distro", "machine", "kernel", "landlock", "seccomp", "namespaces", "user_namespaces",
                     "cgroups", "memory", "disk", "cpus", "gpu"]  # fmt: skip
    for c in report["checks"]:
        assert set(c) == {"name", "value", "requirement", "verdict", "required", "fix"}
        assert c["verdict"] in ("pass", "warn", "fail")
    assert report["ok"] == all(c["verdict"] != "fail" for c in report["checks"] if c["required"])
    v = _verdicts(report)
    # Expected verdicts from this machine's own facts, read independently of the checker (the suite runs on
    # any machine that can run it, so nothing here names a kernel or an ABI).
    from clawfleet.sandbox.landlock import kernel_abi

    release = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    assert v["kernel"] == ("pass" if release >= checks.MIN_KERNEL else "fail")
    abi = kernel_abi()
    assert v["landlock"] == ("fail" if not abi else "warn" if abi < checks.FULL_LANDLOCK_ABI else "pass")
    # the sandbox tests of this suite need seccomp, namespaces and cgroups: a machine that runs them passes these
    assert v["seccomp"] == v["namespaces"] == v["cgroups"] == "pass"
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["landlock"]["value"] == abi
    assert by_name["seccomp"]["value"].split().count("errno") == 1
    assert "libseccomp 2." in by_name["seccomp"]["value"]
    assert v["distro"] == v["machine"] == "pass"


def test_this_machine_text_output():
    proc = subprocess.run([sys.executable, "-m", "clawfleet.cli", "host", "check"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.stdout.startswith("host ") and "landlock" in proc.stdout


def _fixture_facts(name: str, **documented) -> Facts:
    directory = FIXTURES / name
    if not directory.is_dir():
        pytest.skip(f"GPU host fixtures not found at {directory}")
    # Non-GPU facts as documented in the fixture's README.md (the capture holds GPU files only).
    base = dict(host=name, machine="x86_64", distro="ubuntu 24.04", kernel="6.18.0", landlock_abi=7,
                seccomp_actions=("kill_process", "errno", "allow"), namespaces=facts.NAMESPACES,
                max_user_namespaces=1000, cgroup_version="v2", cgroup_controllers=("memory", "pids"),
                mem_total=125 * GIB, swap_total=0, disk_free=500 * GIB, cpus=16)  # fmt: skip
    base.update(documented)
    return Facts(**base, gpu=detect_from_dir(directory).to_dict())


@pytest.mark.parametrize(("host", "model"), [("h200-ubuntu2404", "NVIDIA H200"),
                                             ("h100-ubuntu2404", "NVIDIA H100 80GB HBM3")])  # fmt: skip
def test_real_gpu_hosts_pass_and_report_their_gpu(host, model):
    report = evaluate(_fixture_facts(host))
    assert report["ok"] and set(_verdicts(report).values()) == {"pass"}
    gpu = next(c for c in report["checks"] if c["name"] == "gpu")
    assert gpu["value"] == {"count": 1, "models": [model], "driver": "580.159.04"}
    assert gpu["required"] is False


def test_gpu_without_driver_is_a_warning_from_pci_alone(tmp_path):
    # The H100 capture's sysfs listing alone (what a host has before the driver is installed).
    src = FIXTURES / "h100-ubuntu2404" / "sysfs-pci-nvidia.txt"
    if not src.is_file():
        pytest.skip("fixtures missing")
    (tmp_path / "sysfs-pci-nvidia.txt").write_text(src.read_text())
    f = dataclasses.replace(_fixture_facts("h100-ubuntu2404"), gpu=detect_from_dir(tmp_path).to_dict())
    gpu = next(c for c in evaluate(f)["checks"] if c["name"] == "gpu")
    assert gpu["verdict"] == "warn" and gpu["value"]["count"] == 1 and "driver" in gpu["fix"]
    assert evaluate(f)["ok"]  # optional


@pytest.mark.parametrize(
    ("change", "check", "verdict"),
    [
        ({"kernel": "5.10.0-28-amd64"}, "kernel", "fail"),
        ({"kernel": "5.13.0"}, "kernel", "pass"),
        ({"landlock_abi": 0}, "landlock", "fail"),
        ({"landlock_abi": 4}, "landlock", "warn"),  # Ubuntu 24.04's 6.8: no scoping
        ({"landlock_abi": None}, "landlock", "fail"),
        ({"seccomp_actions": ("allow",)}, "seccomp", "fail"),
        ({"libseccomp": ""}, "seccomp", "fail"),  # not installed
        ({"libseccomp": "2.4.1"}, "seccomp", "fail"),
        ({"libseccomp": "2.5.4"}, "seccomp", "pass"),
        ({"namespaces": ("mnt", "pid")}, "namespaces", "fail"),
        ({"max_user_namespaces": 0}, "user_namespaces", "warn"),
        ({"cgroup_controllers": ("pids",)}, "cgroups", "fail"),
        ({"mem_total": 4 * GIB, "swap_total": 0}, "memory", "fail"),
        ({"mem_total": 4 * GIB, "swap_total": 8 * GIB}, "memory", "warn"),
        ({"mem_total": int(7.7 * GIB)}, "memory", "pass"),  # a nominal 8 GB host
        ({"disk_free": 5 * GIB}, "disk", "fail"),
        ({"cpus": 1}, "cpus", "fail"),
        ({"cpus": 2}, "cpus", "warn"),
        ({"distro": "centos 9"}, "distro", "fail"),
        ({"distro": "debian 11"}, "distro", "fail"),
        ({"distro": "debian 13"}, "distro", "pass"),
        ({"distro": "ubuntu 22.04"}, "distro", "pass"),
        ({"distro": "ubuntu 20.04"}, "distro", "fail"),
        ({"distro": "ubuntu 22.04", "dgx_os": True}, "distro", "pass"),
        ({"distro": None}, "distro", "fail"),
        ({"machine": "riscv64"}, "machine", "fail"),
        ({"machine": "aarch64"}, "machine", "pass"),
    ],
)
def test_requirements(change, check, verdict):
    report = evaluate(_fixture_facts("h200-ubuntu2404", **change))
    c = next(c for c in report["checks"] if c["name"] == check)
    assert c["verdict"] == verdict, c
    assert report["ok"] == (not (c["required"] and verdict == "fail"))
    if verdict != "pass":
        assert c["fix"]


def test_facts_from_a_copied_tree(tmp_path):
    proc = tmp_path / "proc"
    (proc / "sys/kernel/seccomp").mkdir(parents=True)
    (proc / "sys/user").mkdir(parents=True)
    (proc / "self/ns").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("5.15.0-91-generic\n")
    (proc / "sys/kernel/arch").write_text("aarch64\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n')
    (proc / "sys/kernel/hostname").write_text("edge-01\n")
    (proc / "sys/kernel/seccomp/actions_avail").write_text("kill_process kill_thread trap errno log allow\n")
    (proc / "sys/user/max_user_namespaces").write_text("0\n")
    for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup"):
        (proc / "self/ns" / ns).write_text("")
    (proc / "meminfo").write_text("MemTotal:        3900000 kB\nSwapTotal:       8388604 kB\n")
    (proc / "cpuinfo").write_text("processor\t: 0\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n")
    (proc / "self/mountinfo").write_text(
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    (proc / "self/cgroup").write_text("0::/user.slice\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    f = facts.read(str(tmp_path))
    assert (f.host, f.kernel, f.cpus) == ("edge-01", "5.15.0-91-generic", 4)
    assert f.mem_total == 3900000 * 1024 and f.swap_total == 8388604 * 1024
    assert f.cgroup_version == "v2" and f.cgroup_controllers == ("memory", "pids")
    assert f.landlock_abi is None and f.disk_free is None  # kernel probes only run on the live host
    v = _verdicts(checks.evaluate(f))
    assert f.distro == "ubuntu 22.04" and f.machine == "aarch64"
    assert v == {"distro": "pass", "machine": "pass", "kernel": "pass", "landlock": "fail", "seccomp": "pass",
                 "namespaces": "pass",
                 "user_namespaces": "warn", "cgroups": "pass", "memory": "warn", "disk": "fail",
                 "cpus": "pass", "gpu": "pass"}  # fmt: skip
    cli = subprocess.run([sys.executable, "-m", "clawfleet.cli", "host", "check", "--json", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cli.returncode == 1 and json.loads(cli.stdout)["ok"] is False
    assert os.path.exists(tmp_path / "proc/meminfo")


def test_operator_thresholds_and_ignores():
    f = _fixture_facts("h200-ubuntu2404", landlock_abi=4, disk_free=5 * GIB)
    strict = evaluate(f, checks.Requirements(min_landlock_abi=6))
    assert _verdicts(strict)["landlock"] == "fail" and not strict["ok"]
    assert _verdicts(evaluate(f))["landlock"] == "warn"
    ignored = evaluate(f, ignore=("disk",))
    disk = next(c for c in ignored["checks"] if c["name"] == "disk")
    assert disk["verdict"] == "warn" and disk["fix"].startswith("IGNORED by operator")
    assert ignored["ok"]
    with pytest.raises(ValueError, match="unknown check"):
        evaluate(f, ignore=("dsik",))


def test_cli_thresholds_on_this_machine():
    base = [sys.executable, "-m", "clawfleet.cli", "host", "check", "--json"]
    strict = subprocess.run([*base, "--min-landlock-abi", "99", "--min-disk-gib", "1000000"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    report = json.loads(strict.stdout)
    assert strict.returncode == 1
    assert _verdicts(report)["landlock"] == "fail" and _verdicts(report)["disk"] == "fail"
    waived = subprocess.run([*base, "--min-disk-gib", "1000000", "--ignore", "disk"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert _verdicts(json.loads(waived.stdout))["disk"] == "warn"
    bad = subprocess.run([*base, "--min-kernel", "five"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--min-kernel" in bad.stderr


def test_landlock_numbers_without_libseccomp_match_its_tables():
    # hosts without the runtime venv probe Landlock through the unified syscall numbers
    pyseccomp = pytest.importorskip("pyseccomp", reason="pyseccomp is a runtime dependency; install the venv")
    from clawfleet.sandbox import syscalls

    for name, number in syscalls._UNIFIED_NUMBERS.items():
        for arch in (pyseccomp.Arch.X86_64, pyseccomp.Arch.AARCH64):
            assert pyseccomp.resolve_syscall(arch, name) == number
