"""Prometheus metrics of the router, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_CLASSIFY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "clawfleet_router_requests",
            "Requests handled, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        self.decisions = Counter(
            "clawfleet_router_decisions",
            "Routing decisions, one per data class found (class 'none' for requests without findings)",
            ["data_class", "action", "route"],
            registry=r,
        )
        self.latency = Histogram(
            "clawfleet_router_request_duration_seconds",
            "Time from request received to last byte sent, by endpoint and action",
            ["endpoint", "action"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "clawfleet_router_overhead_seconds",
            "Time the router spends before forwarding (parse, classify, route, redact)",
            ["endpoint"],
            buckets=_CLASSIFY_BUCKETS,
            registry=r,
        )
        self.classify = Histogram(
            "clawfleet_router_classify_duration_seconds",
            "Classifier time per request",
            buckets=_CLASSIFY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "clawfleet_router_upstream_headers_seconds",
            "Time to upstream response headers, by provider",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "clawfleet_router_upstream_errors",
            "Upstream failures by provider and kind (connect, timeout, protocol, status_5xx, status_4xx)",
            ["provider", "kind"],
            registry=r,
        )

        self.sandbox_requests = Counter(
            "clawfleet_router_sandbox_requests",
            "Requests by calling sandbox (as the gateway vouched for it; 'unknown' otherwise) and HTTP status",
            ["sandbox", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "clawfleet_router_tokens",
            "Tokens by sandbox, provider, model and direction (input/output; estimated when no usage is sent)",
            ["sandbox", "provider", "model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "clawfleet_router_cost_usd",
            "Spending in USD from the price table, by sandbox, provider and model (local models cost 0)",
            ["sandbox", "provider", "model"],
            registry=r,
        )
        self.limited = Counter(
            "clawfleet_router_limited",
            "Requests refused with 429, by sandbox and the limit they hit",
            ["sandbox", "limit"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
