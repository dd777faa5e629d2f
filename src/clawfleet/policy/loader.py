"""Entry points that turn text, files or already-parsed data into validated policies."""

from __future__ import annotations

import os
from typing import Any

from .errors import PolicyError, Problem
from .model import Policy, Preset
from .schema import parse_document
from .yamlio import MAX_BYTES, Document, load_document

__all__ = [
    "load_any_file",
    "load_any_text",
    "load_data",
    "load_file",
    "load_file_and_stat",
    "load_preset_file",
    "load_preset_text",
    "load_text",
]


def read_file(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """(at most MAX_BYTES + 1 bytes of the file, its name); an unreadable file is a positioned PolicyError."""
    data, name, _ = _read_and_stat(path)
    return data, name


def _read_and_stat(path: str | os.PathLike[str]) -> tuple[bytes, str, os.stat_result]:
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            st = os.fstat(fh.fileno())  # before the read: a change made after it changes the file's later stats
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError([Problem(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]) from None
    return data, name, st


def load_text(text: str | bytes, filename: str = "<string>") -> Policy:
    """Load a full sandbox policy from YAML text."""
    result = parse_document(load_document(text, filename), "policy")
    assert isinstance(result, Policy)
    return result


def load_preset_text(text: str | bytes, filename: str = "<string>") -> Preset:
    """Load a NemoClaw preset (``preset:`` block plus network sections) from YAML text."""
    result = parse_document(load_document(text, filename), "preset")
    assert isinstance(result, Preset)
    return result


def load_any_text(text: str | bytes, filename: str = "<string>") -> Policy | Preset:
    """Load a policy or a preset, whichever the text is (a top-level ``preset:`` key decides)."""
    return parse_document(load_document(text, filename), "any")


def load_file(path: str | os.PathLike[str]) -> Policy:
    data, name = read_file(path)
    return load_text(data, name)


def load_file_and_stat(path: str | os.PathLike[str]) -> tuple[Policy, os.stat_result]:
    """:func:`load_file`, and the ``fstat`` of the file it read, taken before reading. One parse then serves the
    sandbox and its gateway (`clawfleet sandbox run`): a watcher that compares the file's later stats with this one
    (:class:`clawfleet.gateway.reload.PolicyHolder`) sees any change made after the stat, so the policy handed on is
    never staler than one the gateway would have read itself."""
    data, name, st = _read_and_stat(path)
    return load_text(data, name), st


def load_preset_file(path: str | os.PathLike[str]) -> Preset:
    data, name = read_file(path)
    return load_preset_text(data, name)


def load_any_file(path: str | os.PathLike[str]) -> Policy | Preset:
    data, name = read_file(path)
    return load_any_text(data, name)


def load_data(data: Any, filename: str = "<data>", kind: str = "policy") -> Policy | Preset:
    """Validate already-parsed data (e.g. a dict from an Ansible variable). Problems carry no line."""
    return parse_document(Document.from_data(data, filename), kind)
