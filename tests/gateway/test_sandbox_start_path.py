"""The start path of `clawfleet sandbox run`: what it imports before its sandbox forks, the CA after the import
diet, and the CA bundle the embedded gateway writes before the sandbox goes on.

httpx (with click and rich, which its CLI module pulls in), cryptography and asyncio were imported by the gateway
config (through the provider token minter) before the sandbox was forked: more than the sandbox itself costs. They
are now imported where a minter or the gateway first needs them; the CA takes Encoding and friends from
cryptography's private ``_serialization`` (the public package also loads its SSH key support) and makes the key its
leaves share with the first leaf. The CA itself is still made at start: the sandbox trusts its certificate before
its command runs (a hot reload may add an intercepted endpoint later)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clawfleet.gateway import ca as ca_module
from clawfleet.gateway.ca import SandboxCA
from clawfleet.gateway.config import GatewayConfig
from clawfleet.supervisor.embedded import EmbeddedGateway

HEAVY = ("httpx", "cryptography", "asyncio", "h11", "rich", "click")

PRE_FORK = textwrap.dedent(
    """\
    import argparse, json, os, sys
    from clawfleet.sandbox.run_args import add_run_arguments, spec_from_args
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    ns = parser.parse_args(["--policy", sys.argv[1], "--workdir", sys.argv[2], "--", "/bin/true"])
    spec_from_args(ns, dict(os.environ))
    # what supervisor.cli.run_command does before Launcher.run() forks the sandbox
    from clawfleet.gateway.config import config_from_args
    config_from_args(ns.policy, ns.gateway_config, ns.mode, ns.gateway_log)
    from clawfleet.supervisor.embedded import EmbeddedGateway, run_sandbox
    from clawfleet.sandbox.launcher import Launcher
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """
)


def test_nothing_heavy_is_imported_before_the_sandbox_forks(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr]\n"
                      "process:\n  run_as_user: nobody\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", PRE_FORK, str(policy), str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert "clawfleet" in loaded  # the probe ran the start path
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


MINT = textwrap.dedent(
    """\
    import json, sys
    from clawfleet.gateway.token_mint import MintDriver, minters_for
    from clawfleet.policy.profiles import load_profile_file
    profile = load_profile_file(sys.argv[1])
    material = {"GCP_SA_ACCESS_TOKEN": {"client_email": "/nonexistent/a", "private_key": "/nonexistent/b"}}
    minters_for("gcp", profile, material)  # what parsing a gateway config with refresh material does
    parsed = sorted({m.split(".")[0] for m in sys.modules})
    MintDriver({"gcp": profile}, {"gcp": material})  # the gateway that will mint
    print(json.dumps([parsed, sorted(m for m in sys.modules if m.split(".")[0] in ("httpx", "cryptography"))]))
    """
)


def test_refresh_material_is_checked_without_httpx_and_a_minting_gateway_loads_it_at_start():
    profile = Path(__file__).resolve().parents[1] / "data" / "openshell-providers" / "google-cloud.yaml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", MINT, str(profile)], capture_output=True, text=True, env=env,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    parsed, after = json.loads(out.stdout)
    assert set(parsed).isdisjoint(HEAVY), sorted(set(parsed) & set(HEAVY))
    # a broken install fails the minting gateway's start, not its first mint
    assert "httpx" in after and "cryptography.hazmat.primitives.asymmetric.rsa" in after


def test_the_ca_uses_the_public_serialization_classes():
    # cryptography is pinned; should a release move these, this fails rather than the CA writing something else
    for name in ("Encoding", "PrivateFormat", "NoEncryption"):
        assert getattr(ca_module.serialization, name) is getattr(serialization, name)


def test_a_persistent_ca_is_written_and_read_back(tmp_path):
    path = tmp_path / "ca" / "ca.pem"
    first = SandboxCA.persistent(str(path), "unit")
    assert (path.stat().st_mode & 0o777) == 0o600
    again = SandboxCA.persistent(str(path), "unit")
    assert again.cert_pem == first.cert_pem  # the same CA the running sandbox trusts
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert x509.load_pem_x509_certificate(again.cert_pem).public_key() == key.public_key()
    path.write_bytes(b"not a key\n")  # unreadable: a new CA replaces it
    fresh = SandboxCA.persistent(str(path), "unit")
    assert fresh.cert_pem != first.cert_pem and path.read_bytes().endswith(fresh.cert_pem)
    for ca in (first, again, fresh):
        ca.close()


def test_the_leaf_key_is_made_with_the_first_leaf_and_shared_by_all(tmp_path):
    ca = SandboxCA("unit")
    assert ca._leaf is None  # nothing made for leaves until a connection is intercepted
    hosts = [f"h{i}.example" for i in range(8)] + ["10.0.0.1"]
    with ThreadPoolExecutor(len(hosts)) as pool:  # the first leaves at once: one key, not one per racing thread
        contexts = list(pool.map(ca.server_context, hosts))
    assert ca._leaf is not None and len(set(map(id, contexts))) == len(hosts)
    leaf_key = ca._leaf[0].public_key()
    for host in hosts:
        cert = x509.load_pem_x509_certificate(ca.leaf_pem(host))
        assert cert.public_key() == leaf_key
        cert.verify_directly_issued_by(ca.cert)  # signed by this CA
    # and a client that trusts only this CA completes a handshake with a leaf made after the lazy start
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.cert_pem)
    client = ssl.create_default_context(cafile=str(cafile))
    srv, cli = socket.socketpair()
    served = threading.Thread(target=lambda: _serve_one(contexts[0], srv))
    served.start()
    with client.wrap_socket(cli, server_hostname=hosts[0]) as c:
        assert c.getpeercert()["subjectAltName"] == (("DNS", hosts[0]),)
        c.sendall(b"x")
    served.join()
    assert os.listdir(ca._dir) == []  # the leaf PEM with its key never stays on disk
    ca.close()


def _serve_one(ctx: ssl.SSLContext, sock: socket.socket) -> None:
    with ctx.wrap_socket(sock, server_side=True) as s:
        s.recv(1)


def _embedded(tmp_path) -> EmbeddedGateway:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n")
    return EmbeddedGateway(GatewayConfig(policy=str(policy), sandbox="unit"), state_root=str(tmp_path / "state"))


def test_the_ca_bundle_is_written_whole_before_the_sandbox_goes_on(tmp_path):
    gw = _embedded(tmp_path)
    try:
        gw.start()  # Launcher(on_forked=...): before the sandbox is let go
        data = Path(gw.ca_bundle).read_bytes()
        assert data == gw.ca.bundle_text() and data.endswith(gw.ca.cert_pem) and b"PRIVATE KEY" not in data
        assert os.stat(gw.ca_bundle).st_mode & 0o777 == 0o644  # the sandbox user reads it
        assert os.listdir(gw.state_dir) == ["ca-bundle.pem"]  # nothing else: no temp file, never the CA key
    finally:
        gw.close()
    assert not os.path.exists(gw.state_dir)


def test_the_ca_bundle_is_never_written_through_a_planted_file(tmp_path):
    gw = _embedded(tmp_path)
    target = tmp_path / "elsewhere.pem"
    target.write_text("untouched\n")
    os.symlink(target, gw.ca_bundle)  # the state directory is root's own; were a link planted there anyway
    try:
        with pytest.raises(FileExistsError):
            gw.start()  # fails the start (the launcher kills the sandbox: exit 125 with this reason)
        assert target.read_text() == "untouched\n"
    finally:
        gw.close()


# -- one parse of the policy, no fresh interpreter ------------------------------------------------------------------

BOUND = """\
version: 1
network_policies:
  api:
    endpoints:
      - host: api.example
        port: 443
        protocol: rest
        access: read-only
        credential_binding: {provider: work}
    binaries: [{path: /usr/bin/curl}]
