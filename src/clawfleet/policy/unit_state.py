"""Whether the gateway's systemd unit is installed and running, as ``policy apply --verify-if-deployed`` needs
to know: the gateway can only confirm a policy where its unit exists (a host where the gateway role never ran is
a first deployment: the gateway role verifies after the start). A stopped, failed or masked gateway on a deployed
host is *installed*: its apply is verified, fails and is rolled back."""

from __future__ import annotations

import dataclasses
import subprocess

__all__ = ["UnitState", "unit_state"]


@dataclasses.dataclass(frozen=True)
class UnitState:
    installed: bool
    running: bool


def unit_state(unit: str, timeout: float = 10.0) -> UnitState:
    """``systemctl show`` LoadState/ActiveState; no systemctl or no answer counts as not installed."""
    try:
        proc = subprocess.run(["systemctl", "show", "--property=LoadState", "--property=ActiveState", unit],
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return UnitState(False, False)
    props = dict(line.partition("=")[::2] for line in proc.stdout.splitlines())
    installed = proc.returncode == 0 and props.get("LoadState", "not-found") != "not-found"
    return UnitState(installed, installed and props.get("ActiveState") == "active")
