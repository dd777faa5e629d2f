"""The runtime came from the verified bundle, runs on the host's own Python and validates a policy there."""


def test_runtime_runs_from_its_own_venv(host):
    out = host.check_output("/usr/local/bin/clawfleet --version")
    assert out.startswith("clawfleet 0.1.")  # 0.1.1 after side_effect.yml's upgrade
    # Through the runtime link, so the command follows every switch.
    assert host.check_output("readlink /usr/local/bin/clawfleet") == "/opt/clawfleet/venv/bin/clawfleet"
    system_python = host.check_output("/usr/bin/python3 -c 'import sys; print(sys.version_info[:2])'")
    venv_python = host.check_output("/opt/clawfleet/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    assert venv_python == system_python


def test_installed_bundle_is_recorded_and_verified(host):
    digest = host.file("/opt/clawfleet/venv/.clawfleet-bundle").content_string
    assert digest.startswith("sha256:")
    bundle = f"/var/lib/clawfleet/bundles/{digest[7:23]}"
    assert host.file(f"{bundle}/SHA256SUMS").exists
    check = host.run(f"/usr/local/lib/clawfleet-verify-bundle.sh {bundle} {digest}")
    assert check.rc == 0, check.stdout
    assert host.file(bundle).mode == 0o750


def test_runtime_dependencies_import_on_the_host(host):
    # The compiled parts (cffi for cryptography) must match this host's Python, which differs between the images.
    code = "import cryptography.x509, ruamel.yaml, starlette, uvicorn, httpx, h11, pyseccomp, re2; print('ok')"
    assert host.check_output(f'/opt/clawfleet/venv/bin/python -c "{code}"') == "ok"


def test_no_index_was_used(host):
    # pip on the host has no index configured and none reachable: the install can only have come from the bundle.
    freeze = host.check_output("/opt/clawfleet/venv/bin/pip freeze")
    assert "clawfleet" in freeze
