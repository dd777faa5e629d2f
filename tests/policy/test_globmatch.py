"""The engine's glob matcher: the same answers as the regex specification, in time linear in the text."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawfleet.policy import compile_policy, load_text
from clawfleet.policy.globmatch import Glob
from clawfleet.policy.matching import compile_glob, compile_glob_regex

ADVERSARIAL = ["/files/*-*-*.txt", "/**/*-*-*-*/x", "/a/**-**-**-**.txt", "/*a*a*a*a*a*b", "/**/**/**/z",
               "/files/*-x.txt", "/files/**-x"]  # fmt: skip


def _in_thread(fn, timeout: float):
    """Run ``fn`` with a hard limit: a backtracking matcher hangs, so the test fails instead of hanging."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert out, f"matcher did not finish within {timeout} s (backtracking?)"
    return out[0]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.text(alphabet="/ab*?.-", max_size=12),
    text=st.text(alphabet="/ab.-", max_size=14),
)
def test_matcher_agrees_with_the_regex_specification(pattern, text):
    glob, expected = Glob(pattern), compile_glob_regex(pattern).match(text) is not None
    assert glob.match_linear(text) == expected, (pattern, text)  # the DFA, whatever the glob
    assert glob.match(text) == expected, (pattern, text)  # the DFA or, with one run of "*", the regex


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("/public/admin/**", "/public/admin", True),  # a trailing /** covers its base path
        ("/public/admin/**", "/public/admin/", True),
        ("/public/admin/**", "/public/admin/x/y", True),
        ("/public/admin/**", "/public/adminx", False),
        ("/public/admin/**", "/public/admi", False),
        ("/a/**/b", "/a/b", True),
        ("/a/**/b", "/a/x/y/b", True),
        ("/a/*", "/a/b/c", False),
        ("/a/?", "/a/b", True),
        ("/a/?", "/a//", False),
        ("/files/*-*-*.txt", "/files/a-b-c.txt", True),
        ("/usr/bin/py*", "/usr/bin/python3.12", True),
        ("/opt/t/**", "/opt/t/bin/x", True),
    ],
)
def test_glob_semantics(pattern, text, expected):
    assert compile_glob(pattern).match(text) is expected


@pytest.mark.parametrize("pattern", ADVERSARIAL)
def test_adversarial_text_is_matched_without_backtracking(pattern):
    """The issue's attack: ``/files/`` + 3,000 ``-`` took 11 s with the backtracking regex."""
    glob = compile_glob(pattern)
    for filler in ("-", "a", "-a", "/-"):
        text = "/files/" + filler * (6000 // len(filler))
        assert _in_thread(lambda t=text: glob.match(t), timeout=10) is False


def _cpu_per_match(glob: Glob, text: str) -> float:
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(5):
            glob.match(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("pattern", [*ADVERSARIAL[:3], *ADVERSARIAL[-2:]])
def test_matching_cost_grows_linearly_with_the_text(pattern):
    """4x the text costs about 4x (a polynomial backtracker: 16x or 64x); generous bound, min of several runs."""
    glob = compile_glob(pattern)
    short, long = "/files/" + "-" * 3000, "/files/" + "-" * 12000
    _in_thread(lambda: glob.match(long), timeout=10)  # warm the DFA cache; fails rather than hangs if not linear
    ratio = _cpu_per_match(glob, long) / max(_cpu_per_match(glob, short), 1e-9)
    assert ratio < 10, f"cost ratio {ratio:.1f} for 4x the text"


def test_engine_decides_the_attack_path_quickly():
    policy = load_text(
        """\
version: 1
network_policies:
  files:
    endpoints:
      - host: files.test
        port: 443
        protocol: rest
        rules: [{allow: {method: GET, path: "/files/*-*-*.txt"}}]
        deny_rules: [{method: GET, path: "/files/**/*-*-*-*.bin"}]
    binaries: [{path: /usr/bin/curl}]
""",
        "p.yaml",
    )
    engine = compile_policy(policy)
    attack = "/files/" + "-" * 6000
    d = _in_thread(lambda: engine.decide("/usr/bin/curl", (), "files.test", 443, "GET", attack), timeout=10)
    assert d.decision == "deny"
    assert engine.decide("/usr/bin/curl", (), "files.test", 443, "GET", "/files/a-b-c.txt").decision == "allow"


def test_full_dfa_cache_falls_back_to_nfa_simulation(monkeypatch):
    """Past the DFA size caps the matcher simulates the NFA: same answers, still no backtracking."""
    import random

    from clawfleet.policy import globmatch

    monkeypatch.setattr(globmatch, "_MAX_STATES", 3)
    monkeypatch.setattr(globmatch, "_MAX_CACHED", 2)
    rnd = random.Random(14)
    for _ in range(3000):
        pattern = "".join(rnd.choice("/ab*?-") for _ in range(rnd.randint(0, 10)))
        text = "".join(rnd.choice("/ab-") for _ in range(rnd.randint(0, 12)))
        glob = Glob(pattern)
        assert glob.match_linear(text) == (compile_glob_regex(pattern).match(text) is not None), (pattern, text)
    glob = Glob("/files/*-*-*.txt")
    assert _in_thread(lambda: glob.match_linear("/files/" + "-" * 6000), timeout=10) is False
