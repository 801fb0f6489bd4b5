"""The server's Prometheus metrics, and the ASGI middleware that counts requests and limits bodies."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank.results import ScoringStats
from crossrank.server.errors import ApiError, ErrorKind, error_response, shape_of

__all__ = ["LimitsMiddleware", "Metrics"]


class _Queue(Protocol):
    @property
    def queued_pairs(self) -> int: ...


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (no process-global state).

    ``crossrank_queue_pairs`` reads the queue given to :meth:`watch_queue` (0 until then).

    Example:
        >>> metrics = Metrics()
        >>> metrics.step(ScoringStats(pairs=3, tokens=40, padded_tokens=48, batch_rows=[3]), 0.01)
        >>> metrics.registry.get_sample_value("crossrank_pairs_scored_total")
        3.0
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crossrank_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.pairs = Counter(
            "crossrank_pairs_scored", "(query, document) pairs scored, windows included.", registry=r
        )
        self.tokens = Counter("crossrank_tokens_scored", "Real tokens of the pairs scored.", registry=r)
        self.padded = Counter(
            "crossrank_padded_tokens_scored", "Tokens processed, padding included.", registry=r
        )
        self.dropped = Counter(
            "crossrank_requests_dropped", "Requests whose client went away before scoring.", registry=r
        )
        self.batch_pairs = Histogram(
            "crossrank_batch_pairs",
            "Pairs per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.step_pairs = Histogram(
            "crossrank_step_pairs",
            "Pairs per scoring step (one score_batch call).",
            buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.queue_seconds = Histogram(
            "crossrank_queue_seconds", "Time a request waited before scoring.", registry=r
        )
        self.inference_seconds = Histogram(
            "crossrank_inference_seconds", "Time a scoring step took.", registry=r
        )
        self.request_seconds = Histogram(
            "crossrank_request_seconds", "Time to answer a rerank request.", registry=r
        )
        self.in_flight = Gauge("crossrank_requests_in_flight", "Rerank requests being handled.", registry=r)
        self.queue_pairs = Gauge("crossrank_queue_pairs", "Pairs waiting to be scored.", registry=r)

    def watch_queue(self, queue: _Queue) -> None:
        """Report ``queue.queued_pairs`` (a :class:`~crossrank.server.batcher.PairBatcher`) when scraped."""
        self.queue_pairs.set_function(lambda: queue.queued_pairs)

    def step(self, stats: ScoringStats, seconds: float) -> None:
        """Count one scoring step (the batcher's ``on_step``)."""
        self.pairs.inc(stats.pairs)
        self.tokens.inc(stats.tokens)
        self.padded.inc(stats.padded_tokens)
        self.step_pairs.observe(stats.pairs)
        self.inference_seconds.observe(seconds)
        for rows in stats.batch_rows:
            self.batch_pairs.observe(rows)


class PayloadTooLarge(Exception):
    """A body over the payload limit, found while it was being read (it had no Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than the limit of {limit} bytes")

    def as_error(self) -> ApiError:
        return ApiError(ErrorKind.TOO_LARGE, str(self))


class LimitsMiddleware:
    """Pure ASGI middleware: body size (413) before anything reads the body, and request counting."""

    def __init__(self, app: ASGIApp, *, payload_limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, payload_limit, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        path = scope["path"]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(self.limit)
            return message

        try:
            if too_big:
                raise PayloadTooLarge(self.limit)
            await self.app(scope, limited_receive, counting_send)
        except PayloadTooLarge as err:  # the app answers it where FastAPI caught it reading the body
            await error_response(shape_of(path), err.as_error())(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(getattr(route, "path", "unmatched"), str(status["code"])).inc()
