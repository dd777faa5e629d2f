"""`clawfleet policy ...` through clawfleet.cli.main, plus the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from policy_testpaths import COMPAT, POLICIES

from clawfleet.cli import main

CLAWFLEET = Path(sys.executable).parent / "clawfleet"
QUICKSTART = COMPAT / "openshell" / "sandbox-policy-quickstart_policy.yaml"
ROUTES = COMPAT / "openshell" / "local-inference_routes.yaml"
# an operator-run middleware service: refused, naming the type (tests/policy/test_policy_compat.py)
CONTENT_GUARD = COMPAT / "openshell" / "supervisor-middleware-content-guard_policy.yaml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["policy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_all_compat_files_but_routes(capsys):
    files = [str(p) for p in sorted(COMPAT.glob("*/*.yaml")) if p not in (ROUTES, CONTENT_GUARD)]
    code, out, _err = run(capsys, "validate", *files)
    assert code == 0
    assert out.count(": ok (") == len(files)
    code, _out, err = run(capsys, "validate", str(CONTENT_GUARD))
    assert code == 2
    assert err.startswith(f"{CONTENT_GUARD}:9:17: network_middlewares.prototype-content-guard.middleware: unknown"
                          " middleware type 'content-guard-example'")  # fmt: skip


def test_validate_reports_every_problem_positioned(capsys, write):
    bad = write("bad.yaml", "version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - {host: x.test, port: 0}\n")
    code, out, err = run(capsys, "validate", str(bad), str(QUICKSTART), str(ROUTES))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == (f"{bad}:5:30: network_policies.a.endpoints[0].port: a port must be between 1 and 65535, got 0")
    assert lines[1].startswith(f"{ROUTES}:13:1: routes: this is an inference routes file, not a sandbox policy")
    assert len(lines) == 2
    assert f"{QUICKSTART}: ok" in out


def test_validate_quiet_prints_nothing_for_valid(capsys):
    assert run(capsys, "validate", "-q", str(QUICKSTART)) == (0, "", "")


CHECKS = [
    # (extra args, exit code, decision, policy key)
    (
        [
            "--binary",
            "/usr/bin/curl",
            "--host",
            "api.github.com",
            "--port",
            "443",
            "--method",
            "GET",
            "--path",
            "/repos/a/b",
        ],
        0,
        "allow",
        "github_api",
    ),
    (
        [
            "--binary",
            "/usr/bin/curl",
            "--host",
            "api.github.com",
            "--port",
            "443",
            "--method",
            "POST",
            "--path",
            "/repos/a/b",
        ],
        1,
        "deny",
        "github_api",
    ),
    (["--binary", "/usr/bin/wget", "--host", "api.github.com", "--port", "443"], 1, "deny", None),
    (
        [
            "--binary",
            "/usr/lib/x/helper",
            "--ancestor",
            "/bin/sh",
            "--ancestor",
            "/usr/bin/curl",
            "--host",
            "api.github.com",
            "--port",
            "443",
        ],
        0,
        "allow",
        "github_api",
    ),
    (["--binary", "/usr/bin/curl", "--host", "evil.test", "--port", "443"], 1, "deny", None),
]


@pytest.mark.parametrize(("extra", "code", "decision", "key"), CHECKS)
def test_check_json(capsys, extra, code, decision, key):
    got, out, _err = run(capsys, "check", "--policy", str(QUICKSTART), *extra, "--json")
    assert got == code
    result = json.loads(out)
    assert set(result) == {"decision", "policy", "reason"}
    assert (result["decision"], result["policy"]) == (decision, key)
    assert result["reason"]


def test_check_audit_exits_zero_and_query(capsys, write):
    policy = write(
        "p.yaml",
        """\
version: 1
network_policies:
  s:
    endpoints:
      - host: s.test
        port: 443
        protocol: rest
        enforcement: audit
        rules: [{allow: {method: GET, path: /search, query: {repo: "NVIDIA/*"}}}]
    binaries: [{path: /usr/bin/curl}]
