"""Upstream adapters: one pooled httpx.AsyncClient per provider, auth from the host side only.

The caller's ``Authorization`` / ``x-api-key`` never leave the router: requests
to a provider carry only an allowlist of the caller's headers plus the
provider's own credential.

Endpoint support (anything else is answered 400 before any byte is sent):

=================  =============================================  ==========================
provider family    serves                                         Anthropic ``/v1/messages``
=================  =============================================  ==========================
openai, nvidia,    chat/completions, completions, responses,      translated to
gemini, vllm,      embeddings (what the provider itself offers)   chat/completions and back
ollama
anthropic          messages                                       native
=================  =============================================  ==========================
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Callable, Mapping

import httpcore
import httpx

from clawfleet.router.config import Provider
from clawfleet.router.netio import AsyncioBackend

# endpoint kind -> path under the provider's base_url
PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "responses": "/responses",
    "embeddings": "/embeddings",
    "messages": "/messages",
}
# The caller's headers that reach a provider, each with the only shape it may have. Header values are
# caller-controlled text that the body classifier never reads, so free-text headers (user-agent, accept,
# x-stainless-*...) are not forwarded at all, and these few are held to their documented shapes: Anthropic
# beta names end in a date (``prompt-caching-2024-07-31``), OpenAI beta flags are ``name=vN``. The router
# then classifies what is left (see RouterApp) and drops a value with findings.
_HEADER_SHAPES = {
    "anthropic-version": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "anthropic-beta": re.compile(r"[a-z][a-z0-9]{0,30}(?:-[a-z0-9]{1,30}){0,8}-\d{4}-\d{2}-\d{2}"),
    "openai-beta": re.compile(r"[a-z][a-z_]{0,31}=v\d{1,2}"),
}
_USER_AGENT = "clawfleet-router"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default client context (certifi's CAs, certificate and host name checked), made once: loading the
    CA bundle costs milliseconds per replica, and one context can serve every pool (httpcore sets its ALPN on it
    per connection: ``http/1.1`` for every pool here, all being HTTP/1.1 only)."""
    return httpx.create_ssl_context(trust_env=False)


