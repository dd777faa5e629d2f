"""Glob matching in time linear in the text (no backtracking), for paths a sandbox controls.

A backtracking regex for ``/files/*-*-*.txt`` needs polynomial (in practice, for Python's ``re``, unbounded)
time on ``/files/`` + 3,000 ``-``: one request could stall the gateway's event loop and so every sandbox on the
host. Here a glob becomes a small NFA that is run as a lazily built DFA: every character of the text is looked at
once, each step is one dict look-up once the DFA state is cached, and an uncached step costs at most the number
of NFA states (the glob's length). So a match is O(len(text)) with a cache, O(len(text) * len(glob)) without.

A glob with at most one run of ``*`` (``/repos/**``, ``/v1/*/completions``) and at most :data:`_REGEX_MAX_LEN`
characters is matched with its regex instead, which is ten times faster in CPython: with a single quantifier
an anchored match tries each split point once, so it is O(len(text) * len(glob)) as well; two quantifiers are
what makes backtracking blow up.

Semantics (the same as :func:`clawfleet.policy.matching.glob_to_regex`, which stays the written specification and
the test oracle): ``*`` any run of characters other than ``/``; ``**`` any run of characters including ``/``;
``**/`` at the start of a segment zero or more whole segments (``/a/**/b`` matches ``/a/b``); a trailing ``/**``
also matches the text before it (``/a/**`` matches ``/a``, so ``deny /admin/**`` covers ``/admin``); ``?`` one
character other than ``/``; everything else literal.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["Glob", "compile_glob"]

_ANY, _NONSLASH = "any", "nonslash"  # character classes of an edge; anything else is one literal character
_MAX_CACHED = 8192  # DFA transitions kept per glob; past that, steps are computed (still linear in the text)
_MAX_STATES = 512  # DFA states per glob (subsets of NFA states); past that, plain NFA simulation
_REGEX_MAX_LEN = 256  # single-quantifier globs up to this length use the regex (bounded work per split point)
_STAR_RUN = re.compile(r"\*+")


class _Nfa:
    def __init__(self) -> None:
        self.edges: list[list[tuple[str, int]]] = [[]]
        self.eps: list[list[int]] = [[]]

    def new(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1


def _build(pattern: str) -> tuple[_Nfa, frozenset[int], int]:
    """NFA, accepting states, and how many leading characters are plain literals (matched with ``startswith``)."""
    nfa = _Nfa()
    cur, i, n = 0, 0, len(pattern)
    accept: set[int] = set()
    literal_prefix = -1
    while i < n:
        c = pattern[i]
        if c == "*":
            if literal_prefix < 0:
                literal_prefix = i
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            at_segment_start = i == 0 or pattern[i - 1] == "/"
            if j - i >= 2 and at_segment_start and j < n and pattern[j] == "/":
                # "**/": zero or more whole segments, i.e. "" or anything that ends in "/"
                inner, after = nfa.new(), nfa.new()
                nfa.eps[cur].append(after)
                nfa.edges[cur] += [(_ANY, inner), ("/", after)]
                nfa.edges[inner] += [(_ANY, inner), ("/", after)]
                cur, i = after, j + 1
                continue
            nfa.edges[cur].append((_ANY if j - i >= 2 else _NONSLASH, cur))  # a loop on the current state
            i = j
            continue
        if c == "/" and n - i - 1 >= 2 and pattern[i + 1 :].strip("*") == "":
            # trailing "/**": the text before it, or it followed by "/" and anything
            if literal_prefix < 0:
                literal_prefix = i
            rest = nfa.new()
            nfa.edges[cur].append(("/", rest))
            nfa.edges[rest].append((_ANY, rest))
            accept |= {cur, rest}
            return nfa, frozenset(accept), literal_prefix
        nxt = nfa.new()
        if c == "?":
            if literal_prefix < 0:
                literal_prefix = i
            nfa.edges[cur].append((_NONSLASH, nxt))
        else:
            nfa.edges[cur].append((c, nxt))
        cur, i = nxt, i + 1
    accept.add(cur)
    return nfa, frozenset(accept), n if literal_prefix < 0 else literal_prefix


class Glob:
    """A compiled glob; :meth:`match` answers whether the whole text matches."""

    __slots__ = ("_accept", "_accepting", "_cached", "_closure", "_dead", "_ids", "_lock", "_nfa", "_prefix", "_sets",
                 "_start", "_table", "match", "pattern")  # fmt: skip

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        nfa, accept, prefix_len = _build(pattern)
        self._nfa, self._accept = nfa, accept
        self._prefix = pattern[:prefix_len]
        self._closure = [self._close((s,)) for s in range(len(nfa.edges))]
        self._ids: dict[frozenset[int], int] = {}
        self._sets: list[frozenset[int]] = []
        self._accepting: list[bool] = []
        self._table: list[dict[str, int]] = []  # DFA state -> {character: next DFA state}, filled on demand
        self._cached = 0
        self._lock = threading.Lock()  # the engine is shared read-only between threads; only the cache grows
        self._dead = self._intern(frozenset())
        # Every state up to the end of the literal prefix has one literal edge and no loop or epsilon: after
        # ``startswith(prefix)`` the run starts at state len(prefix).
        self._start = self._intern(self._closure[len(self._prefix)])
        self.match = self.match_linear
        if len(pattern) <= _REGEX_MAX_LEN and len(_STAR_RUN.findall(pattern)) <= 1:
            from .matching import glob_to_regex  # the specification module imports this one

            rx = re.compile(glob_to_regex(pattern))
            self.match = lambda text: rx.match(text) is not None

    def _close(self, states: Iterable[int]) -> frozenset[int]:
        seen, todo = set(states), list(states)
        while todo:
            for t in self._nfa.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)

    def _intern(self, states: frozenset[int]) -> int:
        with self._lock:
            sid = self._ids.get(states)
            if sid is None:
                self._sets.append(states)
                self._accepting.append(not states.isdisjoint(self._accept))
                self._table.append({})
                sid = self._ids[states] = len(self._sets) - 1
            return sid

    def _next_set(self, states: frozenset[int], ch: str) -> frozenset[int]:
        out: set[int] = set()
        for s in states:
            for cls, target in self._nfa.edges[s]:
                if cls in (ch, _ANY) or (cls == _NONSLASH and ch != "/"):
                    out |= self._closure[target]
        return frozenset(out)

    def _extend(self, sid: int, ch: str) -> int:
        """The DFA state after ``ch`` (cached while there is room); -1 when the DFA may not grow any more."""
        following = self._next_set(self._sets[sid], ch)
        if following not in self._ids and len(self._sets) >= _MAX_STATES:
            return -1
        nxt = self._intern(following)
        if self._cached < _MAX_CACHED:
            self._table[sid][ch] = nxt
            self._cached += 1
        return nxt

    def match_linear(self, text: str) -> bool:
        """Whether the whole text matches, by the DFA (``match`` may use the regex when that is as safe)."""
        prefix = self._prefix
        if not text.startswith(prefix):
            return False
        table, dead, sid = self._table, self._dead, self._start
        rest = text[len(prefix) :] if prefix else text
        for pos, ch in enumerate(rest):
            nxt = table[sid].get(ch)
            if nxt is None:
                nxt = self._extend(sid, ch)
                if nxt < 0:
                    return self._match_uncached(self._next_set(self._sets[sid], ch), rest, pos + 1)
            if nxt == dead:
                return False
            sid = nxt
        return self._accepting[sid]

    def _match_uncached(self, states: frozenset[int], text: str, pos: int) -> bool:
        """Plain NFA simulation once the DFA cache is full: O(len(glob)) per character, still no backtracking."""
        for ch in text[pos:]:
            if not states:
                return False
            states = self._next_set(states, ch)
        return not states.isdisjoint(self._accept)

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Glob:
    return Glob(pattern)
