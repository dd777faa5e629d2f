"""The layering of ``src/clawfleet`` (docs/architecture in the README; issue 15), read from the source's imports.

Floors, bottom up: level 0 (``atomicfile``, ``paths``, ``control_protocol``) -> ``policy`` -> ``sandbox`` ->
``gateway`` -> ``supervisor`` -> ``cli``. Every import counts, also those inside functions (deferred for start
time) and under ``TYPE_CHECKING``. ``__main__`` modules are entry points like ``cli.py`` and may call it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "clawfleet"
LEVEL0 = frozenset({"atomicfile", "paths", "control_protocol"})


class Import(NamedTuple):
    module: str  # the importing module, dotted
    package: str  # its component: "sandbox", "paths", "cli", ...
    target: str  # the imported module or name, dotted
    target_package: str
    name: str | None  # for `from X import name`
    where: str  # FILE:LINE

    def __str__(self) -> str:
        what = f"from {self.target} import {self.name}" if self.name else f"import {self.target}"
        return f"{self.where}: {what}"


def _component(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "clawfleet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path = ROOT) -> Iterator[Import]:
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path)
        package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "clawfleet":
                        yield Import(module, _component(module), alias.name, _component(alias.name), None, where)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package_parts[: len(package_parts) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target.split(".")[0] != "clawfleet":
                    continue
                for alias in node.names:
                    # `from clawfleet import paths` / `from clawfleet.sandbox import syscalls` import modules
                    full = f"{target}.{alias.name}"
                    is_module = (SRC / Path(*full.split("."))).with_suffix(".py").exists() or (
                        SRC / Path(*full.split("."))
                    ).is_dir()
                    name_target = full if is_module else target
                    yield Import(module, _component(module), name_target, _component(name_target), alias.name, where)


ALL = list(imports())
CROSS = [i for i in ALL if i.target_package not in (i.package, "clawfleet") and not i.module.endswith("__main__")]


def _violations(package: str, allowed: frozenset[str] | None = None, forbidden: frozenset[str] = frozenset()):
    return [str(i) for i in CROSS if i.package == package and (
        (allowed is not None and i.target_package not in allowed) or i.target_package in forbidden)]  # fmt: skip


def test_the_scan_sees_the_imports_it_judges():
    # the rules below are only as good as the scan: it must see deferred, relative and `from pkg import module`
    seen = {(i.module, i.target) for i in ALL}
    assert ("clawfleet.supervisor.cli", "clawfleet.supervisor.daemon") in seen  # deferred, relative
    assert ("clawfleet.sandbox.from_policy", "clawfleet.policy.model") in seen
    assert ("clawfleet.policy.ledger", "clawfleet.paths") in seen  # from clawfleet import paths
    assert ("clawfleet.supervisor.embedded", "clawfleet.gateway.assembly") in seen


def test_sandbox_knows_nothing_of_gateway_router_fleet_supervisor_bundle_agent():
    forbidden = frozenset({"gateway", "router", "fleet", "supervisor", "bundle", "agent", "cli"})
    assert _violations("sandbox", forbidden=forbidden) == []


def test_policy_imports_only_its_own_package_and_level_0():
    assert _violations("policy", allowed=LEVEL0) == []


def test_level_0_imports_only_level_0():
    for package in LEVEL0:
        assert _violations(package, allowed=LEVEL0) == []


def test_gateway_does_not_reach_up_to_the_supervisor_or_the_command_line():
    forbidden = frozenset({"supervisor", "fleet", "bundle", "agent", "cli"})
    assert _violations("gateway", forbidden=forbidden) == []


def test_only_cli_composes_the_command_tree():
    # a package's `cli` module registers its own commands; it is never imported by another package
    offenders = [str(i) for i in CROSS if i.target.endswith(".cli") or ".cli." in i.target]
    assert offenders == []


def test_no_private_name_is_imported_across_modules():
    offenders = [str(i) for i in ALL if i.name and i.name.startswith("_") and not i.name.startswith("__")]
    assert offenders == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_packages():
    edges: dict[str, set[str]] = {}
    for i in CROSS:
        edges.setdefault(i.package, set()).add(i.target_package)
    assert _cycles(edges) == []


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True), ({"a": {"b"}, "b": set()}, False)],
)
def test_the_cycle_finder_finds_cycles(edges, cycle):
    assert bool(_cycles(edges)) is cycle
