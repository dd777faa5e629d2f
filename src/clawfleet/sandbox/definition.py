"""A sandbox definition file: one agent the supervisor runs (``clawfleet gateway serve``'s ``sandboxes:``)::

    name: coder
    command: [/usr/bin/python3, /sandbox/agent.py]   # a string runs under /bin/sh -c
    policy: coder-policy.yaml          # hot-reloaded by the gateway; relative to this file
    user: clawfleet-sbx                # default: the policy's process.run_as_user
    workdir: /srv/coder                # mounted at /sandbox
    mode: enforce                      # or monitor
    limits: {memory_max: 2G, pids_max: 512}
    env: {LOG_LEVEL: info}
    credentials: [GITHUB_TOKEN]        # placeholders in the sandbox's environment
    secrets: {GITHUB_TOKEN: {file: /etc/clawfleet/secrets/gh, hosts: [api.github.com]}}
    inference: {route: "https://inference.local/v1", env: [OPENAI_BASE_URL]}
    gateway: {extra_ca_file: ..., static_hosts: {...}, pin_binaries: true}

:func:`load_definition` reads it (YAML problems and missing keys as ``FILE:LINE:COL: key: message``),
:meth:`SandboxDefinition.check` finds what the sandbox would refuse at start, :meth:`SandboxDefinition.to_spec`
builds its :class:`SandboxSpec`. ``secrets`` and ``gateway`` are kept as written: they are the gateway's to read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clawfleet.policy.errors import PolicyError, Problem
from clawfleet.policy.loader import load_file
from clawfleet.policy.yamlio import MAX_BYTES, Document, load_document
from clawfleet.sandbox import environment
from clawfleet.sandbox.from_policy import spec_from_policy
from clawfleet.sandbox.spec import ENFORCE, MONITOR, SANDBOX_WORKDIR, SandboxSpec, parse_size

__all__ = ["DEFINITION_KEYS", "DefinitionError", "SandboxDefinition", "load_definition", "load_mapping"]

DEFINITION_KEYS = frozenset({"name", "command", "policy", "user", "workdir", "mode", "limits", "env", "credentials",
                             "secrets", "inference", "gateway"})  # fmt: skip
LIMIT_KEYS = frozenset({"memory_max", "pids_max"})
REQUIRED = ("name", "command", "policy")


class DefinitionError(ValueError):
    """A definition (or daemon config) file is unusable; the message names FILE:LINE:COL and the key."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    @classmethod
    def at(cls, doc: Document, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> DefinitionError:
        problem = doc.problem(path, message, at_key=at_key)
        return cls(str(problem), [problem])


def load_mapping(path: str) -> Document:
    """A YAML file that must hold a mapping, with the position of every key and value. Raises DefinitionError
    (bad YAML, not a mapping) or OSError."""
    with open(path, "rb") as f:
        text = f.read(MAX_BYTES + 1)
    try:
        doc = load_document(text, path)
    except PolicyError as exc:
        raise DefinitionError(str(exc), exc.problems) from None
    errors = [p for p in doc.problems if p.is_error]
    if errors:
        raise DefinitionError("\n".join(str(p) for p in errors), errors)
    if not isinstance(doc.data, dict):
        raise DefinitionError.at(doc, (), "expected a mapping")
    return doc


@dataclass(frozen=True)
class SandboxDefinition:
    path: str  # the file, absolute
    base: str  # its directory: relative paths in it resolve here
    name: str
    command: tuple[Any, ...]  # strings once checked
    policy: str  # absolute
    user: str | None = None
    workdir: Any = SANDBOX_WORKDIR
    mode: Any = ENFORCE
    limits: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, Any] = field(default_factory=dict)
    credentials: tuple[str, ...] = ()
    secrets: Mapping[str, Any] = field(default_factory=dict)
    inference: Mapping[str, Any] = field(default_factory=dict)
    gateway: Mapping[str, Any] = field(default_factory=dict)
    document: Document | None = field(default=None, compare=False, repr=False)

    def _error(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> DefinitionError:
        if self.document is None:
            return DefinitionError(f"{self.path}: {message}")
        return DefinitionError.at(self.document, path, message, at_key=at_key)

    def check(self) -> None:
        """Everything the sandbox side would refuse at start, found now (nothing is started): unknown keys, mode,
        command, limits, the policy (PolicyError, positioned) and the environment (EnvError)."""
        data: Mapping[str, Any] = self.document.data if self.document is not None else {}
        unknown = sorted(set(data) - DEFINITION_KEYS)
        if unknown:
            raise self._error((unknown[0],), f"unknown keys: {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(DEFINITION_KEYS))})", at_key=True)  # fmt: skip
        if self.mode not in (ENFORCE, MONITOR):
            raise self._error(("mode",), f"mode must be enforce or monitor, not {self.mode!r}")
        if not all(isinstance(a, str) for a in self.command):
            raise self._error(("command",), "command must be a string or a list of strings")
        unknown = sorted(set(self.limits) - LIMIT_KEYS)
        if unknown:
            raise self._error(("limits", unknown[0]), f"unknown limits: {', '.join(unknown)}", at_key=True)
        if self.limits.get("memory_max") is not None:
            try:
                parse_size(str(self.limits["memory_max"]))
            except ValueError as exc:
                raise self._error(("limits", "memory_max"), str(exc)) from None
        load_file(self.policy)  # PolicyError with every problem, positioned
        explicit = {str(k): str(v) for k, v in self.env.items()}
        environment.build({}, "check", explicit=explicit, credentials=list(self.credentials))  # EnvError

    def to_spec(self, environ: Mapping[str, str]) -> SandboxSpec:
        """The spec the sandbox runs with; ``environ`` is the supervisor's environment (see environment.build)."""
        policy = load_file(self.policy)
        explicit = {str(k): str(v) for k, v in self.env.items()}
        if self.inference.get("route"):
            for var in self.inference.get("env") or ["OPENAI_BASE_URL"]:
                explicit[str(var)] = str(self.inference["route"])
        mem = self.limits.get("memory_max")
        return spec_from_policy(
            policy,
            argv=tuple(str(a) for a in self.command),
            workdir=os.path.abspath(os.path.join(self.base, str(self.workdir))),
            environ=environ,
            user=str(self.user or policy.process.run_as_user or "sandbox"),
            group=policy.process.run_as_group,
            explicit_env=explicit,
            credentials=self.credentials,
            memory_max=parse_size(str(mem)) if mem is not None else None,
            pids_max=int(self.limits.get("pids_max", 4096)),
            mode=str(self.mode),
        )


def _mapping(doc: Document, d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = d.get(key) or {}
    if not isinstance(value, Mapping):
        raise DefinitionError.at(doc, (key,), "expected a mapping")
    return value


def load_definition(path: str) -> SandboxDefinition:
    """Read a definition file. Raises DefinitionError (positioned) or OSError; :meth:`SandboxDefinition.check`
    validates the rest."""
    doc = load_mapping(path)
    d: dict[str, Any] = doc.data
    for key in REQUIRED:
        if not d.get(key):
            raise DefinitionError.at(doc, (key,) if key in d else (), f"'{key}' is required")
    base = os.path.dirname(os.path.abspath(path))
    command = d["command"]
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    if not isinstance(command, list):
        raise DefinitionError.at(doc, ("command",), "command must be a string or a list of strings")
    credentials = d.get("credentials") or []
    if not isinstance(credentials, list):
        raise DefinitionError.at(doc, ("credentials",), "expected a list of names")
    policy = str(d["policy"])
    return SandboxDefinition(
        path=os.path.abspath(path),
        base=base,
        name=str(d["name"]),
        command=tuple(command),
        policy=policy if os.path.isabs(policy) else os.path.join(base, policy),
        user=str(d["user"]) if d.get("user") else None,
        workdir=d.get("workdir", SANDBOX_WORKDIR),
        mode=d.get("mode", ENFORCE),
        limits=_mapping(doc, d, "limits"),
        env=_mapping(doc, d, "env"),
        credentials=tuple(str(c) for c in credentials),
        secrets=_mapping(doc, d, "secrets"),
        inference=_mapping(doc, d, "inference"),
        gateway=_mapping(doc, d, "gateway"),
        document=doc,
    )
