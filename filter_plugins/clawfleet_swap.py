"""Filters for the swap role: size the swap file from RAM and /proc/swaps, judge the filesystem that holds it.

Kept in plain Python (no Ansible imports in the logic) so tests/roles/test_swap_filters.py can test every branch.
"""

from __future__ import annotations

MIB = 1024 * 1024


def swap_auto_size_mb(
    memtotal_mb: int,
    other_swap_mb: int = 0,
    floor_mb: int = 8192,
    headroom_mb: int = 4096,
    min_mb: int = 1024,
    max_mb: int = 16384,
    align_mb: int = 256,
) -> int:
    """Swap file size (MiB) so that RAM + all swap reaches floor + headroom, within [min_mb, max_mb].

    `other_swap_mb` is swap the host already has from other devices (partitions, other files): it counts
    towards the target, but our own file must not (or a second run would shrink it).
    """
    memtotal_mb, other_swap_mb = int(memtotal_mb), int(other_swap_mb)
    min_mb, max_mb, align_mb = int(min_mb), int(max_mb), max(int(align_mb), 1)
    if min_mb > max_mb:
        raise ValueError(f"swap minimum size {min_mb} MiB is larger than the maximum {max_mb} MiB")
    needed = int(floor_mb) + int(headroom_mb) - memtotal_mb - other_swap_mb
    size = max(needed, min_mb)
    size = -(-size // align_mb) * align_mb  # round up to the alignment
    return min(size, max_mb)


def swap_proc_swaps(text: str) -> list[dict]:
    """Parse /proc/swaps into [{'name', 'type', 'size_mb'}] (the kernel reports sizes in KiB)."""
    areas = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 3:
            continue
        name = fields[0].replace("\\040", " ")
        areas.append({"name": name, "type": fields[1], "size_mb": int(fields[2]) // 1024})
    return areas


def swap_other_mb(text: str, swap_file: str) -> int:
    """MiB of active swap that is not `swap_file`."""
    return sum(a["size_mb"] for a in swap_proc_swaps(text) if a["name"] != swap_file)


def swap_is_active(text: str, swap_file: str) -> bool:
    return any(a["name"] == swap_file for a in swap_proc_swaps(text))


def swap_fs_problem(
    fstype: str,
    path: str,
    supported: list[str],
    test_mode: bool = False,
    btrfs_nocow: bool = False,
) -> str:
    """Empty string when a swap file at `path` on `fstype` can work, else a message an operator can act on."""
    fstype = (fstype or "unknown").lower()
    if fstype in [s.lower() for s in supported]:
        return ""
    if fstype == "btrfs":
        if btrfs_nocow:
            return ""
        return (
            f"{path} is on btrfs: a swap file there needs NOCOW (chattr +C on the empty file), no compression "
            "and a single-device filesystem, and it must not be in a subvolume that gets snapshotted. Put the "
            "file in a dedicated subvolume and set swap_btrfs_nocow: true, or choose a swap_file_path on "
            "ext4/xfs."
        )
    if fstype == "zfs":
        return (
            f"{path} is on ZFS: swap files on ZFS are not supported by the kernel and a swap zvol can deadlock "
            "under memory pressure. Choose a swap_file_path on ext4/xfs, or use a swap partition."
        )
    if fstype in ("overlay", "tmpfs", "ramfs", "squashfs", "aufs"):
        if test_mode and fstype == "overlay":
            return ""
        return (
            f"{path} is on {fstype}: the kernel cannot swap to a file there (containers and RAM disks). Choose a "
            "swap_file_path on a real ext4/xfs filesystem; in a test container set swap_test_mode: true."
        )
    return (
        f"{path} is on {fstype}, which the swap role does not support (supported: {', '.join(supported)}). "
        "Choose a swap_file_path on ext4/xfs or add the filesystem to swap_supported_filesystems if you "
        "know swapon works on it."
    )


class FilterModule:
    """clawfleet swap filters."""

    def filters(self):
        return {
            "clawfleet_swap_auto_size_mb": swap_auto_size_mb,
            "clawfleet_swap_other_mb": swap_other_mb,
            "clawfleet_swap_is_active": swap_is_active,
            "clawfleet_swap_fs_problem": swap_fs_problem,
        }
