#!/usr/bin/env python3
"""Render the fleet dashboard (docs/grafana/clawfleet-fleet.json) headless, from real metrics, into a PNG.

Grafana is not used (AGPL, and Debian does not package it). Instead this script runs the real parts on loopback:

- a loopback origin (plain HTTP, with a slow path) that also answers as an OpenAI-compatible model server;
- the privacy router (`clawfleet router serve`) with a local provider (that origin) and a cloud provider whose
  address answers nothing (upstream errors, then the fallback), per-sandbox identity on, prices set;
- the gateway daemon (`clawfleet gateway serve`, metrics on `metrics_listen`) with two kernel sandboxes, alpha and
  beta, whose shell loops make allowed and denied requests through their gateways and call the router;
- Debian's Prometheus (`apt-get install prometheus`; its service need not run: the binary is started here with a
  temporary config and storage) scraping the gateway and the router every 5 s, with the label `host` that each
  host's collector adds in a fleet (docs/observability.md "Collecting from a fleet").

During the run the script changes things as an operator would: alpha's policy is edited (a good reload: its POSTs
are allowed from then on), beta is switched to monitor mode (SIGHUP: its would-be denials are let through), then
alpha's policy is broken (a failed reload; the last good policy stays). Then, for every panel of the dashboard, it
substitutes the template variables (all hosts, all sandboxes) and Grafana's interval variables, runs the panel's
queries through Prometheus' HTTP API (query_range for time series, query for stat and table panels) and draws the
panel with matplotlib on the dashboard's 24-column grid (gridPos), titled as in the JSON.

It exits non-zero, naming the panel, when Prometheus refuses a gateway or router query (bad PromQL) or the query
returns no series. vLLM panels may be empty (vLLM needs a GPU): they say so.

Run as root (kernel sandboxes, the daemon) from the repository root:

    sudo .venv/bin/python scripts/render-dashboard.py [--seconds 150] [--out docs/grafana/clawfleet-fleet.png]

Needs: prometheus (Debian package), curl, matplotlib (the `dev` extra), the sandbox user clawfleet-sbx (created
here when missing, as tests/policy_daemon.py does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "clawfleet-fleet.json"
SCRAPE_S = 5
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval); $__interval is the step here
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
HOST_LABEL = "fleet-host-1"  # what a host's collector would add (its inventory name); fixed so the PNG names no machine
SANDBOX_USER = "clawfleet-sbx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"render-dashboard: timed out waiting for {what}")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (an http://127.0.0.1 URL made here)
            return bool(resp.status == 200)
    except OSError:
        return False


# -- the loopback origin: the sandboxes' destination and the router's "local" model server ----------------------


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1.5)  # held open: a burst of these goes over alpha's max_connections
        self._send(200, b"ok\n" * 64)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/chat/completions":
            return self._send(200, b"posted\n")
        prompt = json.loads(body)["messages"][-1]["content"]
        answer = {
            "id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()), "model": "demo-local",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "a short answer"}}],
            "usage": {"prompt_tokens": 10 + len(prompt) // 4, "completion_tokens": 40,
                      "total_tokens": 50 + len(prompt) // 4},
        }  # fmt: skip
        self._send(200, json.dumps(answer).encode(), "application/json")


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that gave up (curl -m, connections the gateway refused over max_connections) are expected


# -- configuration files -------------------------------------------------------------------------------------------

POLICY = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]
  read_write: [/sandbox, /tmp, /dev/null]
network_policies:
  origin:
    name: origin
    endpoints:
      - host: origin.test
        port: {origin}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        access: {access}
    binaries: [{{path: /usr/bin/curl}}]
  inference:
    name: inference
    endpoints:
      - host: inference.local
        port: {router}
        allowed_ips: [127.0.0.1/32]
        protocol: rest
        rules:
          - allow: {{method: POST, path: /v1/chat/completions}}
    binaries: [{{path: /usr/bin/curl}}]
"""

