"""JSON Schema (draft 2020-12) of the policy format, for editors: ``clawfleet policy schema > policy.schema.json``.

Kept in step with the validator in :mod:`clawfleet.policy.schema` by tests that run every upstream file through both.
"""

from __future__ import annotations

from typing import Any

from .middleware import DIRECTIONS, MAX_PATTERN_LEN, MAX_PATTERNS, MODES, REGEX
from .schema import (
    ACCESS,
    ENFORCEMENTS,
    KEY_RE,
    LANDLOCK_MODES,
    MAX_BODY_BYTES,
    MAX_MIDDLEWARES,
    MAX_PATH_LEN,
    ON_ERROR,
    PROTOCOLS,
    PROVIDER_NAME_RE,
    SIGNING_MODES,
    SIGNING_NAME_RE,
    TLS_MODES,
    USER_RE,
)

_STR = {"type": "string", "minLength": 1}
#: ``openshell/regex`` config (clawfleet.policy.middleware); the loader also compiles each expression with RE2.
_REGEX_CONFIG: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {"enum": list(MODES)},
        "direction": {"enum": list(DIRECTIONS)},
        "replacement": {"type": "string", "maxLength": 256},
        "patterns": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_PATTERNS,
            "items": {
                "oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_LEN},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["regex"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 64},
                            "regex": {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_LEN},
                        },
                    },
                ]
            },
        },
    },
}
_ABS = {"type": "string", "pattern": "^/", "maxLength": MAX_PATH_LEN}
# A request or endpoint path glob: absolute, or upstream's "**" (every path) or "**/..." (read as "/**", "/**/...").
_PATH_GLOB = {"type": "string", "pattern": "^(/|\\*\\*$|\\*\\*/)", "maxLength": MAX_PATH_LEN}
# A glob, or {any: [globs]}: query values, MCP tool names, params names.
_GLOB_MATCHER = {
    "oneOf": [
        _STR,
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["any"],
            "properties": {"any": {"type": "array", "minItems": 1, "items": _STR}},
        },
    ]
}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "method": {
            "type": "string",
            "minLength": 1,
            "description": "HTTP method or '*' (protocol mcp / json-rpc: the JSON-RPC method name)",
        },
        "path": {**_PATH_GLOB, "description": "path glob: * within a segment, ** across segments; '**': every path"},
        "query": {"type": "object", "additionalProperties": _GLOB_MATCHER},
    },
}
_GRAPHQL_OPERATION = {
    "operation_type": {"enum": ["query", "mutation", "subscription", "*"]},
    "operation_name": {**_STR, "description": "GraphQL operation name glob"},
    "fields": {"type": "array", "minItems": 1, "items": _STR, "description": "GraphQL root field globs"},
}
_SELECTOR["properties"].update(  # type: ignore[attr-defined]
    {
        "tool": {**_GLOB_MATCHER, "description": "MCP tools/call tool name glob (protocol: mcp)"},
        "params": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": _GLOB_MATCHER},
        },
        **_GRAPHQL_OPERATION,
    }
)
_BODY_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_BODY_BYTES}
_NAME_MAP_KEYS = {"pattern": KEY_RE.pattern}
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://clawfleet.dev/schemas/policy-v1.json",
    "title": "clawfleet / OpenShell sandbox policy (version 1) or NemoClaw preset",
    "type": "object",
    "oneOf": [{"$ref": "#/$defs/policy"}, {"$ref": "#/$defs/preset"}],
    "$defs": {
        "policy": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version"],
            "properties": {
                "version": {"const": 1},
                "filesystem_policy": {"$ref": "#/$defs/filesystem_policy"},
                "landlock": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"compatibility": {"enum": list(LANDLOCK_MODES)}},
                },
                "process": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "run_as_user": {"$ref": "#/$defs/identity"},
                        "run_as_group": {"$ref": "#/$defs/identity"},
                    },
                },
                "network_policies": {"$ref": "#/$defs/network_policies"},
                "network_middlewares": {"$ref": "#/$defs/network_middlewares"},
            },
        },
        "preset": {
            "type": "object",
            "additionalProperties": False,
            "required": ["preset"],
            "properties": {
                "preset": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": _STR, "description": {"type": "string"}},
                },
                "network_policies": {"$ref": "#/$defs/network_policies"},
                "network_middlewares": {"$ref": "#/$defs/network_middlewares"},
            },
        },
        "identity": {
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": USER_RE.pattern, "not": {"enum": ["root", "0"]}},
            ]
        },
        "filesystem_policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "include_workdir": {"type": "boolean"},
                "read_only": {"type": "array", "items": _ABS},
                "read_write": {"type": "array", "items": {**_ABS, "not": {"const": "/"}}},
            },
        },
        "network_policies": {
            "type": ["object", "null"],
            "propertyNames": _NAME_MAP_KEYS,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "name": _STR,
                    "endpoints": {"type": "array", "items": {"$ref": "#/$defs/endpoint"}},
                    "binaries": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["path"],
                            "properties": {"path": _ABS},
                        },
                    },
                },
            },
        },
        "endpoint": {
            "type": "object",
            "additionalProperties": False,
            "required": ["host"],
            "oneOf": [{"required": ["port"]}, {"required": ["ports"]}],
            "properties": {
                "host": {
                    **_STR,
                    "description": "exact host, or a wildcard in the first label: *.x.com, **.x.com",
                },
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "ports": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                },
                "path": _PATH_GLOB,
                "protocol": {"enum": list(PROTOCOLS)},
                "tls": {"enum": list(TLS_MODES)},
                "enforcement": {"enum": list(ENFORCEMENTS)},
                "access": {"enum": list(ACCESS)},
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["allow"],
                        "properties": {"allow": _SELECTOR},
                    },
                },
                "deny_rules": {"type": "array", "items": _SELECTOR},
                "allowed_ips": {"type": "array", "items": _STR},
                "mcp": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "max_body_bytes": _BODY_LIMIT,
                        "strict_tool_names": {"type": "boolean"},
                        "allow_all_known_mcp_methods": {"type": "boolean"},
                    },
                },
                "json_rpc": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"max_body_bytes": _BODY_LIMIT},
                },
                "graphql_max_body_bytes": _BODY_LIMIT,
                "persisted_queries": {"enum": ["deny", "allow_registered"]},
                "graphql_persisted_queries": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["operation_type"],
                        "properties": _GRAPHQL_OPERATION,
                    },
                },
                "request_body_credential_rewrite": {"type": "boolean"},
                "websocket_credential_rewrite": {"type": "boolean"},
                "allow_uninspected_credentials": {"type": "boolean"},
                "credential_signing": {"enum": list(SIGNING_MODES)},
                "signing_service": {"type": "string", "pattern": SIGNING_NAME_RE.pattern},
                "signing_region": {"type": "string", "pattern": SIGNING_NAME_RE.pattern},
                "credential_binding": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["provider"],
                    "properties": {"provider": {"type": "string", "pattern": PROVIDER_NAME_RE.pattern}},
                },
            },
        },
        "network_middlewares": {
            "type": ["object", "null"],
            "maxProperties": MAX_MIDDLEWARES,
            "propertyNames": _NAME_MAP_KEYS,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["middleware", "endpoints"],
                "properties": {
                    "name": _STR,
                    "middleware": {"enum": [REGEX]},  # the types the gateway runs; others are refused
                    "order": {"type": "integer"},
                    "config": _REGEX_CONFIG,
                    "on_error": {"enum": list(ON_ERROR)},
                    "endpoints": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["include"],
                        "properties": {
                            "include": {"type": "array", "items": _STR, "minItems": 1},
                            "exclude": {"type": "array", "items": _STR},
                        },
                    },
                },
            },
        },
    },
}