""",
    )
    base = [
        "check",
        "--policy",
        str(policy),
        "--binary",
        "/usr/bin/curl",
        "--host",
        "s.test",
        "--port",
        "443",
        "--method",
        "GET",
        "--path",
        "/search",
        "--json",
    ]
    code, out, _ = run(capsys, *base, "--query", "repo=NVIDIA/x")
    assert (code, json.loads(out)["decision"]) == (0, "allow")
    code, out, _ = run(capsys, *base, "--query", "repo=other/x")
    assert (code, json.loads(out)["decision"]) == (0, "audit")


def test_check_text_output_and_invalid_input(capsys, write):
    code, out, _ = run(
        capsys,
        "check",
        "--policy",
        str(QUICKSTART),
        "--binary",
        "/usr/bin/curl",
        "--host",
        "api.github.com",
        "--port",
        "443",
    )
    assert code == 0 and out.startswith("ALLOW policy=github_api reason: ")
    code, _out, err = run(
        capsys, "check", "--policy", str(ROUTES), "--binary", "/usr/bin/curl", "--host", "x.test", "--port", "443"
    )
    assert code == 2 and "inference routes file" in err
    code, _out, err = run(
        capsys, "check", "--policy", str(QUICKSTART), "--binary", "/usr/bin/curl", "--host", "x.test", "--port", "99999"
    )
    assert code == 2 and "--port must be 1..65535" in err
    for bad, why in (
        (["--host", "bad host"], "is not a host name"),
        (["--host", "x.test", "--method", "GET /"], "is not an HTTP method"),
        (["--host", "x.test", "--path", "/a"], "need --method"),
        (["--host", "x.test", "--method", "GET", "--path", "a"], "--path must start with '/'"),
        (["--host", "x.test", "--resolved-ip", "999.1.1.1"], "is not an IP address"),
    ):
        code, _out, err = run(capsys, "check", "--policy", str(QUICKSTART), "--binary", "/b", "--port", "443", *bad)
        assert code == 2 and why in err, (bad, err)
    with pytest.raises(SystemExit) as info:
        main(["policy", "check", "--policy", str(QUICKSTART), "--binary", "/b", "--host", "h", "--port", "x"])
    assert info.value.code == 2


def test_check_with_preset(capsys):
    base = POLICIES / "base.yaml"
    args = [
        "check",
        "--policy",
        str(base),
        "--binary",
        "/usr/bin/python3.12",
        "--host",
        "pypi.org",
        "--port",
        "443",
        "--method",
        "GET",
        "--path",
        "/simple/requests/",
        "--json",
    ]
    code, out, _ = run(capsys, *args)
    assert code == 1 and json.loads(out)["decision"] == "deny"
    code, out, _ = run(capsys, *args, "--preset", str(POLICIES / "presets" / "pypi.yaml"))
    assert code == 0 and json.loads(out)["policy"] == "pypi"


def test_merge_digest_diff_normalize(capsys, tmp_path):
    out_file = tmp_path / "merged.yaml"
    code, _out, err = run(
        capsys,
        "merge",
        str(POLICIES / "base.yaml"),
        str(POLICIES / "presets" / "pypi.yaml"),
        str(POLICIES / "presets" / "github.yaml"),
        "-o",
        str(out_file),
    )
    assert code == 0
    assert "merge: added network_policies.pypi from" in err
    text = out_file.read_text()
    assert text.startswith("# Merged by clawfleet policy merge")
    code, digest_out, _ = run(capsys, "digest", str(out_file))
    assert code == 0 and digest_out.strip() in text  # the header records the same digest
    code, out, _ = run(capsys, "diff", str(POLICIES / "base.yaml"), str(out_file))
    assert code == 1
    assert "+ network_policies.github: added" in out and "result: hot-reloadable" in out
    code, out, _ = run(capsys, "diff", str(out_file), str(out_file), "--json")
    assert code == 0 and json.loads(out)["changed"] is False
    code, out, _ = run(capsys, "normalize", str(QUICKSTART), "--json")
    assert code == 0 and json.loads(out)["network_policies"]["github_api"]["name"] == "github-api-readonly"


def test_merge_reports_overrides(capsys, write):
    override = write(
        "o.yaml",
        "preset: {name: o}\nnetwork_policies:\n  github_api:\n"
        "    endpoints: [{host: api.github.com, port: 443}]\n"
        "    binaries: [{path: /usr/bin/curl}]\n",
    )
    code, out, err = run(capsys, "merge", str(QUICKSTART), str(override))
    assert code == 0
    assert f"merge: overridden network_policies.github_api: {override} replaces the definition from" in err
    assert "access: read-only" not in out


def test_schema_is_json_schema(capsys):
    code, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and schema["$schema"].endswith("2020-12/schema")


def test_console_script_subprocess(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text("version: 1\nversion: 1\n")
    proc = subprocess.run([str(CLAWFLEET), "policy", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{bad}:2:1: version: duplicate key 'version' (first defined on line 1)"
    proc = subprocess.run(
        [
            str(CLAWFLEET),
            "policy",
            "check",
            "--policy",
            str(QUICKSTART),
            "--binary",
            "/usr/bin/curl",
            "--host",
            "api.github.com",
            "--port",
            "443",
            "--method",
            "DELETE",
            "--path",
            "/x",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["decision"] == "deny"
