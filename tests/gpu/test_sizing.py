"""vLLM sizing on the real H200/H100 facts and synthetic 1x/2x/8x H100, L4 and A10 hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfleet.gpu import PROFILES, Gpu, SizingError, detect_from_dir, plan_vllm, profile_from_dict

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gpu-hosts"
MIB_PER_GIB = 1024


def host(count: int, name: str, total_mib: int, cc: str, used_mib: int = 0) -> list[Gpu]:
    return [
        Gpu(index=i, name=name, pci_bus_id=f"0000:{i:02x}:00.0", memory_total_mib=total_mib,
            memory_used_mib=used_mib, memory_free_mib=total_mib - used_mib - 480, compute_capability=cc)
        for i in range(count)
    ]  # fmt: skip


H100 = ("NVIDIA H100 80GB HBM3", 81559, "9.0")
L4 = ("NVIDIA L4", 23034, "8.9")
A10 = ("NVIDIA A10", 23028, "8.6")


def real(name: str) -> list[Gpu]:
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"GPU host fixtures not found at {path}")
    return list(detect_from_dir(path).gpus)


# (host, profile, expected tensor parallel size)
CASES = [
    ("h200", "nemotron-nano-9b-v2", 1),
    ("h200", "nemotron-super-49b-v1.5", 1),  # 93 GiB of bf16 weights fit one 141 GB H200
    ("h200", "nemotron-super-49b-v1.5-fp8", 1),
    ("h200", "nemotron-3-nano-30b-a3b", 1),
    ("h100", "nemotron-nano-9b-v2", 1),
    ("h100", "nemotron-super-49b-v1.5-fp8", 1),
    ("1xh100", "nemotron-3-nano-30b-a3b", 1),
    ("2xh100", "nemotron-super-49b-v1.5", 2),  # does not fit one 80 GB card
    ("8xh100", "nemotron-super-49b-v1.5", 2),  # smallest size that fits wins: fewer all-reduces
    ("8xh100", "nemotron-ultra-253b-v1", 8),
    ("8xh100", "nemotron-ultra-253b-v1-fp8", 4),
    ("1xl4", "nemotron-nano-9b-v2", 1),
    ("1xl4", "nemotron-nano-9b-v2-fp8", 1),
    ("1xa10", "nemotron-nano-9b-v2", 1),
]

HOSTS = {
    "1xh100": lambda: host(1, *H100),
    "2xh100": lambda: host(2, *H100),
    "8xh100": lambda: host(8, *H100),
    "1xl4": lambda: host(1, *L4),
    "1xa10": lambda: host(1, *A10),
    "h200": lambda: real("h200-ubuntu2404"),
    "h100": lambda: real("h100-ubuntu2404"),
}


@pytest.mark.parametrize(("host_name", "profile", "tp"), CASES)
def test_plan_picks_tensor_parallel_size_and_a_startable_memory_fraction(host_name, profile, tp):
    gpus = HOSTS[host_name]()
    plan = plan_vllm(gpus, PROFILES[profile])
    assert plan.tensor_parallel_size == tp
    assert len(plan.gpu_indices) == tp
    used = [g for g in gpus if g.index in plan.gpu_indices]
    for gpu in used:
        # vLLM refuses to start if utilization x total exceeds the free memory.
        assert plan.gpu_memory_utilization * gpu.memory_total_mib <= gpu.memory_free_mib
        # The weights shard, the activation reserve and the KV cache fit inside vLLM's fraction.
        budget_gib = plan.gpu_memory_utilization * gpu.memory_total_mib / MIB_PER_GIB
        assert plan.weights_gib_per_gpu + 2.5 + plan.kv_cache_gib / tp <= budget_gib + 0.01
    assert 4096 <= plan.max_model_len <= PROFILES[profile].max_context
    assert plan.max_model_len % 256 == 0 or plan.max_model_len == 32768
    # The KV cache really holds max_model_len tokens.
    assert plan.kv_cache_gib * 1024**3 >= plan.max_model_len * PROFILES[profile].kv_bytes_per_token
    assert plan.args()[:2] == ["--model", PROFILES[profile].hf_model]


@pytest.mark.parametrize(
    ("host_name", "profile", "message"),
    [
        ("1xh100", "nemotron-super-49b-v1.5", "does not fit on 1x NVIDIA H100"),
        ("2xh100", "nemotron-ultra-253b-v1", "does not fit on 2x NVIDIA H100"),
        ("h200", "nemotron-ultra-253b-v1", "does not fit on 1x NVIDIA H200"),
        ("1xl4", "nemotron-super-49b-v1.5-fp8", "does not fit on 1x NVIDIA L4"),
        ("1xa10", "nemotron-nano-9b-v2-fp8", "compute capability >= 8.9"),
    ],
)
def test_plan_refuses_clearly_when_the_model_cannot_fit(host_name, profile, message):
    with pytest.raises(SizingError, match=message):
        plan_vllm(HOSTS[host_name](), PROFILES[profile])


def test_memory_already_in_use_lowers_the_fraction_and_can_refuse():
    busy = host(1, *H100, used_mib=40 * 1024)
    plan = plan_vllm(busy, PROFILES["nemotron-nano-9b-v2"])
    assert plan.gpu_memory_utilization <= 0.49
    assert plan.gpu_memory_utilization * busy[0].memory_total_mib <= busy[0].memory_free_mib
    with pytest.raises(SizingError):
        plan_vllm(busy, PROFILES["nemotron-super-49b-v1.5-fp8"])


def test_no_gpu_and_mig_only_hosts_are_refused():
    with pytest.raises(SizingError, match="no usable NVIDIA GPU"):
        plan_vllm([], PROFILES["nemotron-nano-9b-v2"])
    mig = [Gpu(**{**host(1, *H100)[0].__dict__, "mig_enabled": True})]
    with pytest.raises(SizingError, match="no usable NVIDIA GPU"):
        plan_vllm(mig, PROFILES["nemotron-nano-9b-v2"])


def test_target_context_drives_a_larger_tensor_parallel_size():
    gpus = host(8, *H100)
    short = plan_vllm(gpus, PROFILES["nemotron-ultra-253b-v1-fp8"], target_context=32768)
    long = plan_vllm(gpus, PROFILES["nemotron-ultra-253b-v1-fp8"], target_context=131072)
    assert short.tensor_parallel_size == 4
    assert long.tensor_parallel_size == 8
    assert long.max_model_len == 131072


def test_mixed_gpus_use_the_largest_identical_group():
    l4 = Gpu(index=2, name="NVIDIA L4", pci_bus_id="0000:09:00.0", memory_total_mib=23034,
             memory_free_mib=22554, compute_capability="8.9")  # fmt: skip
    gpus = [*host(2, *H100), l4]
    plan = plan_vllm(gpus, PROFILES["nemotron-super-49b-v1.5"])
    assert plan.gpu_indices == (0, 1)


def test_inventory_profiles_override_and_validate():
    custom = profile_from_dict("my-nano", {"base": "nemotron-nano-9b-v2", "hf_model": "/models/nano"})
    assert custom.weights_gib == PROFILES["nemotron-nano-9b-v2"].weights_gib
    assert custom.hf_model == "/models/nano"
    with pytest.raises(ValueError, match="unknown keys"):
        profile_from_dict("x", {"base": "nemotron-nano-9b-v2", "weight_gib": 3})
    with pytest.raises(ValueError, match="missing keys"):
        profile_from_dict("brand-new", {"hf_model": "m"})
