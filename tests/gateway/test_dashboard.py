"""The fleet dashboard (docs/grafana/clawfleet-fleet.json) queries only metrics and labels the code exports: a
renamed metric or label fails here instead of leaving an empty panel. vLLM's names are vLLM's (pinned below)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
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


# -- scripts/render-dashboard.py: the headless rendering, against a fake Prometheus ---------------------------------
# The real run (Prometheus, the daemon, sandboxes, the router) needs root and a few minutes: docs/observability.md
# "Fleet dashboard". Here the script's own logic: variables substituted, the right API per panel type, a refused or
# empty gateway/router query fails naming the panel, an empty vLLM panel does not.


def _script():
    import importlib.util

    path = DASHBOARD.parents[2] / "scripts" / "render-dashboard.py"
    spec = importlib.util.spec_from_file_location("render_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range like Prometheus: an error for an expression holding BROKEN, no
    series for vLLM's metrics or one holding EMPTY, one series otherwise. Records what it was asked."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.asked: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.asked.append((url.path, q["query"]))
                status, body = 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
                labels = {"host": "h1", "sandbox": "alpha", "digest": "sha256:ab", "action": "deny"}
                if "BROKEN" in q["query"]:
                    status, body = 400, {"status": "error", "errorType": "bad_data", "error": "parse error"}
                elif "vllm:" in q["query"] or "EMPTY" in q["query"]:
                    pass
                elif url.path == "/api/v1/query_range":
                    values = [[float(q["start"]), "1"], [float(q["end"]), "2"]]
                    body["data"] = {"resultType": "matrix", "result": [{"metric": labels, "values": values}]}
                else:
                    body["data"]["result"] = [{"metric": labels, "value": [float(q["time"]), "3"]}]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _render(tmp_path, edit=None):
    dash = json.loads(DASHBOARD.read_text())
    if edit:
        edit(dash)
    path = tmp_path / "dash.json"
    path.write_text(json.dumps(dash))
    prom = FakePrometheus()
    try:
        empty = _script().render(path, prom.url, 1_800_000_000.0, 1_800_000_150.0, tmp_path / "dash.png")
    finally:
        prom.close()
    return empty, prom.asked


def _edit_panel(title: str, expr: str):
    def edit(dash):
        next(p for p in dash["panels"] if p["title"] == title)["targets"][0]["expr"] = expr

    return edit


def test_render_draws_every_panel_and_leaves_only_vllm_empty(tmp_path):
    empty, asked = _render(tmp_path)
    assert (tmp_path / "dash.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert empty == [p["title"] for p in panels if "vllm:" in json.dumps(p.get("targets"))]
    assert len(asked) == sum(len(p.get("targets", [])) for p in panels)
    assert all("$" not in query for _, query in asked), [q for _, q in asked if "$" in q]
    fleet_pending = 'sum(clawfleet_gateway_approvals_pending{host=~".*", sandbox=~".*"}) or vector(0)'
    assert ("/api/v1/query", fleet_pending) in asked
    ranged = [q for path, q in asked if path == "/api/v1/query_range"]
    assert any("[20s]" in q for q in ranged) and any("[150s]" in q for _, q in asked)


def test_render_fails_naming_a_gateway_panel_whose_query_prometheus_refuses(tmp_path):
    with pytest.raises(SystemExit) as e:
        _render(tmp_path, _edit_panel("Allowed vs denied", "sum(BROKEN"))
    assert "Allowed vs denied: refused by Prometheus: bad_data: parse error" in str(e.value)
    assert not (tmp_path / "dash.png").exists()


def test_render_fails_naming_a_router_panel_without_series(tmp_path):
    with pytest.raises(SystemExit) as e:
        _render(tmp_path, _edit_panel("Routing decisions", "sum(EMPTY_clawfleet_router_decisions_total)"))
    assert "Routing decisions: no series" in str(e.value)
