"""The rerank server: one FastAPI app speaking the Cohere, Jina and TEI rerank APIs over one Reranker.

Routes (each also under ``/v1``, where apps append ``/rerank`` to a base URL ending in ``/v1``):

* ``POST /v1/rerank``, ``POST /v2/rerank``: Cohere (and Jina) shape; errors ``{"message"}``.
* ``POST /rerank``: TEI shape when the body has ``texts`` (a bare sorted array; errors
  ``{"error", "error_type"}``), Cohere shape when it has ``documents``.
* ``GET /info`` (TEI's, which Dify reads), ``GET /health``, ``GET /metrics`` (Prometheus).

The routes hold HTTP concerns only: a body becomes a query, texts and ranking options; the
:class:`~crossrank.server.service.RerankService` checks, fits, queues and scores them (every
request's pairs go through its :class:`~crossrank.server.batcher.PairBatcher`: there is no other
scoring path) and ranks them with :meth:`crossrank.Reranker.rank_logits`; the schema classes build
the answer (:mod:`crossrank.server.schemas`), and errors are answered from one table
(:mod:`crossrank.server.errors`).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

import crossrank
from crossrank.errors import InvalidArgumentError
from crossrank.rank_options import USE_DEFAULT, RankOptions
from crossrank.reranker import Reranker
from crossrank.server.config import ServerConfig
from crossrank.server.errors import (
    AUTH_RESPONSES,
    HEALTH_RESPONSES,
    LIMIT_RESPONSES,
    RERANK_RESPONSES,
    ApiError,
    AsciiJSONResponse,
    ErrorKind,
    error_response,
    shape_of,
)
from crossrank.server.metrics import LimitsMiddleware, PayloadTooLarge
from crossrank.server.schemas import (
    CohereError,
    CohereRequest,
    CohereResponse,
    RerankBody,
    TeiInfo,
    TeiRank,
    TeiRequest,
)
from crossrank.server.service import Reranked, RerankService, batching_enabled

__all__ = ["batching_enabled", "create_app"]

#: The options a request body may set for its ranking; those it leaves out are the Reranker's.
_BODY_RANK_OPTIONS = ("dedupe", "max_tokens", "fusion")


def create_app(reranker: Reranker, config: ServerConfig | None = None) -> FastAPI:
    """The rerank server's ASGI app over ``reranker``.

    ``app.state.crossrank`` is its :class:`~crossrank.server.service.RerankService` (the batcher,
    metrics and requests in flight).

    Args:
        reranker: The model to serve (one per process; share it, it's thread-safe).
        config: Batching, limits and auth; defaults to :class:`ServerConfig` (which reads
            ``CROSSRANK_SERVER_*``).

    Example:
        >>> app = create_app(Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu"))  # doctest: +SKIP
        >>> uvicorn.run(app, port=8080)  # doctest: +SKIP
    """
    config = config or ServerConfig()
    service = RerankService(reranker, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    app = FastAPI(
        title="crossrank",
        version=crossrank.__version__,
        summary="Cross-encoder reranking over HTTP: the Cohere, Jina and TEI rerank APIs.",
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
    )
    app.state.crossrank = service
    app.add_middleware(LimitsMiddleware, payload_limit=config.payload_limit, metrics=service.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(getattr(request.state, "shape", shape_of(request.url.path)), err)

    @app.exception_handler(HTTPException)
    async def _unread(request: Request, err: HTTPException) -> Response:
        # FastAPI turns any failure to read the body into a 400 of its own: answer it in the API's shape.
        shape = getattr(request.state, "shape", shape_of(request.url.path))
        if isinstance(err.__cause__, PayloadTooLarge):
            return error_response(shape, err.__cause__.as_error())
        if err.status_code == 400:
            return error_response(shape, ApiError(ErrorKind.BAD_JSON, "the request body could not be read"))
        return await http_exception_handler(request, err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        shape = shape_of(request.url.path, err.body)
        if any(problem["type"] == "json_invalid" for problem in problems):
            return error_response(shape, ApiError(ErrorKind.BAD_JSON, "the request body is not valid JSON"))
        message = "; ".join(_describe(problem) for problem in problems[:5])
        return error_response(shape, ApiError(ErrorKind.UNREADABLE, f"invalid request: {message}"))

    async def check_key(request: Request) -> None:
        expected = config.api_key.get_secret_value() if config.api_key is not None else None
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise ApiError(
                ErrorKind.UNAUTHORIZED, "missing or invalid API key: send 'Authorization: Bearer <key>'"
            )

    async def cohere_route(request: Request, body: CohereRequest, version: str) -> JSONResponse:
        request.state.shape = "cohere"
        texts = [_document_text(document, body.rank_fields, i) for i, document in enumerate(body.documents)]
        done = await service.rerank(
            body.query,
            texts,
            _rank_options(reranker, body),
            max_tokens_per_doc=body.max_tokens_per_doc,
            is_gone=request.is_disconnected,
        )
        answer = CohereResponse.build(
            done.ranking,
            version=version,
            model=body.model or service.model_name,
            tokens=done.scored.tokens,
            return_documents=body.return_documents,
            documents=body.documents,
        )
        return AsciiJSONResponse(answer.as_json(), headers=_timing_headers(done))

    async def tei_route(request: Request, body: TeiRequest) -> JSONResponse:
        request.state.shape = "tei"
        done = await service.rerank(
            body.query,
            body.texts,
            _rank_options(reranker, body),
            truncate=body.truncate,
            side="left" if body.truncation_direction.lower() == "left" else "right",
            is_gone=request.is_disconnected,
        )
        ranks = TeiRank.build_list(done.ranking, return_text=body.return_text)
        return AsciiJSONResponse(TeiRank.as_json(ranks), headers=_timing_headers(done))

    rerank_responses = {
        200: {
            "model": list[TeiRank] | CohereResponse,
            "description": "TEI: a bare sorted array; Cohere: an object.",
        },
        **RERANK_RESPONSES,
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
            responses={400: {"model": CohereError}, **AUTH_RESPONSES, **LIMIT_RESPONSES},
            summary="Rerank: Cohere v2 shape",
            include_in_schema=visible,
        )
        async def cohere_v2(request: Request, body: CohereRequest) -> JSONResponse:
            return await cohere_route(request, body, "2")

        @app.get(
            f"{prefix}/info",
            response_model=TeiInfo,
            responses=AUTH_RESPONSES,
            dependencies=secured,
            tags=["TEI"],
            include_in_schema=visible,
        )
        async def info() -> TeiInfo:
            return TeiInfo.build(reranker, config, service.model_name)

        @app.get(
            f"{prefix}/health",
            tags=["TEI"],
            include_in_schema=visible,
            response_class=Response,
            responses=HEALTH_RESPONSES,
        )
        async def health() -> Response:
            if not service.batcher.running:
                return error_response("tei", ApiError(ErrorKind.UNHEALTHY, "the scoring loop is not running"))
            return Response(status_code=200)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _rank_options(reranker: Reranker, body: CohereRequest | TeiRequest) -> RankOptions:
    """The request's ranking: its ``top_n`` (None: all), 0-1 scores unless ``raw_scores``, its
    ``dedupe``, ``max_tokens`` and ``fusion`` where it sets them, else the served Reranker's
    (Cohere shape) or none (TEI shape: one result per text).

    ``min_score`` is not one a request sets, and the served Reranker's is not applied: a request's
    ``raw_scores`` picks the scale, which a single threshold can't follow.
    """
    # TEI answers one result per text, so the served Reranker's dedupe, max_tokens and fusion
    # (which drop or reorder results) apply to the Cohere shape only.
    unset = USE_DEFAULT if isinstance(body, CohereRequest) else None
    given = {
        name: getattr(body, name) if name in body.model_fields_set else unset for name in _BODY_RANK_OPTIONS
    }
    try:
        return reranker.rank_options(top_n=body.top_n, normalize=not body.raw_scores, min_score=None, **given)
    except InvalidArgumentError as err:
        raise ApiError(ErrorKind.INVALID, str(err)) from None


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
        raise ApiError(ErrorKind.INVALID, f"documents[{index}] has no field {missing[0]!r}")
    values = [document[name] for name in fields]
    if not all(isinstance(value, str) for value in values):
        raise ApiError(ErrorKind.INVALID, f"documents[{index}] fields to rank must be strings")
    if fields == ["text"]:
        return values[0]
    return "\n".join(f"{name}: {value}" for name, value in zip(fields, values, strict=True))


def _timing_headers(done: Reranked) -> dict[str, str]:
    """TEI's timing headers (milliseconds)."""
    scored = done.scored
    return {
        "x-compute-time": f"{scored.inference_s * 1000:.0f}",
        "x-inference-time": f"{scored.inference_s * 1000:.0f}",
        "x-queue-time": f"{scored.queue_s * 1000:.0f}",
        "x-total-time": f"{done.total_s * 1000:.0f}",
        "x-compute-tokens": str(scored.tokens),
    }
