"""JSON Schema (draft 2020-12) for OCSF events, built from the pinned OCSF 1.8.0 dictionary in tests/data/ocsf-1.8.0
(the schema server's class and object definitions, as upstream OpenShell vendors them for its own validation).

Stricter than upstream's check (required top-level fields only): for each class and every object it references,

- only attributes the class or object defines, and only those of the profiles the event declares in
  ``metadata.profiles`` (an attribute of an undeclared profile is refused), ``additionalProperties: false``;
- the attribute's type (integer, string, boolean, object, array for ``is_array``);
- required attributes (those of profiles the event does not declare excepted, e.g. ``cloud``, ``osint``);
- enum values, and for each enum the sibling caption (``severity_id: 3`` needs ``severity: "Medium"``; any text
  with 99, "Other");
- the class's and objects' ``at_least_one`` constraints;
- ``class_uid``/``category_uid`` of the class and ``type_uid = class_uid * 100 + activity_id`` (with its name).

Objects the pinned set does not carry (``os``, ``file``, ...) are checked as "an object" only.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent / "data" / "ocsf-1.8.0"
CLASSES = {4001: "network_activity", 4002: "http_activity", 1007: "process_activity",
           5019: "device_config_state_change"}  # fmt: skip

_SCALAR = {"integer_t": "integer", "long_t": "integer", "timestamp_t": "integer", "port_t": "integer",
           "float_t": "number", "boolean_t": "boolean"}  # fmt: skip


@functools.cache
def _load(kind: str, name: str) -> dict | None:
    path = ROOT / kind / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _allowed(attr: dict, profiles: frozenset[str]) -> bool:
    gated = attr.get("profiles") or ([attr["profile"]] if attr.get("profile") else [])
    return not gated or bool(set(gated) & profiles)


def _attr_schema(attr: dict, profiles: frozenset[str], defs: dict) -> dict:
    t = attr["type"]
    if t == "object_t":
        ref = attr.get("object_type", "object")
        if _load("objects", ref) is not None:
            _object_def(ref, profiles, defs)
            one: dict[str, Any] = {"$ref": f"#/$defs/{ref}"}
        else:
            one = {"type": "object"}
    elif t == "json_t":
        one = {}
    else:
        one = {"type": _SCALAR.get(t, "string")}
    if "enum" in attr:
        keys = [int(k) if one.get("type") == "integer" else k for k in attr["enum"]]
        one["enum"] = sorted(keys, key=str)
    return {"type": "array", "items": one} if attr.get("is_array") else one


def _sibling_rules(attrs: dict) -> list[dict]:
    """``X_id: n`` needs its sibling caption, as the schema server's validator checks."""
    rules = []
    for name, attr in attrs.items():
        sibling = attr.get("sibling")
        if not sibling or "enum" not in attr or sibling not in attrs:
            continue
        for key, entry in attr["enum"].items():
            if key == "99":
                continue  # Other: the source's own text
            value: Any = int(key) if attr["type"] in _SCALAR else key
            rules.append({"if": {"properties": {name: {"const": value}}, "required": [name]},
                          "then": {"properties": {sibling: {"const": entry["caption"]}}}})  # fmt: skip
    return rules


def _body(d: dict, profiles: frozenset[str], defs: dict) -> dict:
    attrs = {k: v for k, v in d["attributes"].items() if _allowed(v, profiles)}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {k: _attr_schema(v, profiles, defs) for k, v in attrs.items()},
        "required": sorted(k for k, v in attrs.items() if v.get("requirement") == "required"),
        "additionalProperties": False,
    }
    rules = _sibling_rules(attrs)
    least = (d.get("constraints") or {}).get("at_least_one")
    if least:
        rules.append({"anyOf": [{"required": [k]} for k in least]})
    if rules:
        schema["allOf"] = rules
    return schema


def _object_def(name: str, profiles: frozenset[str], defs: dict) -> None:
    if name in defs:
        return
    defs[name] = {}  # placeholder first: process.parent_process refers to process
    defs[name] = _body(_load("objects", name) or {}, profiles, defs)


@functools.cache
def class_schema(class_uid: int, profiles: frozenset[str]) -> dict:
    d = _load("classes", CLASSES[class_uid])
    assert d is not None and d["uid"] == class_uid
    defs: dict = {}
    schema = _body(d, profiles, defs)
    schema["properties"]["class_uid"]["const"] = class_uid
    schema["properties"]["category_uid"]["const"] = d["category_uid"]
    schema["$defs"] = defs
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    return schema


def problems(event: dict) -> list[str]:
    """What is wrong with one OCSF event (empty: it conforms to the pinned 1.8.0 schema of its class)."""
    uid = event.get("class_uid")
    if uid not in CLASSES:
        return [f"class_uid {uid!r} is not one of the pinned classes {sorted(CLASSES)}"]
    profiles = frozenset(event.get("metadata", {}).get("profiles") or ())
    validator = Draft202012Validator(class_schema(uid, profiles))
    found = [f"{'/'.join(map(str, e.absolute_path)) or '<event>'}: {e.message}" for e in validator.iter_errors(event)]
    activity = event.get("activity_id")
    if isinstance(activity, int) and event.get("type_uid") != uid * 100 + activity:
        found.append(f"type_uid {event.get('type_uid')} != class_uid * 100 + activity_id ({uid * 100 + activity})")
    unknown = profiles - set(_load("classes", CLASSES[uid])["profiles"])
    if unknown:
        found.append(f"metadata.profiles names profiles the class does not take: {sorted(unknown)}")
    return found
