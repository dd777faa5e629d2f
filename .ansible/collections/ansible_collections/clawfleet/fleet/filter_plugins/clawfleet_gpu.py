"""Ansible filters over clawfleet.gpu: vLLM sizing on the controller from the facts the nvidia_gpu role gathered."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    import clawfleet.gpu as cf_gpu
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import clawfleet.gpu as cf_gpu


def vllm_plan(
    gpu_facts,
    profile,
    profiles=None,
    target_utilization=0.90,
    target_context=None,
    reserve_gib=2.5,
    ignore_used_memory=False,
):
    """``{{ nvidia_gpu_facts | clawfleet_vllm_plan('nemotron-nano-9b-v2') }}`` -> the plan as a dict.

    ``ignore_used_memory``: plan as if the GPUs were idle, for re-planning while vLLM itself holds the memory.
    """
    if not isinstance(gpu_facts, dict) or "gpus" not in gpu_facts:
        raise AnsibleFilterError("clawfleet_vllm_plan: expects the nvidia_gpu role's facts (a dict with 'gpus')")
    table = dict(cf_gpu.PROFILES)
    try:
        for name, data in (profiles or {}).items():
            table[name] = cf_gpu.profile_from_dict(name, dict(data))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"clawfleet_vllm_plan: vllm_profiles: {exc}") from None
    if profile not in table:
        raise AnsibleFilterError(f"clawfleet_vllm_plan: unknown model profile {profile!r}; known: {', '.join(table)}")
    try:
        gpus = [cf_gpu.Gpu(**g) for g in gpu_facts["gpus"]]
        if ignore_used_memory:
            gpus = [dataclasses.replace(g, memory_free_mib=g.memory_total_mib) for g in gpus]
        plan = cf_gpu.plan_vllm(
            gpus,
            table[profile],
            target_utilization=float(target_utilization),
            target_context=int(target_context) if target_context else None,
            reserve_gib=float(reserve_gib),
        )
    except TypeError as exc:
        raise AnsibleFilterError(f"clawfleet_vllm_plan: GPU facts not understood: {exc}") from None
    except cf_gpu.SizingError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return plan.to_dict()


class FilterModule:
    def filters(self):
        return {"clawfleet_vllm_plan": vllm_plan}
