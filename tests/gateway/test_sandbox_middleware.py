"""The ``openshell/regex`` middleware through a real sandbox (Launcher: namespaces, Landlock, seccomp) with curl
inside it, against real HTTPS origins on the host: request bodies redacted, blocked and logged before they leave
the gateway, response bodies redacted or withheld before the sandbox reads them. Root only (CI runs as root, so
nothing skips there)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from .support import Origin, make_ca_and_leaf
from .test_middleware import AWS, GHP, TOKEN, ContentHandler
from .test_sandbox import NAMES, Box

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox integration tests need root; CI runs as root")


@pytest.fixture(scope="module")
def mwworld(tmp_path_factory):
    d = tmp_path_factory.mktemp("mwworld")
    ca, cert, key = make_ca_and_leaf(d, NAMES)
    echo, content = Origin(cert, key), Origin(cert, key, ContentHandler)
    yield {"ca": ca, "echo": echo, "content": content, "dir": d}
    echo.close()
    content.close()


@pytest.fixture
def box(tmp_path, mwworld, user) -> Box:
    b = Box(tmp_path, mwworld, user)
    e, c = mwworld["echo"].port, mwworld["content"].port
    b.write_policy(f"""\
    api:
      name: api
      endpoints:
        - host: origin.test
          port: {e}
          protocol: rest
          allowed_ips: [127.0.0.1/32]
          rules:
            - allow: {{method: POST, path: "/v1/**"}}
        - host: pass.test
          port: {c}
          protocol: rest
          allowed_ips: [127.0.0.1/32]
          access: read-only
      binaries: [{{path: /usr/bin/curl}}]
    """)
    with b.policy.open("a") as f:
        f.write("""\
network_middlewares:
  redact-tokens:
    name: Redact API tokens
    middleware: openshell/regex
    order: 10
    config: {mode: redact}
    endpoints: {include: ["*.test"], exclude: [pass.test]}
  block-keys:
    middleware: openshell/regex
    order: 20
    config:
      mode: block
      patterns: [{name: aws-access-key, regex: "AKIA[0-9A-Z]{16}"}]
    endpoints: {include: [origin.test]}
  detect-internal:
    middleware: openshell/regex
    order: 30
    config: {mode: detect, patterns: [{name: internal, regex: "(?i)internal-only"}]}
    endpoints: {include: [origin.test]}
  response-guard:
    middleware: openshell/regex
    order: 40
    config:
      direction: response
      replacement: "[FILTERED]"
      patterns: [{name: github-token, regex: "ghp_[A-Za-z0-9_]{20,}"}]
    endpoints: {include: [pass.test]}
  response-keys:
    middleware: openshell/regex
    order: 50
    config:
      mode: block
      direction: response
      patterns: [{name: private-key, regex: "-----BEGIN [A-Z ]*PRIVATE KEY-----"}]
    endpoints: {include: [pass.test]}
""")
    return b


def test_curl_request_and_response_bodies_through_the_regex_middleware(box, mwworld):
    e, c = mwworld["echo"].port, mwworld["content"].port
    o, p = f"https://origin.test:{e}", f"https://pass.test:{c}"
    # The script is a file in the workdir, not a command-line argument: the sandbox's process events log its command
    # line (as upstream's OCSF Process Activity does), and the log below must hold none of the secrets it sends.
    script = box.work / "middleware.sh"
    script.write_text(
        textwrap.dedent(f"""
        c() {{ curl -s -o /tmp/out -w '%{{http_code}}' "$@"; echo " $(head -c 600 /tmp/out | tr -d '\\n')"; }}
        c -H content-type:application/json -d '{{"api_key":"{TOKEN}","n":1}}' {o}/v1/chat
        c -H content-type:application/json -d '{{"api_key":"sk-short","n":1}}' {o}/v1/chat
        c -d 'aws_access_key_id={AWS}' {o}/v1/upload
        c -d 'aws_access_key_id=akia-not-a-key' {o}/v1/upload
        c -d 'this is INTERNAL-ONLY' {o}/v1/notes
        c -H 'transfer-encoding: chunked' -d 'chunked {TOKEN}' {o}/v1/chat
        printf '{TOKEN}' | gzip > /tmp/z; c -H 'content-encoding: gzip' --data-binary @/tmp/z {o}/v1/chat
        c --compressed {p}/secret
        c {p}/plain
        c {p}/pem
    """)
    )
    proc = box.run(["/bin/sh", "/sandbox/middleware.sh"])
    lines = proc.stdout.strip().split("\n")
    codes = [x.split(" ", 1)[0] for x in lines]
    assert codes == ["200", "200", "403", "200", "200", "200", "415", "200", "200", "403"], proc
    bodies = [x.split(" ", 1)[1] if " " in x else "" for x in lines]
    assert json.loads(bodies[0])["body"] == '{"api_key":"[REDACTED]","n":1}'
    assert json.loads(bodies[1])["body"] == '{"api_key":"sk-short","n":1}'  # the twin: byte for byte
    denied = json.loads(bodies[2])
    assert denied["error"] == "middleware_denied" and denied["middleware"] == "block-keys" and denied["rule"] == "api"
    assert AWS not in bodies[2]
    assert json.loads(bodies[3])["body"] == "aws_access_key_id=akia-not-a-key"
    assert json.loads(bodies[4])["body"] == "this is INTERNAL-ONLY"
    assert json.loads(bodies[5])["body"] == "chunked [REDACTED]"
    assert json.loads(bodies[6])["error"] == "unsupported_content_encoding"
    assert bodies[7] == "your token is [FILTERED] (keep it)"  # curl asked for gzip; the gateway asked for identity
    assert bodies[8] == "nothing to see here"
    withheld = json.loads(bodies[9])
    assert withheld["error"] == "middleware_denied" and withheld["direction"] == "response"
    assert "MIIB" not in bodies[9]
    seen = json.dumps(mwworld["echo"].seen)
    assert TOKEN not in seen and AWS not in seen  # nothing the middleware caught reached the origin
    assert GHP not in proc.stdout
    recs = [r for r in box.records() if r.get("event") == "middleware"]
    outcomes = {(r["middleware"], r["outcome"]) for r in recs}
    assert {("redact-tokens", "redacted"), ("block-keys", "blocked"), ("detect-internal", "detected"),
            ("response-guard", "redacted"), ("response-keys", "blocked")} <= outcomes  # fmt: skip
    assert all(r["binary"] == "/usr/bin/curl" and r["rule"] == "api" for r in recs)
    log = box.log.read_text()
    assert TOKEN not in log and AWS not in log and GHP not in log  # names and counts only, never the content