# Each round: an allowed GET, a POST (denied while the policy is read-only), a host no policy names (denied), a chat
# request to the router (every 4th with an e-mail address: routed local; every 7th with a key: blocked), and in
# alpha every 8th round a burst of slow requests, more than its max_connections.
LOOP = """\
i=0; O=http://origin.test:{origin}; R=http://inference.local:{router}/v1/chat/completions
chat() {{ curl -s -o /dev/null -m 10 -H 'content-type: application/json' -d "{{\\"model\\":\\"default\\",\
\\"messages\\":[{{\\"role\\":\\"user\\",\\"content\\":\\"$1\\"}}]}}" $R; }}
while true; do
  i=$((i+1))
  curl -s -o /dev/null -m 5 $O/ok/ping
  curl -s -o /dev/null -m 5 -X POST -d x=1 $O/ok/post
  [ $((i % 3)) -eq 0 ] && curl -s -o /dev/null -m 5 http://unlisted.test:{origin}/
  if [ $((i % 7)) -eq 0 ]; then chat "deploy with key ghp_R3alLooking1Token2Value3456789abcdef"
  elif [ $((i % 4)) -eq 0 ]; then chat "write to jane.doe@example.com about the invoice"
  else chat "summarise the release notes"; fi
  if [ "{burst}" = yes ] && [ $((i % 8)) -eq 0 ]; then
    for n in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -m 5 $O/slow & done; wait
  fi
  sleep 1
done
"""


def router_config(tmp: Path, port: int, metrics: int, origin: int, key: Path) -> Path:
    cloud_key = tmp / "cloud.key"
    cloud_key.write_text("sk-demo-not-a-real-key\n")
    cloud_key.chmod(0o600)
    config = {
        "version": 1,
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics_listen": {"host": "127.0.0.1", "port": metrics},
        "identity": {"key_file": str(key), "unknown": "allow"},
        "decision_log": "off",
        # USD per million tokens, high so that the spend table shows more than rounding (local providers cost 0)
        "prices": {"cloud": {"demo-cloud": {"input": 300, "output": 1500}}},
        "providers": {
            "local": {"type": "vllm", "base_url": f"http://127.0.0.1:{origin}/v1", "models": {"default": "demo-local"}},
            # nothing listens at cloud-down's address: every try there is an upstream error (connect), then the
            # route's fallback, "cloud" (the origin as a loopback stand-in, plain http), serves and is priced
            "cloud-down": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                           "api_key_file": str(cloud_key), "models": {"default": "demo-cloud"}, "connect_timeout": 1},
            "cloud": {"type": "openai", "base_url": f"http://127.0.0.1:{origin}/v1", "api_key_file": str(cloud_key),
                      "models": {"default": "demo-cloud"}},
        },
        "routes": [
            {"name": "secrets-blocked", "classes": ["secret"], "action": "block"},
            {"name": "pii-local", "classes": ["pii"], "action": "local", "provider": "local"},
            {"name": "default", "action": "cloud", "provider": "cloud-down", "fallback": ["cloud"]},
        ],
    }  # fmt: skip
    path = tmp / "router.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def sandbox_files(tmp: Path, name: str, ports: dict, user: pwd.struct_passwd, burst: bool) -> None:
    work = tmp / f"{name}-work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    (tmp / f"{name}-policy.yaml").write_text(POLICY.format(access="read-only", **ports))
    loop = LOOP.format(burst="yes" if burst else "no", **ports)
    definition = {
        "name": name, "policy": f"{name}-policy.yaml", "user": SANDBOX_USER, "workdir": str(work),
        "command": ["/bin/sh", "-c", loop],
        "gateway": {"static_hosts": {"origin.test": "127.0.0.1", "inference.local": "127.0.0.1"},
                    "max_connections": 4 if burst else 64, "mode": "enforce"},
    }  # fmt: skip
    (tmp / f"{name}.yaml").write_text(json.dumps(definition))


# -- querying Prometheus and drawing --------------------------------------------------------------------------------


class QueryError(Exception):
    pass


def prom(base: str, path: str, params: dict) -> list[dict]:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (an http://127.0.0.1 URL made here)
            answer = json.load(resp)
    except urllib.error.HTTPError as e:  # 400 / 422: Prometheus refused the expression
        answer = json.load(e)
    if answer.get("status") != "success":
        raise QueryError(f"refused by Prometheus: {answer.get('errorType')}: {answer.get('error')}")
    return list(answer["data"]["result"])


def substitute(expr: str, range_s: int) -> str:
    """The dashboard's variables as Grafana would fill them with 'All' selected (allValue '.*')."""
    values = {"host": ".*", "sandbox": ".*", "__rate_interval": RATE_INTERVAL, "__range": f"{range_s}s",
              "__interval": f"{SCRAPE_S}s"}  # fmt: skip
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def legend(fmt: str | None, labels: dict) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "").strip(" /")
    return text or ", ".join(f"{k}={v}" for k, v in labels.items()) or "value"


