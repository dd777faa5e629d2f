"""The fleet dashboard (docs/grafana/clawfleet-fleet.json) queries only metrics and labels the code exports: a
renamed metric or label fails here instead of leaving an empty panel. vLLM's names are vLLM's (pinned below)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import Counter, Gauge, Histogram

from clawfleet.gateway.metrics import GatewayMetrics
from clawfleet.router.metrics import Metrics as RouterMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "clawfleet-fleet.json"
# vLLM 0.11 (roles/vllm's vllm_version), its V1 engine's Prometheus metrics (docs "Production Metrics")
VLLM = {
    "vllm:num_requests_running": {"model_name", "engine"},
    "vllm:num_requests_waiting": {"model_name", "engine"},
    "vllm:kv_cache_usage_perc": {"model_name", "engine"},
    "vllm:time_to_first_token_seconds_bucket": {"model_name", "engine", "le"},
    "vllm:generation_tokens_total": {"model_name", "engine"},
    "vllm:prompt_tokens_total": {"model_name", "engine"},
}
# added by the collector on each host (docs/observability.md "Collecting from a fleet") or by Prometheus
EXTERNAL = {"host", "instance", "job"}


def _sample_labels(metric) -> dict[str, set[str]]:
    names = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    out = {}
    for suffix in names.get(metric._type, ("",)):
        extra = {"le"} if suffix == "_bucket" else set()
        out[metric._name + suffix] = set(metric._labelnames) | extra
    return out


def exported(log: Path) -> dict[str, set[str]]:
    known: dict[str, set[str]] = dict(VLLM)
    for owner in (GatewayMetrics(), RouterMetrics()):
        for value in vars(owner).values():
            if isinstance(value, (Counter, Gauge, Histogram)):
                known.update(_sample_labels(value))
    metrics = GatewayMetrics()  # the families read from live gateways at scrape time
    metrics.add(
        "box",
        SimpleNamespace(active=0, config=SimpleNamespace(mode="enforce")),
        SimpleNamespace(generation=0, digest="d"),
        str(log),
    )
    for family in metrics.registry.collect():
        for sample in family.samples:
            known.setdefault(sample.name, set()).update(sample.labels)
    return known


def queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_every_queried_metric_and_label_is_exported(tmp_path):
    known = exported(tmp_path / "decisions.jsonl")
    seen = set()
    for title, expr in queries():
        for name, selector in re.findall(r"((?:clawfleet_|vllm:)[a-z_:]+)(\{[^}]*\})?", expr):
            assert name in known, f"{title}: {name} is not exported"
            seen.add(name)
            for label in re.findall(r"([a-z_]+)\s*=~?", selector or ""):
                assert label in known[name] | EXTERNAL, f"{title}: {name} has no label {label}"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                names = re.findall(r"(?:clawfleet_|vllm:)[a-z_:]+", expr)
                assert any(label in known[n] | EXTERNAL for n in names), f"{title}: no metric has label {label}"
    # the panels: denials, approvals pending, policy digests, reloads per host; the router's and vLLM's metrics
    for needed in ("clawfleet_gateway_decisions_total", "clawfleet_gateway_policy_info",
                   "clawfleet_gateway_approvals_pending",
                   "clawfleet_gateway_policy_reloads_total", "clawfleet_router_requests_total",
                   "vllm:num_requests_running"):  # fmt: skip
        assert needed in seen


def test_dashboard_layout_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for dx in range(g["w"]):
            for dy in range(g["h"]):
                assert (g["x"] + dx, g["y"] + dy) not in cells, f"{p['title']} overlaps another panel"
                cells.add((g["x"] + dx, g["y"] + dy))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "host", "sandbox"} <= variables
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
