"""Find NVIDIA GPUs without relying on any single tool.

Three sources, most detailed first: ``nvidia-smi`` (memory, compute capability; needs the driver), the driver's
``/proc/driver/nvidia/gpus/*/information`` (model and bus id; needs the driver loaded), and sysfs PCI devices with
vendor 0x10de (works before any driver is installed; ``lspci`` is often missing on cloud and DGX images).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

NVIDIA_PCI_VENDOR = "0x10de"
# PCI class 0x0300xx is a VGA controller, 0x0302xx a 3D controller (data-centre GPUs); audio/USB functions of
# the same card have other classes and are not GPUs.
_GPU_PCI_CLASSES = ("0x0300", "0x0302")

NVIDIA_SMI_QUERY = (
    "index,name,uuid,pci.bus_id,driver_version,memory.total,memory.used,memory.free,"
    "compute_cap,persistence_mode,mig.mode.current"
)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    pci_bus_id: str
    uuid: str = ""
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    memory_free_mib: int | None = None
    compute_capability: str | None = None
    pci_device_id: str | None = None
    architecture: str | None = None
    mig_enabled: bool = False
    persistence_mode: bool | None = None


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[Gpu, ...] = ()
    driver_version: str | None = None
    sources: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def present(self) -> bool:
        return bool(self.gpus)

    @property
    def driver_loaded(self) -> bool:
        return self.driver_version is not None

    def to_dict(self) -> dict:
        return {
            "present": self.present,
            "count": len(self.gpus),
            "driver_loaded": self.driver_loaded,
            "driver_version": self.driver_version,
            "sources": list(self.sources),
            "problems": list(self.problems),
            "gpus": [asdict(g) for g in self.gpus],
        }


def architecture_for_device_id(device_id: str | None) -> str | None:
    """Architecture from the PCI device id, for decisions made before the driver is installed."""
    if not device_id:
        return None
    dev = int(device_id, 16)
    ranges = (
        (0x1E00, 0x1FFF, "Turing"),
        (0x2000, 0x20FF, "Ampere"),  # GA100 (A100)
        (0x2200, 0x22FF, "Ampere"),  # GA102 (A10, A40, RTX 30xx)
        (0x2300, 0x23FF, "Hopper"),  # GH100 (H100, H200, GH200)
        (0x2400, 0x25FF, "Ampere"),  # GA103/GA104/GA106/GA107
        (0x2600, 0x28FF, "Ada Lovelace"),  # AD10x (L4, L40, RTX 40xx)
        (0x2900, 0x2FFF, "Blackwell"),  # GB100/GB20x (B200, GB200, RTX 50xx)
    )
    for low, high, name in ranges:
        if low <= dev <= high:
            return name
    return None


def _normalise_bus_id(bus_id: str) -> str:
    # nvidia-smi prints 00000000:00:06.0 (32-bit domain), sysfs and /proc print 0000:00:06.0.
    bus_id = bus_id.strip().lower()
    domain, _, rest = bus_id.partition(":")
    return f"{int(domain, 16):04x}:{rest}" if rest else bus_id


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    return int(float(value)) if value and value[0].isdigit() else None


def parse_nvidia_smi_csv(text: str) -> tuple[list[Gpu], str | None]:
    """Parse ``nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits``."""
    gpus: list[Gpu] = []
    driver = None
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row or not row[0].strip():
            continue
        if len(row) < 11:
            raise ValueError(f"nvidia-smi row has {len(row)} fields, expected 11: {row!r}")
        idx, name, uuid, bus, drv, total, used, free, cc, persistence, mig = (c.strip() for c in row[:11])
        driver = drv or driver
        gpus.append(
            Gpu(
                index=int(idx),
                name=name,
                uuid=uuid,
                pci_bus_id=_normalise_bus_id(bus),
                memory_total_mib=_int_or_none(total),
                memory_used_mib=_int_or_none(used),
                memory_free_mib=_int_or_none(free),
                compute_capability=cc if cc and cc[0].isdigit() else None,
                mig_enabled=mig.lower() == "enabled",
                persistence_mode={"enabled": True, "disabled": False}.get(persistence.lower()),
            )
        )
    return gpus, driver


def parse_proc_information(text: str) -> dict[str, str]:
    """Parse one ``/proc/driver/nvidia/gpus/<bus>/information`` file into its key/value pairs."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_proc_version(text: str) -> str | None:
    # "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            for token in line.split():
                if token.count(".") >= 1 and token.replace(".", "").isdigit():
                    return token
    return None