def is_vllm(panel: dict) -> bool:
    return any("vllm:" in t["expr"] for t in panel["targets"])


def draw_timeseries(ax, panel: dict, results: list[tuple[str | None, list[dict]]]) -> None:
    for fmt, series in results:
        for s in series:
            times = [datetime.datetime.fromtimestamp(float(t), datetime.timezone.utc) for t, _ in s["values"]]
            ax.plot(times, [float(v) for _, v in s["values"]], linewidth=1.2, label=legend(fmt, s["metric"]))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=datetime.timezone.utc))
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    if unit and unit != "short":
        ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.2)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.3)


def draw_stat(ax, results: list[tuple[str | None, list[dict]]]) -> None:
    value = results[0][1][0]["value"][1]
    ax.text(0.5, 0.45, f"{float(value):g}", ha="center", va="center", fontsize=40, color="#73bf69")
    ax.set_axis_off()


def draw_table(ax, results: list[tuple[str | None, list[dict]]]) -> None:
    series = [s for _, group in results for s in group]
    columns = sorted({k for s in series for k in s["metric"]})
    rows = [[s["metric"].get(c, "") for c in columns] + [f"{float(s['value'][1]):.4g}"] for s in series]
    ax.set_axis_off()
    table = ax.table(cellText=rows, colLabels=[*columns, "Value"], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.auto_set_column_width(list(range(len(columns) + 1)))  # digests in full
    table.scale(1, 1.4)
    for cell in table.get_celld().values():
        cell.set_facecolor("#181b1f")
        cell.set_edgecolor("#444")


def render(dashboard: Path, prom_url: str, start: float, end: float, out: Path) -> list[str]:
    """Draws every panel; returns the titles of the panels left without data (vLLM only, else it exits)."""
    dash = json.loads(dashboard.read_text())
    panels = dash["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(24, height * 0.42), facecolor="#111217")
    grid = fig.add_gridspec(height, 24, hspace=0.4, wspace=1.2, left=0.03, right=0.99, top=0.975, bottom=0.01)
    fig.suptitle(f"{dash['title']} (rendered headless from Prometheus, host={HOST_LABEL}, all sandboxes, "
                 f"{datetime.datetime.fromtimestamp(start, datetime.timezone.utc):%Y-%m-%d %H:%M}"
                 f"+{int(end - start)}s)", fontsize=14)  # fmt: skip
    empty, failures = [], []
    for panel in panels:
        g = panel["gridPos"]
        if panel["type"] == "row":  # a row is a heading across the grid
            ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], :])
            ax.set_axis_off()
            ax.text(0, 0.5, panel["title"], fontsize=13, weight="bold", va="center", color="#ccccdc")
            continue
        # the panel's last grid row is left empty: room for its time axis below and the next panel's title
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"] - 1, g["x"] : g["x"] + g["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], fontsize=11, loc="left")
        instant = panel["type"] in ("stat", "table")
        results = []
        try:
            for target in panel["targets"]:
                expr = substitute(target["expr"], int(end - start))
                if instant:
                    series = prom(prom_url, "/api/v1/query", {"query": expr, "time": end})
                else:
                    series = prom(prom_url, "/api/v1/query_range",
                                  {"query": expr, "start": start, "end": end, "step": SCRAPE_S})  # fmt: skip
                results.append((target.get("legendFormat"), series))
        except QueryError as e:
            failures.append(f"{panel['title']}: {e}")
            continue
        if not any(series for _, series in results):
            if is_vllm(panel):  # no GPU, no vLLM here: an empty vLLM panel is expected
                ax.text(0.5, 0.5, "no data (vLLM not running here)", ha="center", va="center", color="#888")
                ax.set_axis_off()
                empty.append(panel["title"])
            else:
                failures.append(f"{panel['title']}: no series")
            continue
        if panel["type"] == "timeseries":
            draw_timeseries(ax, panel, results)
        elif panel["type"] == "stat":
            draw_stat(ax, results)
        else:
            draw_table(ax, results)
    if failures:
        sys.exit("render-dashboard: panels without data:\n  " + "\n  ".join(failures))
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    return empty


