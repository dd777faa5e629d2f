"""Body selectors: JSON-RPC / MCP methods and tools, GraphQL operations (``protocol: json-rpc | mcp | graphql``).

The gateway buffers a request body (bounded by the endpoint's limit) and the engine judges it here. Parsing is
strict on purpose, because the origin parses the same bytes and any reading the two sides disagree on is a way
around the policy (docs/policy.md, "Body selectors"):

* the body must be UTF-8 JSON with no duplicate object keys anywhere (parsers keep the first or the last),
  no NaN/Infinity, and integers of at most 64 digits; a body that is not, is denied;
* a JSON-RPC batch (array) is judged call by call and denied if any call is; an empty batch is denied;
* MCP: ``tools/call`` must carry ``params.name`` as a string (with ``strict_tool_names``, the MCP-recommended
  pattern); messages without a ``method`` (client responses) are denied;
* GraphQL: every operation in the document is judged (not only the one ``operationName`` selects: a server
  that ignores or mis-reads it must not run an unjudged one); ``operationName`` must name an operation of the
  document, and a document with several operations needs it; root fields are the field names (an alias is
  not a field name), with fragment spreads and inline fragments at the root expanded; a hash-only persisted
  query is denied unless the endpoint registers it; POST with ``query`` also in the URL is denied (which one
  the server runs is not defined).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .globmatch import compile_glob
from .model import Endpoint, L7Rule

__all__ = [
    "KNOWN_MCP_METHODS",
    "BodyError",
    "GraphqlOperation",
    "RpcCall",
    "body_verdict",
    "describe_operation",
    "operation_matches",
    "parse_graphql_document",
    "parse_graphql_payload",
    "parse_graphql_request",
    "parse_json_strict",
    "parse_jsonrpc",
    "rule_text",
]

DEFAULT_MAX_BODY_BYTES = 65536
MCP_TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
#: Client-to-server MCP methods (2025-06 spec) enabled by ``mcp.allow_all_known_mcp_methods``.
KNOWN_MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "logging/setLevel",
        "completion/complete",
    }
)
_MAX_INT_DIGITS = 64
_MAX_GRAPHQL_DEPTH = 64


class BodyError(ValueError):
    """The body cannot be judged (not parseable, ambiguous, or refused by construction): deny."""


class RpcCall(NamedTuple):
    method: str
    tool: str | None  # tools/call params.name


class GraphqlOperation(NamedTuple):
    type: str  # query | mutation | subscription
    name: str | None
    fields: tuple[str, ...]  # root field names


# -- strict JSON -----------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BodyError(f"duplicate JSON key {k[:64]!r} (origins differ on which one counts)")
        out[k] = v
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise BodyError(f"JSON integer longer than {_MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BodyError(f"JSON number {text[:32]} is out of range (origins differ: infinity, error or bignum)")
    return value


def _constant(name: str) -> Any:
    raise BodyError(f"JSON has {name}, which is not JSON")


def parse_json_strict(body: bytes) -> Any:
    """Parse ``body`` as RFC 8259 JSON with the ambiguities origins disagree on refused (see module doc)."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise BodyError("JSON body starts with a byte order mark")
    try:
        text = body.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_int=_int, parse_float=_float, parse_constant=_constant
        )
    except BodyError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"body is not JSON: {str(exc)[:120]}") from None


# -- JSON-RPC / MCP ---------------------------------------------------------------------------------------