def _pool_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (TLS checked with httpx's default context, no proxy from the environment), its
    httpcore pool on :mod:`clawfleet.router.netio`'s sockets instead of anyio's (the same pool settings)."""
    ssl_context = _ssl_context()
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    # httpx takes no network backend of its own, so the pool it made (a private attribute) is replaced by the
    # same pool on ours; checked first, so that an httpx that renames or changes it fails here, not silently
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError(
            f"httpx {httpx.__version__}: AsyncHTTPTransport._pool is not an httpcore.AsyncConnectionPool; "
            "clawfleet.router.providers._pool_transport needs updating for this httpx"
        )
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport


class RouteUnsupported(Exception):
    """The provider cannot serve this endpoint, even with translation."""


class Replica:
    """One deployment of a provider (e.g. one vLLM per GPU): its own connection pool, its outstanding
    requests, and the time until which it is out of rotation (a failure's cooldown or a failed health check)."""

    def __init__(self, provider: Provider, base_url: str, transport: httpx.AsyncBaseTransport | None) -> None:
        self.base_url = base_url
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
        # the connection pool; made here (as AsyncClient would make it) so that model requests can use it directly
        self.transport = transport or _pool_transport(limits)
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(provider.timeout, connect=provider.connect_timeout),
            limits=limits,
            transport=self.transport,
            follow_redirects=False,
            trust_env=False,  # never pick up a proxy from the environment for sensitive traffic
        )
        self._timeout = self.client.timeout.as_dict()
        self._urls: dict[str, httpx.URL] = {}
        self.outstanding = 0
        self.down_until = 0.0

    def available(self, now: float) -> bool:
        return now >= self.down_until

    def cool_down(self, now: float, seconds: float) -> None:
        if seconds > 0:
            self.down_until = max(self.down_until, now + seconds)

    def build(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Request:
        """The model request to ``path`` as the client builds it (what :meth:`send` sends, built the long way)."""
        return self.client.build_request("POST", path, content=body, headers=headers)

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST ``body`` to ``path`` on this replica; the answer's headers read, its body left to stream.

        Straight to the connection pool rather than through ``client.send``: the client's per-request layers
        (merging the base URL and default headers, its auth and redirect loops, the cookie jar, a log line) were
        about a sixth of the event loop's time for a small request under cProfile (docs/router.md, Performance),
        and none of them applies here: no auth (the credential is in ``headers``), redirects are not followed,
        the URL of a path is the same every time. Same bytes on the wire as ``build`` gives, with one difference
        on purpose: a provider's ``Set-Cookie`` is not kept and sent back with the next request, which may come
        from another sandbox (a cookie jar shared by every caller would link their requests for the provider)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.client.build_request("POST", path).url
        # "Connection: keep-alive" is the one default header of the client that ``headers`` does not set
        request = httpx.Request(
            "POST", url, content=body, headers={"Connection": "keep-alive", **headers},
            extensions={"timeout": self._timeout},
        )  # fmt: skip
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response


class Upstream:
    def __init__(self, provider: Provider, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.provider = provider
        self.replicas = [Replica(provider, url, transport) for url in provider.replicas]
        self.client = self.replicas[0].client
        self._turn = 0

    def pick(self, now: float) -> list[Replica]:
        """Replicas in rotation, least outstanding requests first (ties rotate, so idle replicas share)."""
        live = [r for r in self.replicas if r.available(now)]
        if len(live) < 2:
            return live
        self._turn += 1
        n = len(self.replicas)
        return sorted(live, key=lambda r: (r.outstanding, (self.replicas.index(r) - self._turn) % n))

    def plan(self, kind: str) -> tuple[str, bool]:
        """Return (upstream path, translate) for an endpoint kind, or raise RouteUnsupported."""
        family = self.provider.family
        if family == "anthropic":
            if kind == "messages":
                return PATHS["messages"], False
            raise RouteUnsupported(
                f"provider {self.provider.name!r} (anthropic) serves only /v1/messages; route OpenAI-API "
                "requests to an OpenAI-compatible provider"
            )
        if kind == "messages":
            return PATHS["chat"], True
        return PATHS[kind], False

    def headers(
        self, incoming: Mapping[str, str], *, translated: bool, screen: Callable[[str], bool] = lambda v: True
    ) -> dict[str, str]:
        """The upstream request's headers: the caller's allowed headers that have their shape and pass
        ``screen`` (the classifier), then the provider's own credential."""
        out = {"accept-encoding": "identity", "accept": "application/json, text/event-stream"}
        out["user-agent"] = _USER_AGENT
        for name, shape in _HEADER_SHAPES.items():
            value = incoming.get(name)
            if value is None or (translated and name.startswith("anthropic-")):
                continue
            tokens = [t.strip() for t in value.split(",")]
            kept = [t for t in tokens if shape.fullmatch(t) and screen(t)]
            if kept:
                out[name] = ",".join(kept)
        out["content-type"] = "application/json"
        key = self.provider.api_key
        if self.provider.family == "anthropic":
            out.setdefault("anthropic-version", self.provider.anthropic_version)
            if key:
                out["x-api-key"] = key
        elif key:
            out["authorization"] = f"Bearer {key}"
        return out

    def build(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Request:
        return self.client.build_request("POST", path, content=body, headers=headers)

    async def aclose(self) -> None:
        for r in self.replicas:
            await r.client.aclose()


class Upstreams:
    def __init__(self, providers: Mapping[str, Provider], transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._by_name = {name: Upstream(p, transport) for name, p in providers.items()}

    def __getitem__(self, name: str) -> Upstream:
        return self._by_name[name]

    def values(self) -> list[Upstream]:
        return list(self._by_name.values())

    async def aclose(self) -> None:
        for up in self._by_name.values():
            await up.aclose()