"""


def test_a_policy_handed_to_the_gateway_is_not_read_again_and_a_later_change_is_reloaded(tmp_path, monkeypatch):
    from clawfleet.gateway import reload as reload_module
    from clawfleet.gateway.reload import PolicyHolder
    from clawfleet.policy import load_file_and_stat

    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    loaded = load_file_and_stat(path)

    def no_second_read(_path):
        raise AssertionError("the gateway read the policy file again")

    monkeypatch.setattr(reload_module, "load_file", no_second_read)
    holder = PolicyHolder(str(path), loaded=loaded)
    assert holder.static_policy is loaded[0]  # the very parse the sandbox was built from
    assert not holder.check()  # the stat it came with is the file's: nothing to reload
    monkeypatch.undo()
    new = tmp_path / "policy.new"
    new.write_text("version: 1\nnetwork_policies:\n  api:\n    endpoints: [{host: api.example, port: 443}]\n"
                   "    binaries: [{path: /usr/bin/curl}]\n")  # fmt: skip
    new.rename(path)  # replaced after the sandbox's load: the gateway applies it like any later change
    assert holder.check()
    assert "api" in holder.policy.network_policies


def test_a_change_made_after_the_stat_of_the_handed_over_load_is_still_seen(tmp_path):
    from clawfleet.gateway.reload import PolicyHolder
    from clawfleet.policy import load_file_and_stat

    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    policy, st = load_file_and_stat(path)
    path.write_text("version: 1\nnetwork_policies:\n  api:\n    endpoints: [{host: api.example, port: 443}]\n"
                    "    binaries: [{path: /usr/bin/curl}]\n")  # fmt: skip
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # even within one timestamp tick: size or mtime differ
    holder = PolicyHolder(str(path), loaded=(policy, st))
    assert holder.check() and "api" in holder.policy.network_policies


def test_a_handed_over_policy_still_has_its_credential_bindings_checked(tmp_path):
    from clawfleet.gateway.reload import PolicyHolder
    from clawfleet.policy import PolicyError, load_file_and_stat

    path = tmp_path / "policy.yaml"
    path.write_text(BOUND)
    loaded = load_file_and_stat(path)
    with pytest.raises(PolicyError, match="work"):  # a provider this gateway does not have: refused at start
        PolicyHolder(str(path), loaded=loaded)
    path.write_text("version: 1\n")
    assert PolicyHolder(str(path), loaded=load_file_and_stat(path)).static_policy.network_policies == {}


RUN_PROBE = textwrap.dedent(
    """\
    import json, os, sys
    # Every process on the start path (the CLI, the gateway thread, the three sandbox stages) inherits this fd and
    # the audit hook: what any of them starts, execs or spawns is written here (the command's exec included).
    out = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND)

    def hook(event, args):
        if event in ("os.exec", "os.posix_spawn", "subprocess.Popen", "os.system", "os.fork"):
            os.write(out, json.dumps([event, os.getpid(), str(args[0]) if args else ""]).encode() + b"\\n")

    sys.addaudithook(hook)
    import clawfleet.policy.loader as loader
    parses = []
    real = loader.parse_document
    loader.parse_document = lambda doc, kind: parses.append(kind) or real(doc, kind)
    from clawfleet.cli import main
    code = main(["sandbox", "run", "--policy", sys.argv[1], "--workdir", sys.argv[2], "--", "/bin/true"])
    print(json.dumps({"code": code, "parses": parses}))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox launcher needs root; CI runs as root")
def test_sandbox_run_parses_its_policy_once_and_starts_no_interpreter(tmp_path, user):
    tmp_path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, user.pw_uid, user.pw_gid)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /lib, /etc]\n"
                      "  read_write: [/sandbox, /tmp, /dev/null]\n"
                      f"process:\n  run_as_user: {user.pw_name}\n")  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", RUN_PROBE, str(policy), str(work), str(events)], capture_output=True,
                         text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result == {"code": 0, "parses": ["policy"]}  # one parse serves the sandbox and its gateway
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    # The three sandbox stages are forks of this process; the only program started is the command (no Python
    # re-exec'd for the gateway or a parser, no helper such as ldconfig).
    assert [e[0] for e in seen if e[0] == "os.fork"] == ["os.fork"] * 3
    assert [(e[0], e[2]) for e in seen if e[0] != "os.fork"] == [("os.exec", "/bin/true")]
