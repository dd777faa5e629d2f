"""The router's HTTP service (Starlette on uvicorn): classify, decide, forward, restore, log.

Order of work for a model request: read and parse the body (400 on bad JSON or
shape) -> extract the text slots -> classify -> decide the route -> block (403),
or redact the slots -> forward to the route's provider with the host-side
credential -> pass the answer through (streams chunk by chunk) while restoring
placeholders or translating Anthropic <-> OpenAI where the route needs it.
A sensitive request whose route is down gets 503; nothing is sent elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clawfleet.router import classify_pool, translate
from clawfleet.router.classifier import UNSCANNED, Classifier
from clawfleet.router.config import ConfigError, RouterConfig, load_config
from clawfleet.router.extract import ExtractError
from clawfleet.router.health import HealthChecker
from clawfleet.router.identity import HEADER_PROOF, HEADER_SANDBOX, UNKNOWN, IdentityVerifier
from clawfleet.router.limits import Limiter, Refusal
from clawfleet.router.limits_config import LimitsConfig
from clawfleet.router.logging import DecisionLog
from clawfleet.router.metrics import Metrics
from clawfleet.router.providers import RouteUnsupported, Upstream, Upstreams
from clawfleet.router.redact import Redactor
from clawfleet.router.reload import ConfigWatcher
from clawfleet.router.restore_stream import StreamRestoreTransform
from clawfleet.router.routing import Decision, Router
from clawfleet.router.scan import RequestFindings, outgoing_text, parse_body, prepare_request
from clawfleet.router.sse import SSEParser, stream_error_event
from clawfleet.router.usage import UsageMeter
from clawfleet.router.usage_store import UsageStore

ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
_PASS_HEADERS = ("retry-after", "request-id", "x-request-id", "openai-processing-ms")
_PASS_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_RETRYABLE_STATUS = frozenset({502, 503, 504})
_log = logging.getLogger("clawfleet.router")


def _error(
    kind: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    if kind == "messages":
        body: dict[str, Any] = {"type": "error", "error": {"type": code, "message": message, **(extra or {})}}
    else:
        body = {"error": {"message": message, "type": code, "code": code, "param": None, **(extra or {})}}
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _response_headers(resp: httpx.Response, decision: Decision, *, transformed: bool) -> dict[str, str]:
    out = {"x-clawfleet-route": decision.rule, "x-clawfleet-action": decision.action}
    for name, value in resp.headers.items():
        lname = name.lower()
        if lname in _PASS_HEADERS or lname.startswith(_PASS_PREFIXES):
            out[lname] = value
    if not transformed:
        ctype = resp.headers.get("content-type")
        if ctype:
            out["content-type"] = ctype
    return out


class Generation:
    """Everything built from one config; a reload builds a new one and retires the old one once the
    requests that started on it (streams included) have finished."""

    def __init__(
        self, config: RouterConfig, transport: httpx.AsyncBaseTransport | None, previous: Generation | None = None
    ) -> None:
        self.config = config
        self.router = Router(config)
        self.upstreams = Upstreams(config.providers, transport)
        self.aliases = frozenset(config.model_aliases())
        # classification runs off the event loop (large texts in worker processes), so one large request
        # cannot stall /healthz or the streams of other clients
        classifier = classify_pool.build_classifier(config.classifier, config.custom_classes)
        self.pool = classify_pool.ClassifyPool(classifier, config.classifier, config.custom_classes)
        self.budget_s = config.classifier.time_budget_ms / 1000
        ident = config.identity
        self.verifier: IdentityVerifier | None = None
        if ident is not None and ident.key is not None:
            old = previous.verifier if previous is not None else None
            same_key = (
                previous is not None
                and previous.config.identity is not None
                and previous.config.identity.key == ident.key
            )
            # the same key keeps its replay cache across a reload
            self.verifier = (
                old if same_key and old is not None else IdentityVerifier(ident.key, max_skew_s=ident.max_skew_s)
            )
        self.active = 0
        self.retired = False
        self.closed = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.upstreams.aclose()
        self.pool.close()


class RouterApp:
    """Holds the config, classifier, upstream pools, metrics and log; ``.asgi`` is the ASGI app."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self._transport = transport
        self.gen = Generation(config, transport)
        self.metrics = Metrics()
        self.log = decision_log or DecisionLog(config.decision_log)
        self._retired: list[Generation] = []
        store_path = Path(config.state_dir) / "usage.sqlite" if config.state_dir else None
        self.limiter = Limiter(config.limits or LimitsConfig(), UsageStore(store_path))
        routes = [Route(path, self._endpoint(kind), methods=["POST"]) for path, kind in ENDPOINTS.items()]
        routes += [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]
        if config.metrics_port is None:
            routes.append(Route("/metrics", self.render_metrics, methods=["GET"]))
        self.asgi = Starlette(routes=routes, lifespan=self._lifespan)
        # the metrics listener is its own app, served on its own loopback port (never the agents' port)
        self.metrics_asgi = Starlette(routes=[Route("/metrics", self.render_metrics, methods=["GET"])])

    # the current generation's parts, for callers that do not care about reloads
    @property
    def config(self) -> RouterConfig:
        return self.gen.config

    @property
    def router(self) -> Router:
        return self.gen.router

    @property
    def upstreams(self) -> Upstreams:
        return self.gen.upstreams

    @property
    def pool(self) -> classify_pool.ClassifyPool:
        return self.gen.pool

    # ------------------------------------------------------------ reload
    def reload(self, reason: str = "reload") -> bool:
        """Load the config file again; on any error keep the running config. True when a new one is live."""
        current = self.gen.config
        if not current.source or current.source.startswith("<"):
            return False
        try:
            config = load_config(current.source)
        except ConfigError as exc:
            _log.error("router: config reload failed, keeping digest %s: %s", current.digest, exc)
            self.log.write({"event": "reload", "ok": False, "digest": current.digest, "error": "config_error",
                            "message": str(exc), "trigger": reason})  # fmt: skip
            return False
        if config.digest == current.digest and reason != "sighup":
            return False  # SIGHUP rebuilds even so: it is how rotated key files (not in the digest) are re-read
        try:
            gen = Generation(config, self._transport, previous=self.gen)
        except (ImportError, ValueError) as exc:
            self.log.write({"event": "reload", "ok": False, "digest": current.digest, "error": "build_error",
                            "message": str(exc), "trigger": reason})  # fmt: skip
            return False
        needs_restart = [
            name
            for name, a, b in (
                ("listen", (current.host, current.port), (config.host, config.port)),
                (
                    "metrics_listen",
                    (current.metrics_host, current.metrics_port),
                    (config.metrics_host, config.metrics_port),
                ),
                ("state_dir", current.state_dir, config.state_dir),
                ("decision_log", current.decision_log, config.decision_log),
            )
            if a != b
        ]
        old, self.gen = self.gen, gen
        self.limiter.config = config.limits or LimitsConfig()
        old.retired = True
        self._retired.append(old)
        self._close_idle()
        record: dict[str, Any] = {"event": "reload", "ok": True, "digest": config.digest, "previous": current.digest,
                                  "trigger": reason}  # fmt: skip
        if needs_restart:
            record["needs_restart"] = needs_restart
        _log.warning("router: config %s loaded (digest %s, was %s)", config.source, config.digest, current.digest)
        self.log.write(record)
        return True

    def _close_idle(self) -> None:
        for old in [g for g in self._retired if g.active == 0]:
            self._retired.remove(old)
            try:
                asyncio.get_running_loop().create_task(old.aclose())
            except RuntimeError:  # no loop (reload called from a plain thread): close it synchronously
                asyncio.run(old.aclose())

    @property
    def classifier(self) -> Classifier:
        """The in-process classifier (small texts, header values); worker processes build their own."""
        return self.pool.classifier

    @classifier.setter
    def classifier(self, value: Classifier) -> None:
        self.pool.classifier = value

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        watcher = ConfigWatcher(self) if Path(self.config.source).is_file() else None
        if watcher is not None:
            watcher.start()
        health = HealthChecker(lambda: self.gen.upstreams)
        health.start()
        try:
            yield
        finally:
            await health.stop()
            if watcher is not None:
                await watcher.stop()
            for gen in [self.gen, *self._retired]:
                await gen.aclose()
            self.limiter.store.close()
            self.log.close()

    # ------------------------------------------------------------ small endpoints
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def render_metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def models(self, request: Request) -> Response:
        aliases = self.gen.config.model_aliases()
        if "anthropic-version" in request.headers:
            data = [
                {"type": "model", "id": a, "display_name": a, "created_at": "1970-01-01T00:00:00Z"} for a in aliases
            ]
            return JSONResponse(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": aliases[0] if aliases else None,
                    "last_id": aliases[-1] if aliases else None,
                }
            )
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": a, "object": "model", "created": 0, "owned_by": "clawfleet"} for a in aliases],
            }
        )

    # ------------------------------------------------------------ model requests
    def _endpoint(self, kind: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            gen = self.gen  # the whole request (its stream included) runs on the config it started with
            gen.active += 1
            record: dict[str, Any] = {"event": "decision", "request_id": uuid.uuid4().hex[:16], "endpoint": kind}
            record["_gen"] = gen
            try:
                return await self.handle(request, kind, gen, record)
            except Exception:  # a bug must not turn into a stack trace for the agent, nor into a forward
                _log.exception("router: unexpected error handling %s", kind)
                self.metrics.requests.labels(kind, "500").inc()
                self._release(record)
                self.log.write({"event": "decision", "endpoint": kind, "status": 500, "error": "internal_error"})
                return _error(kind, 500, "internal_error", "the router could not process this request")

        endpoint.__name__ = f"handle_{kind}"
        return endpoint

    async def _read_body(self, request: Request, limit: int) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _finish(self, record: dict[str, Any], t0: float, status: int) -> None:
        record["status"] = status
        record["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        endpoint = record.get("endpoint", "")
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint, record.get("action", "none")).observe(time.perf_counter() - t0)
        self._account(record, status)
        self._release(record)
        self.log.write(record)

    def _release(self, record: dict[str, Any]) -> None:
        replica = record.pop("_replica", None)
        if replica is not None:
            replica.outstanding -= 1
        gen = record.pop("_gen", None)
        if gen is not None:
            gen.active -= 1
            if gen.retired and gen.active == 0:
                self._close_idle()

    def _account(self, record: dict[str, Any], status: int) -> None:
        """Tokens and cost of a forwarded request, against its sandbox's and the host's limits."""
        sandbox = record.get("sandbox", UNKNOWN)
        self.metrics.sandbox_requests.labels(sandbox, str(status)).inc()
        meter: UsageMeter | None = record.pop("_meter", None)
        provider = record.get("provider")
        gen: Generation | None = record.get("_gen")
        if meter is None or provider is None or gen is None or status >= 400:
            return
        model = record.get("model", "")
        tokens_in, tokens_out = meter.tokens(record.get("bytes_in", 0))
        price = gen.config.prices.get((provider, model))
        local = gen.config.providers[provider].local
        cost = 0.0 if local or price is None else (tokens_in * price.input + tokens_out * price.output) / 1e6
        record.update(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=round(cost, 8))
        self.limiter.record(sandbox, tokens_in + tokens_out, cost)
        self.metrics.tokens.labels(sandbox, provider, model, "input").inc(tokens_in)
        self.metrics.tokens.labels(sandbox, provider, model, "output").inc(tokens_out)
        self.metrics.cost.labels(sandbox, provider, model).inc(cost)

    def _over_limit(self, kind: str, record: dict[str, Any], t0: float, refusal: Refusal) -> Response:
        record["limit"] = refusal.limit
        self.metrics.limited.labels(record.get("sandbox", UNKNOWN), refusal.limit).inc()
        code = "rate_limit_error" if kind == "messages" else "rate_limit_exceeded"
        headers = {"retry-after": str(refusal.retry_after)}
        response = _error(kind, 429, code, refusal.message(), headers, {"limit": refusal.limit})
        return self._reply(record, t0, response, "over_limit")

    def _caller(self, request: Request, gen: Generation) -> tuple[str, str]:
        """(sandbox, how it is known): verified by the gateway's proof, else ``unknown``."""
        if gen.verifier is None:
            return UNKNOWN, "off"
        headers = request.headers
        sandbox, problem = gen.verifier.verify(headers.getlist(HEADER_SANDBOX), headers.getlist(HEADER_PROOF))
        if sandbox is None:
            return UNKNOWN, problem or "missing"
        return sandbox, "verified"

    def _reply(self, record: dict[str, Any], t0: float, response: Response, error: str | None = None) -> Response:
        if error:
            record["error"] = error
        self._finish(record, t0, response.status_code)
        return response

    async def _classify(self, gen: Generation, kind: str, body: Any) -> RequestFindings | None:
        """Findings for a request, or None when classification ran out of its time budget."""
        try:
            prepared, results = await gen.pool.prepare_and_classify(prepare_request, kind, body, budget=gen.budget_s)
        except asyncio.TimeoutError:
            return None
        found: RequestFindings = prepared.assemble(results)
        return found

    async def _residual_classes(self, gen: Generation, payload: Any) -> list[str]:
        """Classes still present in an outgoing cloud body whose routes do not allow the cloud."""
        try:
            text = await gen.pool.run(outgoing_text, payload, budget=gen.budget_s)
            [findings] = await gen.pool.classify([text], budget=gen.budget_s)
        except asyncio.TimeoutError:
            return [UNSCANNED]
        classes = {f.type for f in findings}
        return sorted(c for c in classes if gen.router.rule_for(c)[1].action != "cloud")

    async def handle(self, request: Request, kind: str, gen: Generation, record: dict[str, Any]) -> Response:
        t0 = time.perf_counter()
        sandbox, how = self._caller(request, gen)
        record.update(sandbox=sandbox, identity=how)
        ident = gen.config.identity
        if ident is not None and ident.configured and ident.unknown == "refuse" and how != "verified":
            message = "requests must come through the sandbox gateway, which identifies the caller"
            return self._reply(record, t0, _error(kind, 401, "identity_required", message), "identity_required")
        refusal = self.limiter.admit(sandbox)
        if refusal is not None:
            return self._over_limit(kind, record, t0, refusal)
        raw = await self._read_body(request, gen.config.max_body_bytes)
        if raw is None:
            limit = gen.config.max_body_bytes
            return self._reply(
                record, t0, _error(kind, 413, "request_too_large", f"request body exceeds {limit} bytes"), "too_large"
            )
        record["bytes_in"] = len(raw)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # a compressed body would be read by the provider, not by the classifier: refuse it
            message = f"compressed request bodies (content-encoding: {encoding}) are not accepted; send plain JSON"
            return self._reply(record, t0, _error(kind, 400, "invalid_request_error", message), "content_encoding")
        try:
            body = parse_body(raw)
        except ExtractError as exc:
            return self._reply(record, t0, _error(kind, 400, "invalid_request_error", str(exc)), "invalid_json")
        if not isinstance(body, dict):
            message = "the request body must be a JSON object"
            return self._reply(record, t0, _error(kind, 400, "invalid_request_error", message), "invalid_shape")
        alias = body.get("model")
        stream = body.get("stream") is True
        record["stream"] = stream
        if not isinstance(alias, str) or not alias:
            return self._reply(
                record,
                t0,
                _error(kind, 400, "invalid_request_error", "'model' is required (e.g. \"default\")"),
                "no_model",
            )
        # only configured aliases are logged: the field is caller-controlled text
        record["model_alias"] = alias if alias in gen.aliases else "<unknown>"

        tc = time.perf_counter()
        try:
            found = await self._classify(gen, kind, body)
        except ExtractError as exc:
            return self._reply(record, t0, _error(kind, 400, "invalid_request_error", str(exc)), "invalid_shape")
        classify_s = time.perf_counter() - tc
        self.metrics.classify.observe(classify_s)
        record["classify_ms"] = round(classify_s * 1000, 3)
        if found is None:
            # classification ran out of time: the request is unscanned, and unscanned never goes to a cloud
            counts: dict[str, int] = {UNSCANNED: 1}
            record["error"] = "classify_timeout"
        else:
            counts = found.counts()
        decision = gen.router.decide(counts)
        if found is None and decision.action in ("cloud", "redact"):
            return self._reply(
                record,
                t0,
                _error(
                    kind,
                    503,
                    "classification_timeout",
                    "the router could not classify this request in time; it is not sent to a cloud route",
                    {"retry-after": "5"},
                ),
                "classify_timeout",
            )
        record.update(classes=list(decision.classes), entity_counts=counts, action=decision.action, route=decision.rule)
        for cls in decision.classes or ("none",):
            self.metrics.decisions.labels(cls, decision.action, decision.rule).inc()

        if decision.action == "block":
            classes = ", ".join(decision.classes) or "none"
            return self._reply(
                record,
                t0,
                _error(
                    kind,
                    403,
                    "policy_blocked",
                    f"blocked by route {decision.rule!r} (data classes: {classes})",
                    {"x-clawfleet-route": decision.rule, "x-clawfleet-action": "block"},
                ),
                "blocked",
            )

        redactor: Redactor | None = None
        if decision.action == "redact" and found is not None and found.findings:
            redactor = Redactor()
            redactor.redact(found)
            record["redacted"] = len(redactor.originals)

        chain = [decision.provider] if decision.provider else []
        if decision.may_fall_back:
            chain += list(decision.fallback)
            # providers that speak the caller's API natively first, translated ones after
            family = "anthropic" if kind == "messages" else "openai"
            chain.sort(key=lambda name: gen.upstreams[name].provider.family != family)
        if any(not gen.config.providers[p].local for p in chain):
            # out of money: 429 before anything is sent, never a cloud call past the budget
            refusal = self.limiter.check_spend(record["sandbox"])
            if refusal is not None:
                return self._over_limit(kind, record, t0, refusal)
        tried: list[str] = []
        config_errors: list[tuple[str, str]] = []
        # non-sensitive requests get retries with backoff; sensitive ones one pass over their local providers
        non_sensitive = decision.action == "cloud" and not decision.sensitive
        rounds = 1 + (gen.config.retry_attempts if non_sensitive else 0)
        for round_no in range(rounds):
            if round_no:
                await asyncio.sleep(gen.config.retry_backoff_s * 2 ** (round_no - 1))
            config_errors.clear()
            for index, pname in enumerate(chain):
                up = gen.upstreams[pname]
                try:
                    path, needs_translation = up.plan(kind)
                except RouteUnsupported as exc:
                    config_errors.append(("route_unsupported", str(exc)))
                    continue
                real_model = up.provider.models.get(alias)
                if real_model is None:
                    known = ", ".join(sorted(up.provider.models))
                    config_errors.append(
                        (
                            "model_not_found",
                            f"model {alias!r} is not an alias of route {decision.rule!r} (known: {known})",
                        )
                    )
                    continue
                try:
                    payload = (
                        translate.messages_to_chat(body, real_model)
                        if needs_translation
                        else {**body, "model": real_model}
                    )
                except (ValueError, TypeError, AttributeError):
                    message = "message content has a shape this route cannot translate"
                    return self._reply(
                        record, t0, _error(kind, 400, "invalid_request_error", message), "untranslatable"
                    )
                # the body goes out as it was classified, except where redaction or translation rewrote it:
                # then the rewritten body is classified once more, and what a cloud route may not see stops here
                if redactor is not None or (needs_translation and decision.action in ("cloud", "redact")):
                    residual = await self._residual_classes(gen, payload)
                    if residual:
                        record["residual_classes"] = residual
                        message = (
                            f"the request still holds {', '.join(residual)} data after {decision.action!r} "
                            "processing; it is not sent to a cloud route"
                        )
                        return self._reply(
                            record,
                            t0,
                            _error(kind, 403, "policy_blocked", message, {"x-clawfleet-action": "block"}),
                            "residual_sensitive",
                        )
                request_bytes = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
                headers = up.headers(
                    request.headers, translated=needs_translation, screen=lambda v: not gen.pool.classifier.classify(v)
                )
                replicas = up.pick(time.monotonic())
                for r_index, replica in enumerate(replicas):
                    more = round_no < rounds - 1 or index < len(chain) - 1 or r_index < len(replicas) - 1
                    record["overhead_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                    self.metrics.overhead.labels(kind).observe(time.perf_counter() - t0)
                    th = time.perf_counter()
                    tried.append(pname)
                    try:
                        resp = await replica.send(path, request_bytes, headers)
                    except httpx.TransportError as exc:
                        kind_err = (
                            "timeout"
                            if isinstance(exc, httpx.TimeoutException)
                            else "connect"
                            if isinstance(exc, httpx.ConnectError)
                            else "protocol"
                        )
                        self.metrics.upstream_errors.labels(pname, kind_err).inc()
                        replica.cool_down(time.monotonic(), up.provider.cooldown_s)
                        continue
                    self.metrics.upstream_latency.labels(pname).observe(time.perf_counter() - th)
                    record["upstream_ms"] = round((time.perf_counter() - th) * 1000, 3)
                    if resp.status_code >= 500:
                        self.metrics.upstream_errors.labels(pname, "status_5xx").inc()
                        if resp.status_code in _RETRYABLE_STATUS:
                            replica.cool_down(time.monotonic(), up.provider.cooldown_s)
                            if more:
                                await resp.aclose()
                                continue
                    elif resp.status_code >= 400:
                        self.metrics.upstream_errors.labels(pname, "status_4xx").inc()
                    record.update(
                        provider=pname, model=real_model, fallbacks_tried=len(tried) - 1, translated=needs_translation
                    )
                    record["_meter"] = UsageMeter()
                    replica.outstanding += 1
                    record["_replica"] = replica
                    return await self._respond(kind, resp, decision, redactor, needs_translation, alias, record, t0)
            if not tried and config_errors:
                break

        if not tried and config_errors:
            code, message = config_errors[0]
            status = 404 if code == "model_not_found" else 400
            return self._reply(record, t0, _error(kind, status, code, message), code)
        record["fallbacks_tried"] = max(0, len(tried) - 1)
        note = (
            "sensitive requests are never sent to another route"
            if decision.sensitive or decision.action == "local"
            else "no fallback provider answered"
        )
        return self._reply(
            record,
            t0,
            _error(
                kind,
                503,
                "upstream_unavailable",
                f"route {decision.rule!r} is unavailable; {note}",
                {"retry-after": "5", "x-clawfleet-route": decision.rule, "x-clawfleet-action": decision.action},
            ),
            "upstream_unavailable",
        )

    async def _respond(
        self,
        kind: str,
        resp: httpx.Response,
        decision: Decision,
        redactor: Redactor | None,
        translated: bool,
        alias: str,
        record: dict[str, Any],
        t0: float,
    ) -> Response:
        is_sse = "text/event-stream" in resp.headers.get("content-type", "")
        ok = resp.status_code < 400
        if not (is_sse and ok):
            try:
                content = await resp.aread()
            except httpx.TransportError:
                self.metrics.upstream_errors.labels(record.get("provider", ""), "reset").inc()
                message = "the upstream closed the connection before its answer was complete"
                return self._reply(record, t0, _error(kind, 502, "upstream_reset", message), "upstream_reset")
            finally:
                await resp.aclose()
            meter = record.get("_meter")
            if meter is not None:
                meter.feed_body(content)
            transformed = bool(redactor) or translated
            if transformed:
                content = self._transform_body(content, ok, redactor, translated, alias, resp.status_code)
            headers = _response_headers(resp, decision, transformed=transformed)
            media = "application/json" if transformed else None
            response = Response(content, status_code=resp.status_code, headers=headers, media_type=media)
            self._finish(record, t0, resp.status_code)
            return response

        headers = _response_headers(resp, decision, transformed=True)
        headers["cache-control"] = "no-cache"
        protocol = "messages" if translated else kind
        if not redactor and not translated:
            body_iter = self._passthrough(resp, protocol, record, t0)
        else:
            body_iter = self._transform_stream(resp, redactor, translated, alias, protocol, record, t0)
        return StreamingResponse(
            body_iter, status_code=resp.status_code, headers=headers, media_type="text/event-stream"
        )

    def _stream_broken(self, protocol: str, record: dict[str, Any]) -> bytes:
        """The event that tells the client its stream ended early, instead of a silent truncation."""
        record["error"] = "upstream_reset"
        self.metrics.upstream_errors.labels(record.get("provider", ""), "reset").inc()
        return stream_error_event(protocol, "the upstream closed the stream before it was complete")

    async def _passthrough(
        self, resp: httpx.Response, protocol: str, record: dict[str, Any], t0: float
    ) -> AsyncIterator[bytes]:
        meter: UsageMeter | None = record.get("_meter")
        try:
            async for chunk in resp.aiter_raw():
                if meter is not None:
                    meter.feed_chunk(chunk)
                yield chunk
        except httpx.TransportError:
            yield self._stream_broken(protocol, record)
        finally:
            await resp.aclose()
            self._finish(record, t0, resp.status_code)

    async def _transform_stream(
        self,
        resp: httpx.Response,
        redactor: Redactor | None,
        translated: bool,
        alias: str,
        protocol: str,
        record: dict[str, Any],
        t0: float,
    ) -> AsyncIterator[bytes]:
        parser = SSEParser()
        to_messages = translate.ChatToMessagesStream(alias) if translated else None
        restore = StreamRestoreTransform(protocol, redactor) if redactor else None

        def process(events: list[Any]) -> bytes:
            out = []
            for ev in events:
                produced = (
                    to_messages.feed(ev.data)
                    if to_messages is not None and ev.data is not None
                    else ([] if to_messages is not None else [ev])
                )
                for pev in produced:
                    for final in restore.on_event(pev) if restore is not None else [pev]:
                        out.append(final.encode())
            return b"".join(out)

        meter: UsageMeter | None = record.get("_meter")
        try:
            async for chunk in resp.aiter_raw():
                if meter is not None:
                    meter.feed_chunk(chunk)
                data = process(parser.feed(chunk))
                if data:
                    yield data
            tail = process(parser.close())
            if to_messages is not None:
                extra = to_messages.finish()
                if restore is not None:
                    extra = [e for ev in extra for e in restore.on_event(ev)]
                tail += b"".join(ev.encode() for ev in extra)
            if restore is not None and to_messages is None:
                tail += b"".join(ev.encode() for ev in restore.finish())
            if tail:
                yield tail
        except httpx.TransportError:
            yield self._stream_broken(protocol, record)
        finally:
            await resp.aclose()
            self._finish(record, t0, resp.status_code)

    @staticmethod
    def _transform_body(
        content: bytes, ok: bool, redactor: Redactor | None, translated: bool, alias: str, status: int
    ) -> bytes:
        if translated and not ok:
            return json.dumps(translate.error_to_anthropic(status, content)).encode()
        try:
            doc = json.loads(content)
        except ValueError:
            text = content.decode("utf-8", "replace")
            return (redactor.restore(text) if redactor else text).encode()
        if translated and isinstance(doc, dict):
            doc = translate.chat_to_message(doc, alias)
        if redactor:
            doc = redactor.restore_json(doc)
        return json.dumps(doc, ensure_ascii=False).encode()


def create_app(config: RouterConfig, **kwargs: Any) -> Starlette:
    return RouterApp(config, **kwargs).asgi


__all__ = ["ENDPOINTS", "RouterApp", "Upstream", "create_app"]