# -- the run ----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=150, help="how long Prometheus scrapes the traffic")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "grafana" / "clawfleet-fleet.png")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="the dashboard JSON to render")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("render-dashboard: run as root (kernel sandboxes and the gateway daemon)")
    prometheus = shutil.which("prometheus")
    if not prometheus:
        sys.exit("render-dashboard: no prometheus binary (apt-get install prometheus)")
    try:
        user = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SANDBOX_USER],
                       check=True)  # fmt: skip
        user = pwd.getpwnam(SANDBOX_USER)

    tmp = Path(tempfile.mkdtemp(prefix="clawfleet-dash-"))
    tmp.chmod(0o755)  # the sandbox user must reach its workdir below it
    # not under /tmp: a sandbox mounts a private /tmp over it (as in tests/gateway/test_daemon.py)
    os.makedirs("/run/clawfleet-tests", mode=0o755, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="dash-", dir="/run/clawfleet-tests"))
    run_dir.chmod(0o755)
    procs: list[subprocess.Popen] = []
    origin = OriginServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        ports = {"origin": origin.server_address[1], "router": free_port()}
        gw_metrics, router_metrics, prom_port = free_port(), free_port(), free_port()
        key = tmp / "router-identity.key"  # shared by the router and the gateways: sandboxes are attributed
        key.write_text(secrets.token_urlsafe(36) + "\n")
        key.chmod(0o600)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        log = open(tmp / "services.log", "w")  # noqa: SIM115 (closed with the processes)

        cfg = router_config(tmp, ports["router"], router_metrics, ports["origin"], key)
        procs.append(subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "router", "serve", "--config", str(cfg)],
                                      env=env, stdout=log, stderr=log))  # fmt: skip
        wait_for("the router", lambda: http_ok(f"http://127.0.0.1:{router_metrics}/metrics"))

        for name, burst in (("alpha", True), ("beta", False)):
            sandbox_files(tmp, name, ports, user, burst)
        daemon_cfg = tmp / "gateway.yaml"
        daemon_cfg.write_text(json.dumps({
            "state_dir": "state", "control_socket": str(tmp / "gateway.sock"), "runtime_dir": str(run_dir),
            "sandboxes": ["alpha.yaml", "beta.yaml"], "metrics_listen": f"127.0.0.1:{gw_metrics}",
        }))  # fmt: skip
        gw_env = {**env, "CLAWFLEET_ROUTER_IDENTITY_KEY": str(key),
                  "CLAWFLEET_ROUTER_ENDPOINTS": f"inference.local:{ports['router']}"}  # fmt: skip
        daemon = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "gateway", "serve", "--config",
                                   str(daemon_cfg)], env=gw_env, stdout=log, stderr=log)  # fmt: skip
        procs.append(daemon)
        wait_for("the gateway's metrics", lambda: http_ok(f"http://127.0.0.1:{gw_metrics}/metrics"))

        (tmp / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "scrape_configs": [
                {"job_name": job,
                 "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"host": HOST_LABEL}}]}
                for job, port in (("clawfleet-gateway", gw_metrics), ("clawfleet-router", router_metrics))
            ],
        }))  # fmt: skip
        procs.append(subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                                      stdout=log, stderr=log))  # fmt: skip
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for("Prometheus", lambda: http_ok(f"{prom_url}/-/ready"))
        start = time.time()

        # The operator's changes, spread over the run (each shows on a panel: reloads, generation, monitor mode).
        def at(fraction: float) -> None:
            time.sleep(max(0.0, start + fraction * args.seconds - time.time()))

        at(0.3)
        policy = tmp / "alpha-policy.yaml"
        policy.write_text(POLICY.format(access="read-write", **ports))  # good reload: alpha's POSTs now allowed
        at(0.5)
        beta = json.loads((tmp / "beta.yaml").read_text())
        beta["gateway"]["mode"] = "monitor"  # beta's denials become "would be denied", let through
        (tmp / "beta.yaml").write_text(json.dumps(beta))
        daemon.send_signal(signal.SIGHUP)
        at(0.75)
        policy.write_text(policy.read_text() + "  broken: [\n")  # failed reload: the last good policy stays
        at(1.0)
        end = time.time()
        wait_for("the last scrape", lambda: time.time() > end + SCRAPE_S)
        empty = render(args.dashboard, prom_url, start, end, args.out)
        print(f"render-dashboard: wrote {args.out}; panels without data: {', '.join(empty) or 'none'}")
        return 0
    finally:
        for proc in reversed(procs):  # Prometheus, then the daemon (it stops its sandboxes), then the router
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        origin.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
        if os.environ.get("KEEP_TMP"):
            print(f"render-dashboard: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