def _pci_gpus(devices: list[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
    """(bus_id, device_id) of NVIDIA display/3D controllers from (address, vendor, device, class) tuples."""
    found = []
    for address, vendor, device, klass in devices:
        if vendor.strip().lower() == NVIDIA_PCI_VENDOR and klass.strip().lower().startswith(_GPU_PCI_CLASSES):
            found.append((_normalise_bus_id(address), device.strip().lower()))
    return sorted(found)


def _merge(
    smi_gpus: list[Gpu], proc: list[dict[str, str]], pci: list[tuple[str, str]], driver: str | None
) -> list[Gpu]:
    device_by_bus = dict(pci)
    if smi_gpus:
        gpus = smi_gpus
    elif proc:
        gpus = [
            Gpu(index=i, name=p.get("Model", "NVIDIA GPU"), uuid=p.get("GPU UUID", ""),
                pci_bus_id=_normalise_bus_id(p.get("Bus Location", "")))
            for i, p in enumerate(sorted(proc, key=lambda p: p.get("Bus Location", "")))
        ]  # fmt: skip
    else:
        gpus = [Gpu(index=i, name="NVIDIA GPU (no driver)", pci_bus_id=bus) for i, (bus, _) in enumerate(pci)]
    merged = []
    for gpu in gpus:
        device = device_by_bus.get(gpu.pci_bus_id)
        merged.append(
            Gpu(**{**asdict(gpu), "pci_device_id": device, "architecture": architecture_for_device_id(device)})
        )
    return merged


def detect_from_sources(
    nvidia_smi_csv: str | None = None,
    proc_information: list[str] | None = None,
    proc_version: str | None = None,
    pci_devices: list[tuple[str, str, str, str]] | None = None,
) -> GpuReport:
    sources, problems = [], []
    smi_gpus: list[Gpu] = []
    driver = parse_proc_version(proc_version) if proc_version else None
    if nvidia_smi_csv is not None:
        try:
            smi_gpus, smi_driver = parse_nvidia_smi_csv(nvidia_smi_csv)
            driver = smi_driver or driver
            sources.append("nvidia-smi")
        except ValueError as exc:
            problems.append(f"nvidia-smi output not understood: {exc}")
    proc = [parse_proc_information(t) for t in proc_information or []]
    if proc:
        sources.append("procfs")
    pci = _pci_gpus(pci_devices or [])
    if pci:
        sources.append("sysfs-pci")
    gpus = _merge(smi_gpus, proc, pci, driver)
    if pci and not driver:
        problems.append(f"{len(pci)} NVIDIA GPU(s) on the PCI bus but no NVIDIA driver is loaded")
    if smi_gpus and pci and len(smi_gpus) != len(pci):
        problems.append(f"nvidia-smi sees {len(smi_gpus)} GPU(s), the PCI bus has {len(pci)}")
    return GpuReport(tuple(gpus), driver, tuple(sources), tuple(problems))


def _read_pci_devices(sysfs: Path) -> list[tuple[str, str, str, str]]:
    devices = []
    base = sysfs / "bus" / "pci" / "devices"
    if not base.is_dir():
        return devices
    for dev in sorted(base.iterdir()):
        try:
            vendor = (dev / "vendor").read_text()
            if vendor.strip().lower() != NVIDIA_PCI_VENDOR:
                continue
            devices.append((dev.name, vendor, (dev / "device").read_text(), (dev / "class").read_text()))
        except OSError:
            continue
    return devices


def _run_nvidia_smi(nvidia_smi: str) -> str | None:
    try:
        proc = subprocess.run(
            [nvidia_smi, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def detect(root: str = "/", nvidia_smi: str | None = None) -> GpuReport:
    """Detect GPUs on this machine (``root`` lets tests point at a fake tree)."""
    rootp = Path(root)
    search = None if rootp == Path("/") else f"{rootp}/usr/bin:{rootp}/bin"
    smi = nvidia_smi or shutil.which("nvidia-smi", path=search)
    smi_csv = _run_nvidia_smi(smi) if smi and os.access(smi, os.X_OK) else None
    gpus_dir = rootp / "proc/driver/nvidia/gpus"
    infos = [p.read_text() for p in sorted(gpus_dir.glob("*/information"))] if gpus_dir.is_dir() else []
    version_file = rootp / "proc/driver/nvidia/version"
    version = version_file.read_text() if version_file.is_file() else None
    return detect_from_sources(smi_csv, infos, version, _read_pci_devices(rootp / "sys"))


def _parse_sysfs_listing(text: str) -> list[tuple[str, str, str, str]]:
    # Fixture format: "/sys/bus/pci/devices/0000:00:06.0 vendor=0x10de device=0x2330 class=0x030200"
    devices = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        devices.append((parts[0].rsplit("/", 1)[-1], fields.get("vendor", ""), fields.get("device", ""),
                        fields.get("class", "")))  # fmt: skip
    return devices


def detect_from_dir(directory: str | os.PathLike) -> GpuReport:
    """Detect from captured host facts (the files in ``tests/data/gpu-hosts/<host>/``)."""
    d = Path(directory)

    def read(name: str) -> str | None:
        p = d / name
        return p.read_text() if p.is_file() else None

    info = read("proc-driver-nvidia-gpus-information.txt")
    # Several GPUs' information files are concatenated; each starts with its "Model:" line.
    blocks = []
    for line in (info or "").splitlines(keepends=True):
        if line.startswith("Model:") or not blocks:
            blocks.append("")
        blocks[-1] += line
    pci_text = read("sysfs-pci-nvidia.txt")
    return detect_from_sources(
        read("nvidia-smi-query.csv"),
        [b for b in blocks if "Model:" in b],
        read("proc-driver-nvidia-version.txt"),
        _parse_sysfs_listing(pci_text) if pci_text else None,
    )
