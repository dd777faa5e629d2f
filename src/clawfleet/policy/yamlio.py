"""Strict YAML loading with a position for every key and value.

ruamel.yaml composes the node graph (YAML 1.2); this module builds plain Python
values from it and records, for every document path, where the key and the value
start and whether the value was an unquoted (plain) scalar. It refuses the YAML
features that make policy files mean something other than what they look like:

* duplicate keys (YAML says undefined; many loaders keep the last one silently);
* tabs in indentation;
* merge keys (``<<``), recursive aliases, custom tags, more than one document;
* unreasonably large inputs (size, nesting depth, node count, alias expansions and the nodes they expand to).

Unquoted YAML 1.1 booleans (``on``/``yes``/``no``/``off``/``y``/``n``) come back as
strings under YAML 1.2; :meth:`Document.is_yaml11_trap` lets the validator reject
them where a string is expected, because other YAML tools read them as booleans.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import PolicyError, Problem, format_path

__all__ = ["MAX_BYTES", "Document", "dump_yaml", "load_document"]

Path = tuple[str | int, ...]

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
# The nodes written in the file are bounded by its size (MAX_BYTES; ruamel has composed them all before the build
# counts any): a legitimate 10,000-rule policy has about 180,000 (issue 16). What a bomb multiplies is the nodes that
# aliases expand to, so those are capped tightly; MAX_NODES only bounds the whole build, whatever the file.
MAX_NODES = 1_000_000
MAX_EXPANDED_NODES = 100_000  # nodes built again because an alias names them (billion laughs, wide alias bombs)
MAX_ALIAS_EXPANSIONS = 100

YAML11_BOOLS = frozenset(
    [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
    ]
)
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_TAG = "tag:yaml.org,2002:"


@dataclass
class Document:
    """A parsed YAML document: plain data plus positions (1-based line, column) by path."""

    filename: str
    data: Any
    value_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    plain: set[Path] = field(default_factory=set)
    nonstr_keys: dict[Path, str] = field(default_factory=dict)
    #: YAML-level problems that still left usable data (duplicate keys, tags, merge keys): the
    #: validator reports them together with the schema problems, so one run shows everything.
    problems: list[Problem] = field(default_factory=list)

    def pos(self, path: Path) -> tuple[int | None, int | None]:
        """Where the value at ``path`` starts; falls back to the closest enclosing node."""
        p = tuple(path)
        while True:
            if p in self.value_pos:
                return self.value_pos[p]
            if not p:
                return (None, None) if not self.value_pos else (1, 1)
            p = p[:-1]

    def kpos(self, path: Path) -> tuple[int | None, int | None]:
        """Where the key naming ``path`` starts (the value position for list items)."""
        p = tuple(path)
        if p in self.key_pos:
            return self.key_pos[p]
        return self.pos(p)

    def is_plain(self, path: Path) -> bool:
        return tuple(path) in self.plain

    def is_yaml11_trap(self, path: Path, value: Any) -> bool:
        """True when ``value`` is an unquoted word that YAML 1.1 reads as a boolean or a number."""
        if not isinstance(value, str) or tuple(path) not in self.plain:
            return False
        return value in YAML11_BOOLS or bool(_SEXAGESIMAL.match(value))

    def problem(self, path: Path, message: str, *, at_key: bool = False, severity: str = "error") -> Problem:
        line, col = self.kpos(path) if at_key else self.pos(path)
        return Problem(self.filename, line, col, format_path(path), message, severity)

    @classmethod
    def from_data(cls, data: Any, filename: str = "<data>") -> Document:
        """Wrap already-parsed data (no positions): used for dicts handed over by Ansible."""
        return cls(filename=filename, data=_plainify(data))


def _plainify(value: Any) -> Any:
    """Copy mappings/sequences/str subclasses (Ansible's unsafe text, ruamel types) to plain types."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {(str(k) if isinstance(k, str) else k): _plainify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plainify(v) for v in value]
    return value


def _mark(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.nodes = 0
        self.expanded = 0  # nodes built a second (or later) time, through an alias
        self.aliases = 0
        self.seen: set[int] = set()
        self.active: set[int] = set()

    def error(self, node: Node, path: Path, message: str) -> None:
        line, col = _mark(node)
        self.problems.append(Problem(self.doc.filename, line, col, format_path(path), message))

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Abort(node, path, f"document has more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise _Abort(node, path, f"nesting deeper than {MAX_DEPTH} levels")
        nid = id(node)
        if nid in self.active:
            raise _Abort(node, path, "recursive alias: a node contains itself")
        if nid in self.seen:  # an alias, or a node inside what an alias names: built again
            self.expanded += 1
            if self.expanded > MAX_EXPANDED_NODES:
                raise _Abort(node, path, f"aliases expand to more than {MAX_EXPANDED_NODES} nodes")
            if not isinstance(node, ScalarNode):
                self.aliases += 1
                if self.aliases > MAX_ALIAS_EXPANSIONS:
                    raise _Abort(node, path, f"more than {MAX_ALIAS_EXPANSIONS} alias expansions")
        self.seen.add(nid)
        self.doc.value_pos[path] = _mark(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(nid)
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    self.error(node, path, f"YAML tag {node.tag} is not allowed")
                return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path, depth)
        finally:
            self.active.discard(nid)
        raise _Abort(node, path, "unsupported YAML node")  # pragma: no cover - composer yields only these

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        if node.tag not in (_TAG + "map", _TAG + "omap"):
            self.error(node, path, f"YAML tag {node.tag} is not allowed")
        out: dict[str, Any] = {}
        first: dict[str, tuple[int, int]] = {}
        for knode, vnode in node.value:
            if knode.tag == _TAG + "merge":
                self.error(knode, path, "YAML merge keys (<<) are not allowed in a policy: write the keys out")
                continue
            if not isinstance(knode, ScalarNode):
                self.error(knode, path, "mapping keys must be plain strings, not collections")
                continue
            key = str(knode.value)
            kpath = (*path, key)
            if key in first:
                line, _col = first[key]
                self.error(knode, kpath, f"duplicate key {key!r} (first defined on line {line})")
                continue
            first[key] = _mark(knode)
            self.doc.key_pos[kpath] = _mark(knode)
            if knode.tag not in (_TAG + "str",):
                self.doc.nonstr_keys[kpath] = str(knode.tag).replace(_TAG, "")
            elif knode.style is None and (key in YAML11_BOOLS or _SEXAGESIMAL.match(key)):
                self.doc.nonstr_keys[kpath] = "yaml11"
            out[key] = self.build(vnode, kpath, depth + 1)
        return out

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        tag = node.tag
        text: str = node.value
        if node.style is None:
            self.doc.plain.add(path)
        if tag == _TAG + "str":
            return text
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            return text.lower() == "true"
        if tag == _TAG + "int":
            if re.match(r"^[-+]?0[0-9_]+$", text):
                self.error(
                    node,
                    path,
                    f"{text!r} is ambiguous: YAML 1.1 reads a leading 0 as octal ({text} -> {_octal(text)}),"
                    " YAML 1.2 as decimal; drop the leading zero",
                )
                return int(text.replace("_", ""), 10)  # reported above; decimal keeps later checks quiet
            cleaned = text.replace("_", "")
            try:
                return int(cleaned, 0)
            except ValueError:
                try:
                    return int(cleaned, 10)
                except ValueError:
                    sign = -1 if cleaned.startswith("-") else 1
                    body = cleaned.lstrip("+-")
                    if body.startswith("0o"):
                        return sign * int(body[2:], 8)
                    self.error(node, path, f"cannot read {text!r} as an integer")
                    return text
        if tag == _TAG + "float":
            low = text.lower().replace("_", "")
            if low in (".inf", "+.inf"):
                return math.inf
            if low == "-.inf":
                return -math.inf
            if low == ".nan":
                return math.nan
            try:
                return float(low)
            except ValueError:
                self.error(node, path, f"cannot read {text!r} as a number")
                return text
        if tag == _TAG + "timestamp":
            return text
        self.error(node, path, f"YAML tag {tag} is not allowed in a policy")
        return text


def _octal(text: str) -> str:
    try:
        return str(int(text.replace("_", ""), 8))
    except ValueError:
        return "an error"


class _Abort(Exception):
    def __init__(self, node: Node, path: Path, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.path = path
        self.message = message


def _tab_problems(text: str, filename: str) -> list[Problem]:
    problems = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        indent = len(line) - len(line.lstrip(" \t"))
        if "\t" in line[:indent] and line.strip() and not line.lstrip(" \t").startswith("#"):
            col = line.index("\t") + 1
            problems.append(
                Problem(filename, lineno, col, "", "tab character in indentation: YAML indents with spaces only")
            )
    return problems


def load_document(text: str | bytes, filename: str) -> Document:
    """Parse ``text`` strictly; raise :class:`PolicyError` when it is not usable YAML at all.

    Problems that leave usable data (duplicate keys: the first is kept) are returned in
    ``Document.problems`` for :func:`~clawfleet.policy.schema.parse_document` to report.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise PolicyError([Problem(filename, 1, 1, "", f"file is larger than {MAX_BYTES} bytes")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError([Problem(filename, 1, 1, "", f"file is not valid UTF-8: {exc.reason}")]) from None
    if len(text) > MAX_BYTES:
        raise PolicyError([Problem(filename, 1, 1, "", f"file is larger than {MAX_BYTES} bytes")])
    tabs = _tab_problems(text, filename)
    if tabs:
        raise PolicyError(tabs)
    yaml = YAML(typ="rt", pure=True)
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        col = mark.column + 1 if mark is not None else 1
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise PolicyError([Problem(filename, line, col, "", f"invalid YAML: {message}")]) from None
    except YAMLError as exc:
        raise PolicyError([Problem(filename, 1, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise PolicyError([Problem(filename, 1, 1, "", "invalid YAML: nesting too deep")]) from None
    except Exception as exc:  # ruamel raises assorted errors on hostile input; never crash the caller
        raise PolicyError([Problem(filename, 1, 1, "", f"invalid YAML: {type(exc).__name__}: {exc}")]) from None
    doc = Document(filename=filename, data=None)
    if root is None:
        raise PolicyError([Problem(filename, 1, 1, "", "empty document: expected a policy mapping")])
    builder = _Builder(doc)
    try:
        doc.data = builder.build(root, (), 0)
    except _Abort as abort:
        line, col = _mark(abort.node)
        raise PolicyError([Problem(filename, line, col, format_path(abort.path), abort.message)]) from None
    except RecursionError:
        raise PolicyError([Problem(filename, 1, 1, "", "nesting too deep")]) from None
    doc.problems = builder.problems
    return doc


_YAML11_NUMBERLIKE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+|0o[0-7]+)"
    r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$"
)
_NEEDS_QUOTES = YAML11_BOOLS | {"null", "Null", "NULL", "~", ""}


def _represent_str(representer: Any, data: str) -> Any:
    style = None
    if data in _NEEDS_QUOTES or _YAML11_NUMBERLIKE.match(data) or re.match(r"^\d{4}-\d\d?-\d\d?", data):
        style = '"'
    return representer.represent_scalar(_TAG + "str", data, style=style)


def dump_yaml(data: Any, header: str | None = None) -> str:
    """Render plain data as block YAML that YAML 1.1 and 1.2 readers both read the same way."""
    import io

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep the canonical order (ruamel types it None)
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(str, _represent_str)
    buf = io.StringIO()
    if header:
        for line in header.splitlines():
            buf.write(f"# {line}\n" if line else "#\n")
    yaml.dump(data, buf)
    return buf.getvalue()