def parse_jsonrpc(body: bytes, *, mcp: bool, strict_tool_names: bool = True) -> list[RpcCall]:
    """The calls in a JSON-RPC 2.0 request or batch; :class:`BodyError` for anything else."""
    doc = parse_json_strict(body)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BodyError("empty JSON-RPC batch")
    calls = []
    for i, msg in enumerate(items):
        where = f"batch element {i}" if isinstance(doc, list) else "message"
        if not isinstance(msg, dict):
            raise BodyError(f"JSON-RPC {where} is not an object")
        if msg.get("jsonrpc") != "2.0":
            raise BodyError(f'JSON-RPC {where} lacks jsonrpc: "2.0"')
        method = msg.get("method")
        if not isinstance(method, str):
            raise BodyError(f"JSON-RPC {where} has no string 'method' (responses and malformed calls are denied)")
        msg_id = msg.get("id")
        if isinstance(msg_id, bool) or not (msg_id is None or isinstance(msg_id, (str, int))):
            raise BodyError(f"JSON-RPC {where} has an invalid id")
        params = msg.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            raise BodyError(f"JSON-RPC {where} params must be an object or an array")
        tool = None
        if mcp and method == "tools/call":
            if not isinstance(params, dict) or not isinstance(params.get("name"), str):
                raise BodyError(f"MCP tools/call ({where}) without a string params.name")
            tool = params["name"]
            if strict_tool_names and MCP_TOOL_NAME_RE.fullmatch(tool) is None:
                raise BodyError(
                    f"MCP tool name {tool[:64]!r} is outside ^[A-Za-z0-9_.-]{{1,128}}$ (mcp.strict_tool_names)"
                )
        calls.append(RpcCall(method, tool))
    return calls


