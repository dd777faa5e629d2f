"""The swap role run for real against this machine in test mode, with every path under a temporary directory:
create, idempotence, resize, removal, and the refusal of a filesystem where swap cannot work.

Test mode skips only swapon/swapoff and the live sysctl, so nothing here touches the machine's real swap."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _vars(tmp_path: Path, **extra) -> dict:
    return {
        "swap_test_mode": True,
        "swap_file_path": str(tmp_path / "swapfile"),
        "swap_fstab_path": str(tmp_path / "fstab"),
        "swap_sysctl_file": str(tmp_path / "sysctl.conf"),
        "swap_min_free_disk_mb": 0,
        **extra,
    }


def _has_swap_signature(path: Path) -> bool:
    # mkswap writes "SWAPSPACE2" in the last 10 bytes of the first page.
    with path.open("rb") as f:
        head = f.read(65536)
    return any(head[size - 10 : size] == b"SWAPSPACE2" for size in (4096, 16384, 65536))


def test_create_resize_and_remove(tmp_path, run_role):
    swapfile = tmp_path / "swapfile"
    first = run_role("swap", _vars(tmp_path, swap_size_mb=16))
    assert first.rc == 0, first.output
    assert swapfile.stat().st_size == 16 * 1024 * 1024
    assert swapfile.stat().st_mode & 0o777 == 0o600
    assert _has_swap_signature(swapfile)
    assert f"{swapfile} none swap sw 0 0" in (tmp_path / "fstab").read_text().splitlines()
    assert (tmp_path / "sysctl.conf").read_text().strip() == "vm.swappiness=10"
    assert not (tmp_path / "swapfile.clawfleet-new").exists()

    again = run_role("swap", _vars(tmp_path, swap_size_mb=16))
    assert again.rc == 0 and again.changed == 0, again.output

    resized = run_role("swap", _vars(tmp_path, swap_size_mb=32, swap_swappiness=5))
    assert resized.rc == 0, resized.output
    assert swapfile.stat().st_size == 32 * 1024 * 1024
    assert _has_swap_signature(swapfile)
    assert (tmp_path / "fstab").read_text().count(str(swapfile)) == 1
    assert (tmp_path / "sysctl.conf").read_text().strip() == "vm.swappiness=5"

    removed = run_role("swap", _vars(tmp_path, swap_state="absent"))
    assert removed.rc == 0, removed.output
    assert not swapfile.exists()
    assert not (tmp_path / "sysctl.conf").exists()
    assert str(swapfile) not in (tmp_path / "fstab").read_text()


def test_check_mode_on_a_fresh_host_changes_nothing(tmp_path, run_role):
    result = run_role("swap", _vars(tmp_path, swap_size_mb=16), check=True)
    assert result.rc == 0, result.output
    assert not (tmp_path / "swapfile").exists()
    assert not (tmp_path / "fstab").exists()


def test_refuses_a_file_that_is_not_swap(tmp_path, run_role):
    (tmp_path / "swapfile").write_bytes(b"\0" * 16 * 1024 * 1024)
    result = run_role("swap", _vars(tmp_path, swap_size_mb=16))
    assert result.rc != 0
    assert "is not a swap area" in result.output
    assert not (tmp_path / "fstab").exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no tmpfs at /dev/shm")
def test_refuses_tmpfs_outside_test_mode(tmp_path, run_role):
    # Check mode as a second safety net: this is the one run without swap_test_mode on the real machine.
    shm = Path("/dev/shm")
    result = run_role(
        "swap",
        _vars(tmp_path, swap_test_mode=False, swap_file_path=str(shm / "clawfleet-test-swapfile"), swap_size_mb=16),
        check=True,
    )
    assert result.rc != 0
    assert "is on tmpfs: the kernel cannot swap to a file there" in result.output
    assert not (shm / "clawfleet-test-swapfile").exists()
