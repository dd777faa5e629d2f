"""Positioned problems and the exception that carries them.

Every problem names the file, the 1-based line and column of the offending YAML
node, the dotted path inside the document and what was expected, so that
``str(problem)`` reads ``policy.yaml:14:9: network_policies.gh.endpoints[0].port: ...``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PolicyError", "Problem", "format_path"]


def format_path(path: Sequence[str | int]) -> str:
    """Render a document path: ``("a", "b", 0, "c")`` -> ``a.b[0].c``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


@dataclass(frozen=True)
class Problem:
    """One finding about a policy file.

    ``line`` and ``col`` are 1-based; both are ``None`` when the policy did not come
    from text (for example a dict handed over by Ansible).
    """

    file: str
    line: int | None
    col: int | None
    path: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.col or 1}"
        prefix = "warning: " if self.severity == "warning" else ""
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {prefix}{what}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class PolicyError(Exception):
    """A policy could not be loaded, merged or compiled; ``problems`` says why, each positioned."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid policy")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) or "invalid policy"
