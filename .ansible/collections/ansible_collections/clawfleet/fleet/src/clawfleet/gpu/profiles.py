"""Nemotron model profiles for vLLM sizing.

Weights are the checkpoint sizes (parameters x bytes per parameter); the KV-cache cost per token comes from each
model's attention layout (attention layers x KV heads x head dim x 2 for K and V x bytes per element). Hybrid
Mamba models keep KV only for their few attention layers, which is why Nano needs so little per token. Operators
can add or override profiles from inventory (the vllm role's ``vllm_profiles``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

GIB = 1024**3


@dataclass(frozen=True)
class ModelProfile:
    name: str
    hf_model: str
    dtype: str  # "bf16" or "fp8" (weights)
    weights_gib: float
    kv_bytes_per_token: int
    attention_heads: int
    kv_heads: int
    max_context: int
    min_context: int = 4096
    min_compute_capability: float = 8.0
    description: str = ""


def _kv(attention_layers: int, kv_heads: int, head_dim: int = 128, elem_bytes: int = 2) -> int:
    return attention_layers * kv_heads * head_dim * 2 * elem_bytes


PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(
            "nemotron-nano-9b-v2", "nvidia/NVIDIA-Nemotron-Nano-9B-v2", "bf16",
            weights_gib=16.6, kv_bytes_per_token=_kv(4, 8), attention_heads=40, kv_heads=8,
            max_context=131072, description="Nemotron Nano 9B v2, hybrid Mamba2-Transformer, bf16",
        ),
        ModelProfile(
            "nemotron-nano-9b-v2-fp8", "nvidia/NVIDIA-Nemotron-Nano-9B-v2-FP8", "fp8",
            weights_gib=9.4, kv_bytes_per_token=_kv(4, 8), attention_heads=40, kv_heads=8,
            max_context=131072, min_compute_capability=8.9, description="Nemotron Nano 9B v2, FP8 weights",
        ),
        ModelProfile(
            "nemotron-3-nano-30b-a3b", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "bf16",
            weights_gib=58.9, kv_bytes_per_token=_kv(6, 2), attention_heads=32, kv_heads=2,
            max_context=262144, description="Nemotron 3 Nano 30B-A3B, hybrid MoE, bf16",
        ),
        ModelProfile(
            "nemotron-3-nano-30b-a3b-fp8", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8", "fp8",
            weights_gib=31.5, kv_bytes_per_token=_kv(6, 2), attention_heads=32, kv_heads=2,
            max_context=262144, min_compute_capability=8.9, description="Nemotron 3 Nano 30B-A3B, FP8 weights",
        ),
        ModelProfile(
            "nemotron-super-49b-v1.5", "nvidia/Llama-3_3-Nemotron-Super-49B-v1_5", "bf16",
            weights_gib=92.9, kv_bytes_per_token=_kv(80, 8), attention_heads=64, kv_heads=8,
            max_context=131072, description="Llama 3.3 Nemotron Super 49B v1.5, bf16",
        ),
        ModelProfile(
            "nemotron-super-49b-v1.5-fp8", "nvidia/Llama-3_3-Nemotron-Super-49B-v1_5-FP8", "fp8",
            weights_gib=49.2, kv_bytes_per_token=_kv(80, 8), attention_heads=64, kv_heads=8,
            max_context=131072, min_compute_capability=8.9, description="Nemotron Super 49B v1.5, FP8 weights",
        ),
        ModelProfile(
            "nemotron-ultra-253b-v1", "nvidia/Llama-3_1-Nemotron-Ultra-253B-v1", "bf16",
            weights_gib=471.3, kv_bytes_per_token=_kv(162, 8), attention_heads=128, kv_heads=8,
            max_context=131072, description="Llama 3.1 Nemotron Ultra 253B v1, bf16",
        ),
        ModelProfile(
            "nemotron-ultra-253b-v1-fp8", "nvidia/Llama-3_1-Nemotron-Ultra-253B-v1-FP8", "fp8",
            weights_gib=241.6, kv_bytes_per_token=_kv(162, 8), attention_heads=128, kv_heads=8,
            max_context=131072, min_compute_capability=8.9, description="Nemotron Ultra 253B v1, FP8 weights",
        ),
    )
}  # fmt: skip


def profile_from_dict(name: str, data: dict) -> ModelProfile:
    """Build a profile from inventory data, naming the missing or unknown keys in the error."""
    known = {f.name for f in fields(ModelProfile)} - {"name"}
    unknown = sorted(set(data) - known - {"base"})
    if unknown:
        raise ValueError(f"model profile {name!r}: unknown keys {unknown}; expected some of {sorted(known)}")
    base = PROFILES.get(data.get("base", name))
    if "base" in data and base is None:
        raise ValueError(f"model profile {name!r}: base {data['base']!r} is not a known profile")
    merged = {**({f.name: getattr(base, f.name) for f in fields(ModelProfile)} if base else {}), **data}
    merged["name"] = name
    missing = sorted(k for k in known | {"name"} if k not in merged and _required(k))
    if missing:
        raise ValueError(f"model profile {name!r}: missing keys {missing}")
    return ModelProfile(**{k: v for k, v in merged.items() if k in known | {"name"}})


def _required(key: str) -> bool:
    return key not in {"min_context", "min_compute_capability", "description"}
