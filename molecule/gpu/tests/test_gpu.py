"""The fake H200 host gets a sized, healthy vLLM service; the GPU-less host gets nothing GPU-related.

Every test runs on both hosts and asserts each host's own expectation, so nothing is skipped.
"""

import json

KEY_FILE = "/etc/clawfleet/secrets/local-model-key"


def _key(host) -> str:
    """The per-host key the vllm role made (the scenario sets no vllm_api_key)."""
    return host.file(KEY_FILE).content_string.strip()


def _is_gpu_host(host) -> bool:
    return host.backend.get_hostname().endswith("bookworm")


def test_gpu_facts_are_recorded(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/clawfleet_gpu.fact").content_string)
    if _is_gpu_host(host):
        assert fact["present"] is True and fact["count"] == 1
        assert fact["gpus"][0]["name"] == "NVIDIA H200"
        assert fact["gpus"][0]["architecture"] == "Hopper"
        assert fact["driver_version"] == "580.159.04"
        # Volatile figures stay out so re-runs are idempotent.
        assert "memory_free_mib" not in fact["gpus"][0]
    else:
        assert (fact["present"], fact["count"], fact["gpus"]) == (False, 0, [])


def test_vllm_unit_exists_only_on_the_gpu_host(host):
    assert host.file("/etc/systemd/system/clawfleet-vllm.service").exists == _is_gpu_host(host)
    # DGX OS (fake H200) keeps its driver and the GPU-less host needs none: no driver install was attempted.
    assert not host.file("/etc/modprobe.d/clawfleet-blacklist-nouveau.conf").exists
    assert not host.package("nvidia-container-toolkit").is_installed


def test_vllm_is_sized_from_the_h200_facts(host):
    plan_file = host.file("/etc/clawfleet/vllm/plan.json")
    assert plan_file.exists == _is_gpu_host(host)
    if not _is_gpu_host(host):
        return
    plan = json.loads(plan_file.content_string)["plan"]
    assert plan["tensor_parallel_size"] == 1
    assert plan["gpu_memory_utilization"] == 0.9
    assert plan["max_model_len"] == 32768
    unit = host.file("/etc/systemd/system/clawfleet-vllm.service").content_string
    assert "--tensor-parallel-size 1 --gpu-memory-utilization 0.90 --max-model-len 32768" in unit
    assert "--host 127.0.0.1" in unit


def test_vllm_api_key_is_generated_once_and_stays_in_root_only_files(host):
    env = host.file("/etc/clawfleet/vllm/vllm.env")
    assert env.exists == _is_gpu_host(host)
    assert host.file(KEY_FILE).exists == _is_gpu_host(host)
    if _is_gpu_host(host):
        key_file = host.file(KEY_FILE)
        assert (key_file.user, key_file.group, key_file.mode) == ("root", "root", 0o600)
        key = _key(host)
        assert len(key) == 48 and key.isalnum()
        cmdlines = host.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
        assert key not in cmdlines
        assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
        # The sandboxes' default policy reads /etc: the plan (model, GPUs) is root's only.
        assert host.file("/etc/clawfleet/vllm").mode == 0o750
        assert f"VLLM_API_KEY={key}" in env.content_string
        assert key not in host.file("/etc/systemd/system/clawfleet-vllm.service").content_string


def test_vllm_service_is_healthy_and_requires_the_key(host):
    listening = host.socket("tcp://127.0.0.1:8000").is_listening
    assert listening == _is_gpu_host(host)
    if not _is_gpu_host(host):
        return
    service = host.service("clawfleet-vllm")
    assert service.is_running and service.is_enabled
    assert host.process.filter(user="clawfleet-vllm"), "vLLM must run as its own system user"
    ok = host.run(f"curl -sf -H 'Authorization: Bearer {_key(host)}' http://127.0.0.1:8000/v1/models")
    assert ok.rc == 0
    assert [m["id"] for m in json.loads(ok.stdout)["data"]] == ["local-nemotron"]
    denied = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/v1/models")
    assert denied.stdout == "401"
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_vllm_user_owns_and_reaches_its_own_tree(host):
    if not _is_gpu_host(host):
        assert not host.file("/var/lib/clawfleet-vllm").exists
        return
    for path in ("/var/lib/clawfleet-vllm", "/var/lib/clawfleet-vllm/models"):
        d = host.file(path)
        assert (d.user, d.group, d.mode) == ("clawfleet-vllm", "clawfleet-vllm", 0o750), path
        reach = host.run(f"runuser -u clawfleet-vllm -- sh -c 'test -r {path} && test -w {path} && test -x {path}'")
        assert reach.rc == 0, (path, reach.stderr)
    # It reads the pinned snapshot, and is not in group clawfleet (it needs nothing of that tree).
    snapshot = (
        "/var/lib/clawfleet-vllm/models/hub/models--nvidia--NVIDIA-Nemotron-Nano-9B-v2/snapshots/"
        + "0123456789abcdef" * 2
        + "01234567"
    )
    assert host.run(f"runuser -u clawfleet-vllm -- cat {snapshot}/config.json").rc == 0
    assert "clawfleet" not in host.user("clawfleet-vllm").groups
    assert host.run("runuser -u clawfleet-vllm -- ls /var/lib/clawfleet").rc != 0
    # Nobody else gets into vLLM's tree.
    assert host.run("runuser -u nobody -- ls /var/lib/clawfleet-vllm/models").rc != 0
    unit = host.file("/etc/systemd/system/clawfleet-vllm.service").content_string
    assert "--revision 0123456789abcdef0123456789abcdef01234567" in unit
    assert "ReadWritePaths=/var/lib/clawfleet-vllm /var/lib/clawfleet-vllm/models" in unit


def test_one_replica_by_default_on_the_planned_gpus(host):
    # vllm_replicas (default 1): the single server keeps its unit name and port; its GPUs are set in the unit, so
    # further replicas (clawfleet-vllm-1 ...) can each get their own.
    assert not host.file("/etc/systemd/system/clawfleet-vllm-1.service").exists
    if not _is_gpu_host(host):
        return
    unit = host.file("/etc/systemd/system/clawfleet-vllm.service").content_string
    assert "Environment=CUDA_VISIBLE_DEVICES=0" in unit and "--port 8000" in unit
    assert "Replica 1 of 1: GPU(s) 0, port 8000." in unit
    assert "CUDA_VISIBLE_DEVICES" not in host.file("/etc/clawfleet/vllm/vllm.env").content_string
