"""Choose vLLM's tensor parallel size, ``--gpu-memory-utilization`` and ``--max-model-len`` from GPU facts.

vLLM refuses to start when the free memory on a GPU is below ``gpu_memory_utilization x total`` (memory already used
by other processes counts), and within its fraction it must hold the weights shard, activations/CUDA graphs and the
KV cache. So the fraction is capped by what is actually free, and the context length follows from what remains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from clawfleet.gpu.detect import Gpu
from clawfleet.gpu.profiles import GIB, ModelProfile

MIB = 1024**2
TP_CANDIDATES = (1, 2, 4, 8)


class SizingError(ValueError):
    """The model cannot be served on these GPUs; the message says why and what would fit."""


@dataclass(frozen=True)
class VllmPlan:
    profile: str
    model: str
    tensor_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int
    gpu_indices: tuple[int, ...]
    weights_gib_per_gpu: float
    kv_cache_gib: float
    quantization: str | None

    def args(self) -> list[str]:
        args = [
            "--model", self.model,
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--gpu-memory-utilization", f"{self.gpu_memory_utilization:.2f}",
            "--max-model-len", str(self.max_model_len),
        ]  # fmt: skip
        if self.quantization:
            args += ["--quantization", self.quantization]
        return args

    def to_dict(self) -> dict:
        return {**asdict(self), "gpu_indices": list(self.gpu_indices), "args": self.args()}


def _usable_group(gpus: list[Gpu]) -> list[Gpu]:
    """The largest set of identical GPUs (tensor parallelism needs matching devices), most free memory first."""
    by_name: dict[str, list[Gpu]] = {}
    for gpu in gpus:
        if gpu.memory_total_mib and not gpu.mig_enabled:
            by_name.setdefault(gpu.name, []).append(gpu)
    if not by_name:
        return []
    group = max(by_name.values(), key=lambda g: (len(g), g[0].memory_total_mib))
    return sorted(group, key=lambda g: (-(g.memory_free_mib or 0), g.index))


def _tp_allowed(tp: int, profile: ModelProfile) -> bool:
    # vLLM shards attention heads across ranks and replicates KV heads when there are fewer than ranks.
    return profile.attention_heads % tp == 0 and (profile.kv_heads % tp == 0 or tp % profile.kv_heads == 0)


def plan_vllm(
    gpus: list[Gpu],
    profile: ModelProfile,
    *,
    target_utilization: float = 0.90,
    reserve_gib: float = 2.5,
    free_margin_gib: float = 0.5,
    target_context: int | None = None,
    max_tensor_parallel: int | None = None,
) -> VllmPlan:
    """Smallest tensor parallel size that serves ``target_context`` tokens (default: the model's maximum,
    capped at 32k); failing that, the size that gives the longest context at or above the model's minimum."""
    group = _usable_group(gpus)
    if not group:
        raise SizingError(
            f"{profile.name}: no usable NVIDIA GPU (none detected, no memory figures, or MIG enabled on all)"
        )
    cc = min(float(g.compute_capability or 0) for g in group)
    if cc and cc < profile.min_compute_capability:
        raise SizingError(
            f"{profile.name}: {profile.dtype} weights need compute capability >= {profile.min_compute_capability}; "
            f"{group[0].name} has {cc}. Use the bf16 profile."
        )
    want = min(target_context or min(profile.max_context, 32768), profile.max_context)
    candidates: list[VllmPlan] = []
    for tp in TP_CANDIDATES:
        if tp > len(group) or (max_tensor_parallel and tp > max_tensor_parallel) or not _tp_allowed(tp, profile):
            continue
        chosen = group[:tp]
        total_gib = min(g.memory_total_mib for g in chosen) * MIB / GIB
        free_gib = min(g.memory_free_mib if g.memory_free_mib is not None else g.memory_total_mib
                       for g in chosen) * MIB / GIB  # fmt: skip
        utilization = math.floor(min(target_utilization, (free_gib - free_margin_gib) / total_gib) * 100) / 100
        budget_gib = utilization * total_gib
        weights_gib = profile.weights_gib / tp
        kv_gib_per_gpu = budget_gib - weights_gib - reserve_gib
        if kv_gib_per_gpu <= 0:
            continue
        tokens = int(kv_gib_per_gpu * tp * GIB // profile.kv_bytes_per_token)
        max_len = min(profile.max_context, tokens // 256 * 256)
        if max_len < profile.min_context:
            continue
        plan = VllmPlan(
            profile=profile.name,
            model=profile.hf_model,
            tensor_parallel_size=tp,
            gpu_memory_utilization=utilization,
            max_model_len=min(max_len, want),
            gpu_indices=tuple(sorted(g.index for g in chosen)),
            weights_gib_per_gpu=round(weights_gib, 2),
            kv_cache_gib=round(kv_gib_per_gpu * tp, 2),
            quantization="fp8" if profile.dtype == "fp8" else None,
        )
        if max_len >= want:
            return plan
        candidates.append(plan)
    if candidates:
        return max(candidates, key=lambda p: (p.max_model_len, -p.tensor_parallel_size))
    per_gpu = group[0].memory_total_mib * MIB / GIB
    free = min(g.memory_free_mib if g.memory_free_mib is not None else g.memory_total_mib for g in group)
    raise SizingError(
        f"{profile.name} ({profile.dtype}, {profile.weights_gib:.0f} GiB of weights) does not fit on "
        f"{len(group)}x {group[0].name} ({per_gpu:.0f} GiB each, {free * MIB / GIB:.0f} GiB free, at most "
        f"{target_utilization:.0%} usable): no tensor parallel size in {list(TP_CANDIDATES)} leaves room for the "
        f"weights, {reserve_gib} GiB of activations per GPU and a {profile.min_context}-token KV cache. "
        "Choose a smaller or FP8 profile, or a host with more GPU memory."
    )
