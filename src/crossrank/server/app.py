"""The rerank server: one FastAPI app speaking the Cohere, Jina and TEI rerank APIs over one Reranker.

Routes (each also under ``/v1``, where apps append ``/rerank`` to a base URL ending in ``/v1``):

* ``POST /v1/rerank``, ``POST /v2/rerank``: Cohere (and Jina) shape; errors ``{"message"}``.
* ``POST /rerank``: TEI shape when the body has ``texts`` (a bare sorted array; errors
  ``{"error", "error_type"}``), Cohere shape when it has ``documents``.
* ``GET /info`` (TEI's, which Dify reads), ``GET /health``, ``GET /metrics`` (Prometheus).

Every request's pairs go through the :class:`~crossrank.server.batcher.PairBatcher`, which
scores them with :meth:`crossrank.Reranker.score_batch`: there is no other scoring path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import crossrank
from crossrank.errors import CrossrankError, EmptyQueryError, ScoringError
from crossrank.reranker import Reranker
from crossrank.results import RankedDocument, Ranking, ScoringStats
from crossrank.selection import SelectOptions, select
from crossrank.server.batcher import ClientGone, PairBatcher
from crossrank.server.config import ServerConfig
from crossrank.server.schemas import (
    CohereError,
    CohereRequest,
    CohereResponse,
    RerankBody,
    TeiError,
    TeiInfo,
    TeiRank,
    TeiRequest,
)

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a text a client sent with a lone surrogate (a cut
    emoji, valid in JSON as ``"\\ud83d"``) goes back as it came, instead of failing UTF-8 encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class ApiError(Exception):
    """An error answered in the shape of the route's API: ``status``, a message and TEI's ``error_type``."""

    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers


def _shape_of(path: str, body: Any = None) -> str:
    """Which API a request speaks: "cohere", "tei", or "both" when the body wasn't read."""
    path = path.rstrip("/")
    if path.endswith("/v2/rerank"):
        return "cohere"
    if path.endswith("/rerank") and isinstance(body, dict):
        return "tei" if "texts" in body else "cohere"
    if path.endswith(("/info", "/health")):
        return "tei"
    return "both"


