"""GPU detection against real captured host facts (tests/data/gpu-hosts) and synthetic sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfleet.gpu.detect import architecture_for_device_id, detect, detect_from_dir, detect_from_sources

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gpu-hosts"


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    assert path.is_dir(), f"GPU host fixtures missing at {path} (tests/data/gpu-hosts is part of the repository)"
    return path


@pytest.mark.parametrize(
    ("host", "name", "total", "free"),
    [
        ("h200-ubuntu2404", "NVIDIA H200", 143771, 143156),
        ("h100-ubuntu2404", "NVIDIA H100 80GB HBM3", 81559, 81079),
    ],
)
def test_real_hosts_are_detected_with_memory_and_driver(host, name, total, free):
    report = detect_from_dir(_fixture(host))
    assert report.present and len(report.gpus) == 1
    gpu = report.gpus[0]
    assert gpu.name == name
    assert (gpu.memory_total_mib, gpu.memory_free_mib) == (total, free)
    assert gpu.compute_capability == "9.0"
    assert gpu.pci_bus_id == "0000:00:06.0"
    assert report.driver_version == "580.159.04"
    assert "nvidia-smi" in report.sources and "procfs" in report.sources
    assert report.problems == ()


def test_h100_pci_device_gives_architecture_without_driver_tools():
    report = detect_from_dir(_fixture("h100-ubuntu2404"))
    assert report.gpus[0].pci_device_id == "0x2330"
    assert report.gpus[0].architecture == "Hopper"


def test_procfs_alone_finds_the_gpu_when_nvidia_smi_is_missing(tmp_path):
    info = (_fixture("h200-ubuntu2404") / "proc-driver-nvidia-gpus-information.txt").read_text()
    report = detect_from_sources(None, [info], None, None)
    assert [g.name for g in report.gpus] == ["NVIDIA H200"]
    assert report.gpus[0].memory_total_mib is None
    assert report.sources == ("procfs",)


def _fake_sysfs(root: Path, devices: list[tuple[str, str, str, str]]) -> None:
    for address, vendor, device, klass in devices:
        d = root / "sys/bus/pci/devices" / address
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "device").write_text(device + "\n")
        (d / "class").write_text(klass + "\n")


def test_pci_only_host_reports_gpus_and_missing_driver(tmp_path):
    _fake_sysfs(
        tmp_path,
        [
            ("0000:17:00.0", "0x10de", "0x2335", "0x030200"),  # H200 SXM, no driver yet
            ("0000:17:00.1", "0x10de", "0x22e8", "0x040300"),  # the card's audio function: not a GPU
            ("0000:00:02.0", "0x8086", "0x1234", "0x030000"),  # an Intel VGA controller
        ],
    )
    report = detect(root=str(tmp_path), nvidia_smi="/nonexistent/nvidia-smi")
    assert [g.pci_bus_id for g in report.gpus] == ["0000:17:00.0"]
    assert report.gpus[0].architecture == "Hopper"
    assert not report.driver_loaded
    assert any("no NVIDIA driver is loaded" in p for p in report.problems)


def test_gpu_less_host_reports_nothing(tmp_path):
    _fake_sysfs(tmp_path, [("0000:00:02.0", "0x8086", "0x1234", "0x030000")])
    report = detect(root=str(tmp_path), nvidia_smi="/nonexistent/nvidia-smi")
    assert not report.present
    assert report.to_dict()["count"] == 0


def test_malformed_nvidia_smi_output_is_a_problem_not_a_crash():
    report = detect_from_sources("garbage, output\n", None, None, None)
    assert not report.present
    assert any("not understood" in p for p in report.problems)


@pytest.mark.parametrize(
    ("device", "arch"),
    [("0x2330", "Hopper"), ("0x20b2", "Ampere"), ("0x2236", "Ampere"), ("0x27b8", "Ada Lovelace"),
     ("0x2901", "Blackwell"), ("0x1eb8", "Turing"), ("0x1db4", None)],
)  # fmt: skip
def test_architecture_from_pci_device_id(device, arch):
    assert architecture_for_device_id(device) == arch