# -- GraphQL ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
  | (?P<string>"(?:\\.|[^"\\\n\r])*")
  | (?P<spread>\.\.\.)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?[0-9][0-9.eE+-]*)
  | (?P<punct>[!$&()\:=@\[\]{}|])
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BodyError(f"GraphQL syntax error at character {pos}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


class _GraphqlParser:
    """Just enough of the GraphQL grammar to find each operation's type, name and root selections."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            want = value or kind or "a token"
            raise BodyError(f"GraphQL syntax error: expected {want}, got {tok[1] if tok else 'end of document'!r}")
        self.i += 1
        return tok

    def skip_balanced(self, open_: str, close: str) -> None:
        self.take(open_)
        depth = 1
        while depth:
            tok = self.take()
            if tok[0] == "punct" and tok[1] == open_:
                depth += 1
            elif tok[0] == "punct" and tok[1] == close:
                depth -= 1

    def directives(self) -> None:
        while self.peek() == ("punct", "@"):
            self.take("@")
            self.take(kind="name")
            if self.peek() == ("punct", "("):
                self.skip_balanced("(", ")")

    def selection_set(self, depth: int = 0) -> list[tuple[str, Any]]:
        """Root-level items: ("field", name) | ("spread", fragment) | ("inline", [items])."""
        if depth > _MAX_GRAPHQL_DEPTH:
            raise BodyError("GraphQL selection nesting too deep")
        self.take("{")
        items: list[tuple[str, Any]] = []
        while self.peek() != ("punct", "}"):
            tok = self.peek()
            if tok is None:
                raise BodyError("GraphQL syntax error: unterminated selection set")
            if tok[0] == "spread":
                self.take()
                nxt = self.peek()
                if nxt is not None and nxt[0] == "name" and nxt[1] != "on":
                    items.append(("spread", self.take()[1]))
                    self.directives()
                    continue
                if nxt == ("name", "on"):
                    self.take()
                    self.take(kind="name")
                self.directives()
                items.append(("inline", self.selection_set(depth + 1)))
                continue
            name = self.take(kind="name")[1]
            if self.peek() == ("punct", ":"):  # alias: the field is what follows
                self.take(":")
                name = self.take(kind="name")[1]
            if self.peek() == ("punct", "("):
                self.skip_balanced("(", ")")
            self.directives()
            if self.peek() == ("punct", "{"):
                self.skip_balanced("{", "}")  # nested selections are not root fields
            items.append(("field", name))
        self.take("}")
        return items

    def document(self) -> tuple[list[tuple[str, str | None, list[tuple[str, Any]]]], dict[str, list[Any]]]:
        ops: list[tuple[str, str | None, list[tuple[str, Any]]]] = []
        frags: dict[str, list[Any]] = {}
        if self.peek() is None:
            raise BodyError("GraphQL document is empty")
        while self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            if tok == ("punct", "{"):
                ops.append(("query", None, self.selection_set()))
            elif tok[0] == "name" and tok[1] in ("query", "mutation", "subscription"):
                self.take()
                name = None
                nxt = self.peek()
                if nxt is not None and nxt[0] == "name":
                    name = self.take()[1]
                if self.peek() == ("punct", "("):
                    self.skip_balanced("(", ")")
                self.directives()
                ops.append((tok[1], name, self.selection_set()))
            elif tok == ("name", "fragment"):
                self.take()
                fname = self.take(kind="name")[1]
                self.take("on")
                self.take(kind="name")
                self.directives()
                if fname in frags:
                    raise BodyError(f"GraphQL fragment {fname!r} defined twice")
                frags[fname] = self.selection_set()
            else:
                # type system definitions/extensions are not executable: servers reject them, so do we
                raise BodyError(f"GraphQL document has a non-executable definition at {tok[1]!r}")
        return ops, frags


def _root_fields(
    items: list[tuple[str, Any]],
    frags: Mapping[str, list[Any]],
    seen: tuple[str, ...] = (),
    memo: dict[str, list[str]] | None = None,
) -> list[str]:
    """Root field names, fragments expanded; each fragment once (``memo``), so ``F1 {...F2 ...F2}`` chains stay
    linear instead of doubling per level."""
    memo = {} if memo is None else memo
    out: list[str] = []
    for kind, val in items:
        if kind == "field":
            out.append(val)
        elif kind == "inline":
            out.extend(_root_fields(val, frags, seen, memo))
        elif val in memo:
            out.extend(memo[val])
        else:
            if val in seen:
                raise BodyError(f"GraphQL fragment cycle through {val!r}")
            if val not in frags:
                raise BodyError(f"GraphQL fragment {val!r} is not defined")
            if len(seen) >= _MAX_GRAPHQL_DEPTH:
                raise BodyError("GraphQL fragments nested too deep")
            memo[val] = list(dict.fromkeys(_root_fields(frags[val], frags, (*seen, val), memo)))
            out.extend(memo[val])
    return out


def parse_graphql_document(text: str, operation_name: str | None = None) -> list[GraphqlOperation]:
    """Every operation of an executable document; ``operation_name`` must name one when given or needed."""
    ops, frags = _GraphqlParser(text).document()
    if not ops:
        raise BodyError("GraphQL document has no operation")
    names = [n for _t, n, _s in ops]
    if len(ops) > 1 and (None in names or len(set(names)) != len(names)):
        raise BodyError("GraphQL document with several operations needs each one named, once")
    if operation_name is not None and operation_name not in names:
        raise BodyError(f"operationName {operation_name[:64]!r} names no operation of the document")
    if operation_name is None and len(ops) > 1:
        raise BodyError("GraphQL document has several operations and no operationName")
    return [GraphqlOperation(t, n, tuple(dict.fromkeys(_root_fields(s, frags)))) for t, n, s in ops]


def _persisted(req: Mapping[str, Any], registered: Mapping[str, L7Rule] | None) -> list[GraphqlOperation]:
    ext = req.get("extensions")
    key = None
    if isinstance(ext, dict) and isinstance(ext.get("persistedQuery"), dict):
        key = ext["persistedQuery"].get("sha256Hash")
    for alt in ("documentId", "id", "queryId"):
        if key is None and isinstance(req.get(alt), str):
            key = req[alt]
    if not isinstance(key, str):
        raise BodyError("GraphQL request has no query (and no persisted query id)")
    if registered is None:
        raise BodyError("hash-only persisted query: the endpoint does not allow registered persisted queries")
    op = registered.get(key)
    if op is None:
        raise BodyError(f"persisted query {key[:80]!r} is not registered on the endpoint")
    return [GraphqlOperation(op.operation_type or "query", op.operation_name, op.fields)]


def _graphql_one(req: Any, registered: Mapping[str, L7Rule] | None) -> list[GraphqlOperation]:
    if not isinstance(req, dict):
        raise BodyError("GraphQL request is not a JSON object")
    for key in req:
        if key not in ("query", "operationName", "variables", "extensions", "documentId", "id", "queryId"):
            raise BodyError(f"GraphQL request has an unknown member {key[:40]!r}")
    name = req.get("operationName")
    if name is not None and not isinstance(name, str):
        raise BodyError("GraphQL operationName is not a string")
    query = req.get("query")
    if query is None:
        return _persisted(req, registered)
    if not isinstance(query, str):
        raise BodyError("GraphQL query is not a string")
    return parse_graphql_document(query, name)


def parse_graphql_request(
    method: str,
    query: Mapping[str, Sequence[str]],
    body: bytes,
    content_type: str | None,
    registered: Mapping[str, L7Rule] | None = None,
) -> list[GraphqlOperation]:
    """The operations one GraphQL-over-HTTP request asks for (GET parameters or a POST body)."""
    gql_params = [k for k in ("query", "operationName", "variables", "extensions", "documentId") if k in query]
    if method in ("GET", "HEAD"):
        if body:
            raise BodyError("GraphQL GET with a body")
        req: dict[str, Any] = {}
        for k in gql_params:
            values = query[k]
            if len(values) != 1:
                raise BodyError(f"GraphQL parameter {k!r} given {len(values)} times")
            req[k] = values[0]
        for k in ("variables", "extensions"):
            if k in req:
                req[k] = parse_json_strict(req[k].encode())
        return _graphql_one(req, registered)
    if method != "POST":
        raise BodyError(f"GraphQL over HTTP is GET or POST, not {method}")
    if gql_params:
        raise BodyError("GraphQL POST with GraphQL parameters in the URL too (which one runs is not defined)")
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype == "application/graphql":
        try:
            return parse_graphql_document(body.decode("utf-8", "strict"))
        except UnicodeDecodeError:
            raise BodyError("body is not valid UTF-8") from None
    if ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise BodyError(f"GraphQL POST with content-type {ctype!r} (application/json or application/graphql)")
    doc = parse_json_strict(body)
    if isinstance(doc, list):
        if not doc:
            raise BodyError("empty GraphQL batch")
        return [op for item in doc for op in _graphql_one(item, registered)]
    return _graphql_one(doc, registered)


# -- verdicts --------------------------------------------------------------------------------------------


_glob = compile_glob


def _any(globs: Sequence[str], text: str | None) -> bool:
    return text is not None and any(_glob(g).match(text) for g in globs)


def _rpc_rule_matches(rule: L7Rule, call: RpcCall, endpoint: Endpoint) -> bool:
    if rule.method is not None and rule.method != "*":
        if endpoint.protocol == "json-rpc":
            if rule.method != call.method:
                return False
        elif not _glob(rule.method).match(call.method):
            return False
    elif endpoint.protocol == "mcp" and rule.method is None:
        # no method: the endpoint's method profile (allow_all_known_mcp_methods)
        if rule.tool:
            if call.method != "tools/call":
                return False
        elif call.method not in KNOWN_MCP_METHODS:
            return False
    if rule.tool:
        return call.method == "tools/call" and _any(rule.tool, call.tool)
    return True


def _rule_text(rule: L7Rule) -> str:
    """A body rule as the file wrote it (``L7Rule.describe`` reads a bare method as an HTTP rule)."""
    if rule.operation_type or rule.operation_name or rule.fields:
        return rule.describe()
    text = rule.method or "(method profile)"
    return f"{text} tool={'|'.join(rule.tool)}" if rule.tool else text


def _describe_call(call: RpcCall) -> str:
    return f"{call.method} {call.tool}" if call.tool is not None else call.method


def _op_matches(rule: L7Rule, op: GraphqlOperation, *, deny: bool) -> bool:
    if rule.operation_type not in (None, "*") and rule.operation_type != op.type:
        return False
    if rule.operation_name is not None and not _any((rule.operation_name,), op.name):
        return False
    if rule.fields:
        hits = [_any(rule.fields, f) for f in op.fields]
        return any(hits) if deny else bool(hits) and all(hits)
    return True


def _describe_op(op: GraphqlOperation) -> str:
    return f"{op.type} {op.name or '(anonymous)'} {{{', '.join(op.fields)}}}"


# the same parsing and matching for GraphQL-over-WebSocket messages (.ws_messages)
parse_graphql_payload = _graphql_one
operation_matches = _op_matches
describe_operation = _describe_op
rule_text = _rule_text


def body_verdict(
    endpoint: Endpoint,
    method: str,
    query: Mapping[str, Sequence[str]],
    body: bytes | None,
    content_type: str | None,
) -> tuple[str, L7Rule | None, str]:
    """``("allow"|"denyrule"|"nomatch", rule, detail)`` for one request on a body-inspecting endpoint."""
    limit = endpoint.max_body_bytes or DEFAULT_MAX_BODY_BYTES
    where = endpoint.describe()
    if body is None:
        return "nomatch", None, f"the request body was not inspected on {where} (protocol {endpoint.protocol})"
    if len(body) > limit:
        return "nomatch", None, f"request body over the endpoint's {limit}-byte inspection limit on {where}"
    items: list[Any]
    match: Callable[[L7Rule, Any, bool], bool]
    try:
        if endpoint.protocol == "graphql":
            registered = (dict(endpoint.graphql_persisted_queries)
                          if endpoint.persisted_queries == "allow_registered" else None)  # fmt: skip
            items = parse_graphql_request(method, query, body, content_type, registered)
            describe: Callable[[Any], str] = _describe_op

            def match(rule: L7Rule, op: Any, deny: bool) -> bool:
                return _op_matches(rule, op, deny=deny)
        else:
            if method != "POST":
                raise BodyError(f"{endpoint.protocol} over HTTP is POST, not {method}")
            strict = endpoint.mcp_strict_tool_names is not False
            items = parse_jsonrpc(body, mcp=endpoint.protocol == "mcp", strict_tool_names=strict)
            describe = _describe_call

            def match(rule: L7Rule, call: Any, deny: bool) -> bool:
                return _rpc_rule_matches(rule, call, endpoint)
    except BodyError as exc:
        return "nomatch", None, f"unparseable {endpoint.protocol} request on {where} (denied by default): {exc}"
    for item in items:
        for rule in endpoint.deny_rules:
            if match(rule, item, True):
                return "denyrule", rule, f"deny rule {_rule_text(rule)} matches {describe(item)}"
    rules = endpoint.allow_rules  # rules, or what a graphql endpoint's access preset stands for
    if not rules:
        if endpoint.protocol == "mcp" and not endpoint.mcp_allow_all_known_methods:
            return "nomatch", None, f"MCP endpoint {where} has no method rules (mcp.allow_all_known_mcp_methods)"
        if endpoint.protocol == "mcp":
            for call in items:
                if getattr(call, "method", None) not in KNOWN_MCP_METHODS:
                    return "nomatch", None, f"{getattr(call, 'method', '?')} is not a known MCP method on {where}"
        return "allow", None, f"{len(items)} {endpoint.protocol} message(s) allowed on {where} (no allow rules)"
    first: L7Rule | None = None
    for item in items:
        hit = next((r for r in rules if match(r, item, False)), None)
        if hit is None:
            by = f" (access: {endpoint.access})" if endpoint.access is not None and not endpoint.rules else ""
            return "nomatch", None, f"no rule on {where}{by} allows {describe(item)}"
        first = first or hit
    detail = ", ".join(describe(i) for i in items[:4]) + (", ..." if len(items) > 4 else "")
    how = f"rule {_rule_text(first) if first else ''}"
    if endpoint.access is not None and endpoint.protocol == "graphql":
        how = f"access: {endpoint.access} ({how})"
    return "allow", first, f"{detail} allowed by {how}"