def _error_response(shape: str, status: int, message: str, error_type: str, headers=None) -> JSONResponse:
    if shape == "cohere":
        content: dict[str, Any] = {"message": message}
    elif shape == "tei":
        content = {"error": message, "error_type": error_type}
    else:  # shape unknown (the body was never read): readable by either kind of client
        content = {"message": message, "error": message, "error_type": error_type}
    return AsciiJSONResponse(content, status_code=status, headers=headers)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (no process-global state)."""

    def __init__(self, batcher_queue: Any) -> None:
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
        queue = Gauge("crossrank_queue_pairs", "Pairs waiting to be scored.", registry=r)
        queue.set_function(lambda: batcher_queue().queued_pairs)

    def step(self, stats: ScoringStats, seconds: float) -> None:
        self.pairs.inc(stats.pairs)
        self.tokens.inc(stats.tokens)
        self.padded.inc(stats.padded_tokens)
        self.step_pairs.observe(stats.pairs)
        self.inference_seconds.observe(seconds)
        for rows in stats.batch_rows:
            self.batch_pairs.observe(rows)


class _Limits:
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
                    raise _PayloadTooLarge
            return message

        try:
            if too_big:
                raise _PayloadTooLarge
            await self.app(scope, limited_receive, counting_send)
        except _PayloadTooLarge:
            response = _error_response(
                _shape_of(path),
                413,
                f"request body larger than the limit of {self.limit} bytes",
                "Validation",
            )
            await response(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(getattr(route, "path", "unmatched"), str(status["code"])).inc()


class _PayloadTooLarge(Exception):
    pass


# --------------------------------------------------------------------------- the app


@dataclass
class _State:
    reranker: Reranker
    config: ServerConfig
    batcher: PairBatcher
    metrics: Metrics
    in_flight: int = 0


def batching_enabled(reranker: Reranker, config: ServerConfig) -> bool:
    """Whether the server merges requests: as configured, else on for engines whose batches may mix
    requests (fp32, static int8). Dynamic int8 batches never mix them (scores would move with
    batch-mates), so merging saves nothing there, and measured, the server was no faster with the
    batcher (docs/serving.md)."""
    if config.batching is not None:
        return config.batching
    return bool(getattr(reranker.engine, "batch_invariant", True))


def create_app(reranker: Reranker, config: ServerConfig | None = None) -> FastAPI:
    """The rerank server's ASGI app over ``reranker``.

    Args:
        reranker: The model to serve (one per process; share it, it's thread-safe).
        config: Batching, limits and auth; defaults to :class:`ServerConfig` (which reads
            ``CROSSRANK_SERVER_*``).

    Example:
        >>> app = create_app(Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu"))  # doctest: +SKIP
        >>> uvicorn.run(app, port=8080)  # doctest: +SKIP
    """
    config = config or ServerConfig()
    batcher_holder: dict[str, PairBatcher] = {}
    metrics = Metrics(lambda: batcher_holder["batcher"])
    batcher = PairBatcher(
        reranker,
        max_batch_tokens=config.max_batch_tokens,
        max_wait_ms=config.max_wait_ms,
        enabled=batching_enabled(reranker, config),
        pipeline=config.pipeline,
        on_step=metrics.step,
    )
    batcher_holder["batcher"] = batcher
    state = _State(reranker, config, batcher, metrics)
    model_name = config.served_model_name or reranker.model_name

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="crossrank",
        version=crossrank.__version__,
        summary="Cross-encoder reranking over HTTP: the Cohere, Jina and TEI rerank APIs.",
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
    )
    app.state.crossrank = state
    app.add_middleware(_Limits, payload_limit=config.payload_limit, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error_response(
            getattr(request.state, "shape", _shape_of(request.url.path)),
            err.status,
            err.message,
            err.error_type,
            err.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        shape = _shape_of(request.url.path, err.body)
        if any(problem["type"] == "json_invalid" for problem in problems):
            return _error_response(shape, 400, "the request body is not valid JSON", "Validation")
        message = "; ".join(_describe(problem) for problem in problems[:5])
        status = 400 if shape == "cohere" else 422
        return _error_response(shape, status, f"invalid request: {message}", "Validation")

    auth_responses = {401: {"model": CohereError, "description": "Missing or wrong bearer token."}}
    limit_responses = {
        413: {"model": CohereError, "description": "Body over the payload limit."},
        429: {"model": CohereError, "description": "Too many requests in flight; see Retry-After."},
        503: {"model": CohereError, "description": "The model failed or the server is shutting down."},
    }

    async def check_key(request: Request) -> None:
        expected = config.api_key.get_secret_value() if config.api_key is not None else None
        if expected is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise ApiError(
                401, "missing or invalid API key: send 'Authorization: Bearer <key>'", "Validation"
            )

    async def cohere_route(request: Request, body: CohereRequest, version: str) -> JSONResponse:
        request.state.shape = "cohere"
        texts = [_document_text(document, body.rank_fields, i) for i, document in enumerate(body.documents)]
        scores, scored, used = await _rerank(
            state,
            request,
            body.query,
            texts,
            raw=body.raw_scores,
            truncate=None,
            left=False,
            max_tokens_per_doc=body.max_tokens_per_doc,
        )
        ranking = _select(reranker, body, texts, scores)
        results = [
            {
                "index": hit.index,
                "relevance_score": _shown_score(hit),
                **({"document": {"text": hit.text}} if body.return_documents else {}),
            }
            for hit in ranking
        ]
        tokens = scored.tokens
        payload = {
            "id": str(uuid.uuid4()),
            "results": results,
            "meta": {
                "api_version": {"version": version},
                "billed_units": {"search_units": 1},
                "tokens": {"input_tokens": tokens},
            },
            "model": body.model or model_name,
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
        }
        return AsciiJSONResponse(payload, headers=_timing_headers(scored, used))

    async def tei_route(request: Request, body: TeiRequest) -> JSONResponse:
        request.state.shape = "tei"
        scores, scored, used = await _rerank(
            state,
            request,
            body.query,
            body.texts,
            raw=body.raw_scores,
            truncate=body.truncate,
            left=body.truncation_direction.lower() == "left",
            max_tokens_per_doc=None,
        )
        ranking = _select(reranker, body, body.texts, scores)
        ranks = [{"index": hit.index, "score": _shown_score(hit)} for hit in ranking]
        if body.return_text:
            for rank, hit in zip(ranks, ranking, strict=True):
                rank["text"] = hit.text
        return AsciiJSONResponse(ranks, headers=_timing_headers(scored, used))

    rerank_responses = {
        200: {
            "model": list[TeiRank] | CohereResponse,
            "description": "TEI: a bare sorted array; Cohere: an object.",
        },
        400: {
            "model": TeiError | CohereError,
            "description": "Empty input, bad JSON (Cohere: any invalid request).",
        },
        422: {"model": TeiError, "description": "TEI: invalid request."},
        424: {"model": TeiError, "description": "TEI: the model failed on this request."},
        **auth_responses,
        **limit_responses,
    }
    secured = [Depends(check_key)]  # runs before the body is validated: 401 comes first

    for prefix in ("", "/v1"):  # apps append /rerank, /v2/rerank, /info to a base that may end in /v1
        visible = not prefix

        @app.post(
            f"{prefix}/rerank",
            responses=rerank_responses,
            dependencies=secured,
            tags=["rerank"],
            summary="Rerank: TEI shape with `texts`, Cohere v1 / Jina shape with `documents`",
            include_in_schema=visible,
        )
        async def rerank(request: Request, body: Annotated[RerankBody, Body()]) -> JSONResponse:
            if isinstance(body, TeiRequest):
                return await tei_route(request, body)
            return await cohere_route(request, body, "1")

        @app.post(
            f"{prefix}/v2/rerank",
            response_model=CohereResponse,
            dependencies=secured,
            tags=["rerank"],
            responses={400: {"model": CohereError}, **auth_responses, **limit_responses},
            summary="Rerank: Cohere v2 shape",
            include_in_schema=visible,
        )
        async def cohere_v2(request: Request, body: CohereRequest) -> JSONResponse:
            return await cohere_route(request, body, "2")

        @app.get(
            f"{prefix}/info",
            response_model=TeiInfo,
            responses=auth_responses,
            dependencies=secured,
            tags=["TEI"],
            include_in_schema=visible,
        )
        async def info() -> dict[str, Any]:
            return {
                "model_id": model_name,
                "model_dtype": reranker.quantize or getattr(reranker.engine, "precision", "fp32"),
                "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
                "max_concurrent_requests": config.max_concurrent_requests,
                "max_input_length": reranker.max_length,
                "max_batch_tokens": config.max_batch_tokens,
                "max_client_batch_size": config.max_client_batch_size,
                "auto_truncate": config.auto_truncate,
                "version": crossrank.__version__,
                "backend": f"crossrank {reranker.backend} on {reranker.device}",
            }

        @app.get(
            f"{prefix}/health",
            tags=["TEI"],
            include_in_schema=visible,
            response_class=Response,
            responses={200: {"description": "Ready (empty body)."}, 503: {"model": TeiError}},
        )
        async def health() -> Response:
            if not batcher.running:
                return _error_response("tei", 503, "the scoring loop is not running", "Unhealthy")
            return Response(status_code=200)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _describe(problem: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("body", "tei", "cohere"))
    return f"{where or 'body'}: {problem.get('msg', 'invalid')}"


def _document_text(document: str | dict[str, Any], rank_fields: list[str] | None, index: int) -> str:
    """The text of a Cohere document: a string, or the ``rank_fields`` (default ``text``) of an object."""
    if isinstance(document, str):
        return document
    fields = rank_fields or ["text"]
    missing = [name for name in fields if name not in document]
    if missing:
        raise ApiError(400, f"invalid request: documents[{index}] has no field {missing[0]!r}", "Validation")
    values = [document[name] for name in fields]
    if not all(isinstance(value, str) for value in values):
        raise ApiError(
            400, f"invalid request: documents[{index}] fields to rank must be strings", "Validation"
        )
    if fields == ["text"]:
        return values[0]
    return "\n".join(f"{name}: {value}" for name, value in zip(fields, values, strict=True))


def _invalid_request(shape: str, message: str) -> ApiError:
    """An invalid request: TEI answers 422 (Validation), Cohere 400."""
    return ApiError(
        422 if shape == "tei" else 400,
        message if shape == "tei" else f"invalid request: {message}",
        "Validation",
    )


async def _rerank(
    state: _State,
    request: Request,
    query: str,
    texts: list[str],
    *,
    raw: bool,
    truncate: bool | None,
    left: bool,
    max_tokens_per_doc: int | None,
) -> tuple[list[float], Any, float]:
    """Check, limit, queue and score one request; its scores in input order (sigmoid unless ``raw``)."""
    shape = request.state.shape
    config, reranker = state.config, state.reranker
    started = time.perf_counter()
    if not texts:
        message = (
            "`texts` cannot be empty"
            if shape == "tei"
            else "invalid request: list of documents must not be empty"
        )
        raise ApiError(400, message, "Empty")
    if len(texts) > config.max_client_batch_size:
        raise _invalid_request(
            shape, f"batch size {len(texts)} > maximum allowed batch size {config.max_client_batch_size}"
        )
    try:
        reranker.check_query(query)  # here, not in the batcher: a bad query must not fail a whole step
    except EmptyQueryError as err:
        raise _invalid_request(shape, str(err)) from None
    if state.in_flight >= config.max_concurrent_requests:
        raise ApiError(
            429,
            f"too many requests in flight (limit {config.max_concurrent_requests}); retry shortly",
            "Overloaded",
            headers={"Retry-After": "1"},
        )
    state.in_flight += 1
    state.metrics.in_flight.inc()
    try:
        texts = await _fit(reranker, query, texts, shape, config, truncate, left, max_tokens_per_doc)
        try:
            scored = await state.batcher.score(query, texts, is_gone=request.is_disconnected)
        except ClientGone:
            state.metrics.dropped.inc()
            raise ApiError(
                503, "the request was dropped: the client went away or the server is stopping", "Unhealthy"
            ) from None
        except ScoringError as err:
            raise ApiError(
                424 if shape == "tei" else 503, f"the model failed on this request: {err}", "Backend"
            ) from None
        except CrossrankError as err:
            raise ApiError(503, f"the model failed: {err}", "Backend") from None
        except Exception as err:  # an engine failure must not become a 500 or take the server down
            logger.exception("scoring failed")
            raise ApiError(503, f"the model failed: {type(err).__name__}", "Backend") from None
    finally:
        state.in_flight -= 1
        state.metrics.in_flight.dec()
    state.metrics.queue_seconds.observe(scored.queue_s)
    state.metrics.request_seconds.observe(time.perf_counter() - started)
    scores = scored.logits if raw else [_sigmoid(logit) for logit in scored.logits]
    return scores, scored, time.perf_counter() - started


def _select(reranker: Reranker, body: Any, texts: list[str], scores: list[float]) -> Ranking:
    """The request's ranking: its ``top_n``; its ``dedupe``, ``max_tokens``, ``fusion``, or the server's.

    Stage 1 for fusion is the order the documents came in (what a retriever sends).
    """
    config = reranker.to_config()
    given = body.model_fields_set
    options = SelectOptions(
        top_n=body.top_n,
        dedupe=body.dedupe if "dedupe" in given else config.dedupe,
        max_tokens=body.max_tokens if "max_tokens" in given else config.max_tokens,
        fusion=body.fusion if "fusion" in given else config.fusion,
        dedupe_similarity=config.dedupe_similarity,
        fusion_k=config.fusion_k,
        fusion_weight=config.fusion_weight,
    )
    return select(texts, scores, options, count_tokens=reranker.budget_tokens)


def _shown_score(hit: RankedDocument) -> float:
    """With fusion, the fused score: clients re-sort by the score they get, and the order is the fused one."""
    return hit.score if hit.fused_score is None else hit.fused_score


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


async def _fit(
    reranker: Reranker,
    query: str,
    texts: list[str],
    shape: str,
    config: ServerConfig,
    truncate: bool | None,
    left: bool,
    max_tokens_per_doc: int | None,
) -> list[str]:
    """Apply the request's truncation choices; texts the model can't take whole are cut or refused."""
    cut = config.auto_truncate if truncate is None else truncate
    windows = reranker.long_documents == "windows"
    if cut and not left and max_tokens_per_doc is None:
        return texts  # the Reranker cuts at the end itself (or scores windows)
    if windows and max_tokens_per_doc is None:
        return texts
    return await asyncio.to_thread(
        _fit_texts, reranker, query, texts, shape, cut, left, max_tokens_per_doc, windows
    )


def _fit_texts(
    reranker: Reranker,
    query: str,
    texts: list[str],
    shape: str,
    cut: bool,
    left: bool,
    max_tokens_per_doc: int | None,
    windows: bool,
) -> list[str]:
    encoder = reranker.encoder
    room = encoder.document_room(query)
    fitted = []
    for i, (text, encoding) in enumerate(zip(texts, encoder.tokenize(texts), strict=True)):
        limit = room if not windows else len(encoding)
        if max_tokens_per_doc is not None:
            limit = min(limit, max_tokens_per_doc)
        if len(encoding) <= limit:
            fitted.append(text)
            continue
        if not cut and len(encoding) > room and not windows:
            total = len(encoding) + encoder.max_length - room
            raise _invalid_request(
                shape,
                f"`inputs` must have less than {encoder.max_length} tokens. Given: {total} (texts[{i}])",
            )
        offsets = encoding.offsets
        if left:
            fitted.append(text[offsets[len(offsets) - limit][0] :])
        else:
            fitted.append(text[: offsets[limit - 1][1]])
    return fitted


def _timing_headers(scored: Any, total_s: float) -> dict[str, str]:
    """TEI's timing headers (milliseconds)."""
    return {
        "x-compute-time": f"{scored.inference_s * 1000:.0f}",
        "x-inference-time": f"{scored.inference_s * 1000:.0f}",
        "x-queue-time": f"{scored.queue_s * 1000:.0f}",
        "x-total-time": f"{total_s * 1000:.0f}",
        "x-compute-tokens": str(scored.tokens),
    }
