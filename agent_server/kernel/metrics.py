"""Prometheus metrics of one server process, served at ``/metrics``.

Counters and histograms count what this process did since it started (requests, tool calls,
charges, webhook attempts); states that live in the database (deposits and withdrawals by
status) and the connection pool are read when the metrics are scraped. Several server
processes each serve their own figures: Prometheus scrapes each and sums them.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: a cached search answers in milliseconds, a booking with mail in a second or more.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "agent_server_http_requests",
    "HTTP requests answered, by surface, method and status code.",
    ["surface", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "agent_server_http_request_duration_seconds",
    "Time to answer an HTTP request, by surface.",
    ["surface"],
    buckets=_LATENCY_BUCKETS,
)
TOOL_CALLS = Counter(
    "agent_server_tool_calls",
    "MCP tool calls, by tool and outcome (ok, replayed from an idempotency key, or the "
    "error code).",
    ["tool", "outcome"],
)
TOOL_LATENCY = Histogram(
    "agent_server_tool_call_duration_seconds",
    "Time to answer an MCP tool call, by tool.",
    ["tool"],
    buckets=_LATENCY_BUCKETS,
)
CHARGES = Counter(
    "agent_server_charges",
    "Tool calls charged to a wallet, by currency.",
    ["currency"],
)
CHARGED_AMOUNT = Counter(
    "agent_server_charged_base_units",
    "What tool calls charged, in base units of the currency (wei, satoshi, token units).",
    ["currency"],
)
WEBHOOK_DELIVERIES = Counter(
    "agent_server_webhook_deliveries",
    "Webhook delivery attempts recorded, by result (delivered, retry, failed).",
    ["result"],
)
HEAP_FROZEN = Gauge(
    "agent_server_heap_frozen_objects",
    "Objects start-up left that the garbage collector no longer walks (kernel.heap).",
)
DEPOSITS = Gauge(
    "agent_server_deposits",
    "Deposits in the database, by currency and status.",
    ["currency", "status"],
)
WITHDRAWALS = Gauge(
    "agent_server_withdrawals",
    "Withdrawals and payouts in the database, by currency and status.",
    ["currency", "status"],
)
DB_POOL = Gauge(
    "agent_server_db_pool_connections",
    "Database connections of this process's pool: checked out, idle in the pool, size.",
    ["state"],
)

_SURFACES = ("mcp", "api", "calendar", "static", "healthz", "readyz", "metrics", ".well-known")


def surface(path: str) -> str:
    """A bounded label for a request path: its first segment when known, else the dashboard."""
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in _SURFACES else "dashboard"


class RequestMetrics:
    """Counts every HTTP request by surface, method and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            where = surface(str(scope.get("path", "")))
            method = str(scope.get("method", "GET"))
            HTTP_REQUESTS.labels(
                where, method if method in _METHODS else "OTHER", str(status)
            ).inc()
            HTTP_LATENCY.labels(where).observe(time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
