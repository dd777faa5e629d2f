"""Canonical request targets: one reading or a refusal; the canonical form is stable."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawfleet.policy import compile_policy, load_text
from clawfleet.policy.request_target import MAX_TARGET_LEN, TargetRefused, canonicalize_target

REFUSED = [
    "/public/admin;x/y",  # Tomcat/Jetty/Spring drop ";x": /public/admin/y
    "/public/admin;/x",
    "/public/..;/private",
    "/public/admin%3bx/y",
    "/public/../private",
    "/public/./admin/x",
    "/public/%2e%2e/private",
    "/public/%2E/admin",
    "/public/.%2e/private",
    "/public%2fadmin/x",
    "/public/admin%2Fx",
    "/public/%5cadmin",
    "/public\\admin",
    "/public/x#/../admin",
    "/public/admin#x",
    "/public/admin%09/x",
    "/public/admin%20/x",
    "/public/admin%00/x",
    "/public/admin%0d%0aX:y",
    "/public/%2561dmin/x",  # double encoding: %61 after one decode
    "/public/%252e%252e/private",
    "/public/%3f/x",
    "/public/%23/x",
    "/public/%EF%BC%8E%EF%BC%8E/private",  # fullwidth full stops, "best fit" to ".."
    "/public/%EF%BC%8Fadmin",  # fullwidth solidus
    "/public/admin%E2%80%8B/x",  # zero-width space (format character)
    "/public/admin%C2%A0/x",  # no-break space
    "/public/%C0%AE%C0%AE/private",  # overlong UTF-8
    "/public/%zz",
    "/public/%4",
    "public/x",
    "/x?a=1#frag",
    "/x?a=%zz",
    "/" + "a" * MAX_TARGET_LEN,
]


@pytest.mark.parametrize("raw", REFUSED)
def test_ambiguous_targets_are_refused(raw):
    with pytest.raises(TargetRefused) as info:
        canonicalize_target(raw)
    assert str(info.value)
    assert info.value.status == (414 if len(raw) > MAX_TARGET_LEN else 400)


@pytest.mark.parametrize(
    ("raw", "path", "wire"),
    [
        ("/public/x", "/public/x", "/public/x"),
        ("/public/%61bc", "/public/abc", "/public/abc"),  # unreserved escapes decoded
        ("/public//x///y", "/public/x/y", "/public/x/y"),
        ("/public/caf%c3%a9", "/public/caf\u00e9", "/public/caf%C3%A9"),
        ("/public/a:b@c!$&'()*+,=~", "/public/a:b@c!$&'()*+,=~", "/public/a:b@c!$&'()*+,=~"),
        ("/public/a?q=1%202&r=a;b", "/public/a", "/public/a?q=1%202&r=a;b"),  # the query is kept as sent
        ("/public/...", "/public/...", "/public/..."),
        ("/public/a.b/.c", "/public/a.b/.c", "/public/a.b/.c"),
        ("/", "/", "/"),
    ],
)
def test_canonical_form(raw, path, wire):
    target = canonicalize_target(raw)
    assert (target.path, target.wire) == (path, wire)


SEGMENTS = ["public", "admin", "x", ".", "..", "..;", ";x", "%2e", "%2E%2e", "%2f", "%5c", "%61dmin", "%2561", "%09",
            "%20", "%00", "%C3%A9", "\u00e9", "%EF%BC%8E", "a#b", "%", "%4", "~", "a+b", ""]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=6), max_size=6), st.booleans())
def test_canonical_form_is_a_fixed_point(segments, query):
    raw = "/" + "/".join(segments) + ("?q=1" if query else "")
    try:
        target = canonicalize_target(raw)
    except TargetRefused:
        return
    again = canonicalize_target(target.wire)
    assert again == target
    assert target.wire.isascii() and target.wire.isprintable() and " " not in target.wire
    assert all(seg not in (".", "..") for seg in target.path.split("/"))
    assert not any(c in target.path for c in ";\\%#?")


def test_engine_judges_the_canonical_path():
    policy = load_text(
        """\
version: 1
network_policies:
  site:
    endpoints:
      - host: site.test
        port: 443
        protocol: rest
        rules: [{allow: {method: GET, path: "/public/**"}}]
        deny_rules: [{method: GET, path: "/public/admin/**"}, {method: GET, path: "/public/secret*"}]
    binaries: [{path: /usr/bin/curl}]
""",
        "p.yaml",
    )
    engine = compile_policy(policy)

    def decide(path: str) -> str:
        return engine.decide("/usr/bin/curl", (), "site.test", 443, "GET", path).decision

    assert decide("/public/x") == "allow"
    assert decide("/public/%61dmin/x") == "deny"  # decoded before judging
    assert decide("/public/admin") == "deny"  # the deny's base path
    assert decide("/public/admin;x/y") == "deny"
    assert decide("/public//admin/x") == "deny"
    assert decide("/public/secretary") == "deny"
    assert decide("/public/secretary/") == "deny"  # a deny rule also covers the path without its trailing slash
    assert decide("/public/secretary/x") == "allow"  # "*" stays within its segment
