"""Loads the evaluation set: the generated JSONL plus the hand-written hard cases."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_MARK = re.compile(r"\[\[([a-z_0-9]+)\|(.+?)\]\]", re.S)


def parse_marked(line: str) -> dict[str, Any]:
    text, ents, pos = [], [], 0
    out_len = 0
    for m in _MARK.finditer(line):
        chunk = line[pos : m.start()]
        text.append(chunk)
        out_len += len(chunk)
        value = m.group(2)
        ents.append({"type": m.group(1), "start": out_len, "end": out_len + len(value)})
        text.append(value)
        out_len += len(value)
        pos = m.end()
    text.append(line[pos:])
    return {"text": "".join(text), "entities": ents, "classes": sorted({e["type"] for e in ents})}


def load_marked(name: str) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate((HERE / name).read_text(encoding="utf-8").splitlines()):
        if not line.strip() or line.startswith("#"):
            continue
        row = parse_marked(line.replace("\\n", "\n"))
        row.update(id=f"{name.split('_')[0]}-{i:03d}", kind=name.split("_")[0])
        rows.append(row)
    return rows


def load() -> list[dict[str, Any]]:
    """The development set: generated examples plus hand-written hard cases."""
    rows = [json.loads(line) for line in (HERE / "eval_set.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return rows + load_marked("hard_cases.txt")


def load_holdout() -> list[dict[str, Any]]:
    """Hand-written cases the classifier was not tuned on."""
    return load_marked("holdout_cases.txt")


def load_fn_dev() -> list[dict[str, Any]]:
    """Development set for the false-negative kinds of issue 19 (other languages, separators, vendor keys, ...)."""
    return load_marked("fn_dev_cases.txt")


def load_fn_holdout() -> list[dict[str, Any]]:
    """Held-out cases for the same kinds, written with the development set and not used to tune."""
    return load_marked("fnholdout_cases.txt")


def load_recall_holdout() -> list[dict[str, Any]]:
    """Held-out cases for the issue 18 kinds (credential pairs, non-English street types, other card issuers),
    written after the detectors changed and not used to tune them."""
    return load_marked("recall_holdout_cases.txt")
