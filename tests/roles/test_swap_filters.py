"""Sizing, /proc/swaps parsing and filesystem checks of the swap role (roles/swap/filter_plugins)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "clawfleet_swap", Path(__file__).resolve().parents[2] / "filter_plugins/clawfleet_swap.py"
)
swap = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(swap)

PROC_SWAPS = (
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    "/dev/vda3                               partition\t2097148\t\t0\t\t-2\n"
    "/swapfile                               file\t\t4194300\t\t1024\t\t-3\n"
)


@pytest.mark.parametrize(
    ("memtotal", "other", "expected"),
    [
        (3930, 0, 8448),  # 4 GB VPS: 12288 - 3930 = 8358, rounded up to 256
        (7951, 0, 4352),  # 8 GB VPS
        (16000, 0, 1024),  # enough RAM: the minimum safety swap
        (3930, 2047, 6400),  # an existing 2 GB partition counts towards the target
        (512, 0, 11776),  # tiny host, below the maximum
        (125000, 0, 1024),  # DGX
    ],
)
def test_auto_size_reaches_floor_plus_headroom(memtotal, other, expected):
    assert swap.swap_auto_size_mb(memtotal, other) == expected


def test_auto_size_is_capped_and_configurable():
    assert swap.swap_auto_size_mb(512, 0, 16384, 8192, 1024, 16384) == 16384
    assert swap.swap_auto_size_mb(7951, 0, 8192, 0, 512, 4096, 1) == 512
    with pytest.raises(ValueError, match="larger than the maximum"):
        swap.swap_auto_size_mb(1000, 0, min_mb=2048, max_mb=1024)


def test_own_swap_file_does_not_count_towards_the_target():
    # Otherwise the second run would see its own file as existing swap and shrink it: not idempotent.
    assert swap.swap_other_mb(PROC_SWAPS, "/swapfile") == 2047
    assert swap.swap_is_active(PROC_SWAPS, "/swapfile")
    assert not swap.swap_is_active(PROC_SWAPS, "/var/swapfile")
    assert swap.swap_other_mb("Filename Type Size Used Priority\n", "/swapfile") == 0


def test_filesystem_judgement():
    ok = ["ext4", "xfs"]
    assert swap.swap_fs_problem("ext4", "/swapfile", ok) == ""
    assert swap.swap_fs_problem("xfs", "/swapfile", ok) == ""
    assert "chattr +C" in swap.swap_fs_problem("btrfs", "/swapfile", ok)
    assert swap.swap_fs_problem("btrfs", "/swapfile", ok, btrfs_nocow=True) == ""
    assert "ZFS" in swap.swap_fs_problem("zfs", "/swapfile", ok)
    assert "ZFS" in swap.swap_fs_problem("zfs", "/swapfile", ok, test_mode=True, btrfs_nocow=True)
    assert "swap_test_mode" in swap.swap_fs_problem("overlay", "/swapfile", ok)
    assert swap.swap_fs_problem("overlay", "/swapfile", ok, test_mode=True) == ""
    assert "tmpfs" in swap.swap_fs_problem("tmpfs", "/swapfile", ok, test_mode=True)
    assert "not support" in swap.swap_fs_problem("vfat", "/swapfile", ok)
