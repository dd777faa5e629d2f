"""Verify the swap role in test mode: file, swap signature, fstab line and sysctl file (swapon cannot run here)."""

SWAPFILE = "/var/lib/clawfleet-molecule.swap"  # converge.yml sets this path


def _expected_size_mb(host) -> int:
    # Same rule as the role: RAM + swap reaches 8192 + 4096 MiB, at least 1024, at most 16384, 256-aligned.
    memtotal_kb = int(host.run("awk '/^MemTotal:/ {print $2}' /proc/meminfo").stdout)
    needed = 8192 + 4096 - memtotal_kb // 1024
    size = -(-max(needed, 1024) // 256) * 256
    return min(size, 16384)


def test_swap_file_has_size_from_ram_and_root_only_mode(host):
    f = host.file(SWAPFILE)
    assert f.is_file
    assert f.user == "root" and f.group == "root"
    assert f.mode == 0o600
    assert f.size == _expected_size_mb(host) * 1024 * 1024


def test_swap_file_carries_a_swap_signature(host):
    out = host.check_output(f"blkid --probe --output export {SWAPFILE}")
    assert "TYPE=swap" in out.splitlines()
    assert "LABEL=clawfleet-swap" in out.splitlines()


def test_no_half_made_file_left_behind(host):
    assert not host.file(f"{SWAPFILE}.clawfleet-new").exists


def test_fstab_has_exactly_one_swap_line(host):
    lines = [line for line in host.file("/etc/fstab").content_string.splitlines() if line.startswith(SWAPFILE)]
    assert lines == [f"{SWAPFILE} none swap sw 0 0"]


def test_swappiness_is_persisted(host):
    f = host.file("/etc/sysctl.d/60-clawfleet-swap.conf")
    assert f.user == "root" and f.mode == 0o644
    assert f.content_string.strip() == "vm.swappiness=15"


def test_test_mode_did_not_try_to_activate_it(host):
    assert SWAPFILE not in host.file("/proc/swaps").content_string
