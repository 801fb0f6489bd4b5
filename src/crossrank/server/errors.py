"""How the server answers an error, in one place: each kind of error's status per API shape, and its body.

The two API shapes answer errors differently: Cohere (and Jina) with ``{"message"}``, TEI with
``{"error", "error_type"}``, and some statuses differ (an invalid request is Cohere's 400 and TEI's
422; a model failing on one request is Cohere's 503 and TEI's 424). :data:`ANSWERS` holds that, one
row per :class:`ErrorKind`; route code raises :class:`ApiError` with a kind and a message and
never names a status.

Example:
    >>> ANSWERS[ErrorKind.INVALID]
    Answer(cohere=400, tei=422, error_type='Validation', cohere_prefix='invalid request: ')
    >>> error_body("cohere", ApiError(ErrorKind.INVALID, "top_n: too small"))
    {'message': 'invalid request: top_n: too small'}
    >>> error_body("tei", ApiError(ErrorKind.INVALID, "top_n: too small"))
    {'error': 'top_n: too small', 'error_type': 'Validation'}
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import JSONResponse

from crossrank.errors import CrossrankError, ScoringError
from crossrank.server.batcher import ClientGone
from crossrank.server.schemas import CohereError, TeiError

__all__ = [
    "ANSWERS",
    "AUTH_RESPONSES",
    "HEALTH_RESPONSES",
    "LIMIT_RESPONSES",
    "RERANK_RESPONSES",
    "Answer",
    "ApiError",
    "AsciiJSONResponse",
    "ErrorKind",
    "Shape",
    "error_body",
    "error_response",
    "scoring_failure",
    "shape_of",
]

logger = logging.getLogger(__name__)

#: Which API a request speaks; ``"both"`` when it is not known (the body was never read).
Shape = Literal["cohere", "tei", "both"]

TeiErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


class ErrorKind(enum.Enum):
    """What went wrong, independent of the API shape that answers it."""

    EMPTY = "empty"  #: no documents to rank
    INVALID = "invalid"  #: a request crossrank can't take (too many documents, no query tokens, too long)
    UNREADABLE = "unreadable"  #: the body doesn't match the schema (the message says "invalid request: ")
    BAD_JSON = "bad_json"  #: the body is not JSON
    UNAUTHORIZED = "unauthorized"  #: missing or wrong API key
    TOO_LARGE = "too_large"  #: the body is over the payload limit
    OVERLOADED = "overloaded"  #: too many requests in flight
    GONE = "gone"  #: dropped: the client went away, or the server is stopping
    MODEL_FAILED = "model_failed"  #: the model gave non-finite scores on this request
    BACKEND = "backend"  #: the engine failed
    UNHEALTHY = "unhealthy"  #: the scoring loop is not running


@dataclass(frozen=True)
class Answer:
    """How each API shape answers one kind of error.

    Attributes:
        cohere: Cohere's (and Jina's) status.
        tei: TEI's status; also the status when the shape is not known.
        error_type: TEI's ``error_type``.
        cohere_prefix: What Cohere's message starts with (its request errors read "invalid request: ...").
    """

    cohere: int
    tei: int
    error_type: TeiErrorType
    cohere_prefix: str = ""

    def status(self, shape: Shape) -> int:
        return self.cohere if shape == "cohere" else self.tei


#: Every kind of error and how each API shape answers it: the one table of statuses.
ANSWERS: dict[ErrorKind, Answer] = {
    ErrorKind.EMPTY: Answer(400, 400, "Empty", "invalid request: "),
    ErrorKind.INVALID: Answer(400, 422, "Validation", "invalid request: "),
    ErrorKind.UNREADABLE: Answer(400, 422, "Validation"),
    ErrorKind.BAD_JSON: Answer(400, 400, "Validation"),
    ErrorKind.UNAUTHORIZED: Answer(401, 401, "Validation"),
    ErrorKind.TOO_LARGE: Answer(413, 413, "Validation"),
    ErrorKind.OVERLOADED: Answer(429, 429, "Overloaded"),
    ErrorKind.GONE: Answer(503, 503, "Unhealthy"),
    ErrorKind.MODEL_FAILED: Answer(503, 424, "Backend"),
    ErrorKind.BACKEND: Answer(503, 503, "Backend"),
    ErrorKind.UNHEALTHY: Answer(503, 503, "Unhealthy"),
}


class ApiError(Exception):
    """An error answered in the shape of the route's API (status and body from :data:`ANSWERS`).

    Args:
        kind: What went wrong.
        message: What to tell the client (TEI's ``error``; Cohere's ``message`` after the kind's prefix).
        tei_message: A different text for TEI, where its wording differs from Cohere's.
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        tei_message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.headers = kind, message, headers
        self.tei_message = message if tei_message is None else tei_message

    @property
    def answer(self) -> Answer:
        return ANSWERS[self.kind]

    def status(self, shape: Shape) -> int:
        """The HTTP status in ``shape``.

        Example:
            >>> ApiError(ErrorKind.MODEL_FAILED, "NaN").status("tei")
            424
        """
        return self.answer.status(shape)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a text a client sent with a lone surrogate (a cut
    emoji, valid in JSON as ``"\\ud83d"``) goes back as it came, instead of failing UTF-8 encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def shape_of(path: str, body: Any = None) -> Shape:
    """Which API a request speaks, from its path and (when read) its body.

    Example:
        >>> shape_of("/v1/v2/rerank"), shape_of("/rerank", {"texts": []}), shape_of("/rerank")
        ('cohere', 'tei', 'both')
    """
    path = path.rstrip("/")
    if path.endswith("/v2/rerank"):
        return "cohere"
    if path.endswith("/rerank") and isinstance(body, dict):
        return "tei" if "texts" in body else "cohere"
    if path.endswith(("/info", "/health")):
        return "tei"
    return "both"


def error_body(shape: Shape, error: ApiError) -> dict[str, Any]:
    """The body answering ``error`` in ``shape``; an unknown shape gets one readable by either client."""
    cohere = CohereError(message=error.answer.cohere_prefix + error.message).model_dump()
    tei = TeiError(error=error.tei_message, error_type=error.answer.error_type).model_dump()
    if shape == "cohere":
        return cohere
    if shape == "tei":
        return tei
    return {**cohere, **tei}


def error_response(shape: Shape, error: ApiError) -> JSONResponse:
    """The response answering ``error`` in ``shape``: its status from :data:`ANSWERS`, its body
    from :func:`error_body`."""
    return AsciiJSONResponse(error_body(shape, error), status_code=error.status(shape), headers=error.headers)


def scoring_failure(err: BaseException) -> ApiError:
    """The answer to an exception raised while a request was queued or scored.

    Example:
        >>> failure = scoring_failure(ScoringError("NaN"))
        >>> failure.kind, failure.status("tei"), failure.status("cohere")
        (<ErrorKind.MODEL_FAILED: 'model_failed'>, 424, 503)
    """
    if isinstance(err, ClientGone):
        return ApiError(
            ErrorKind.GONE, "the request was dropped: the client went away or the server is stopping"
        )
    if isinstance(err, ScoringError):
        return ApiError(ErrorKind.MODEL_FAILED, f"the model failed on this request: {err}")
    if isinstance(err, CrossrankError):
        return ApiError(ErrorKind.BACKEND, f"the model failed: {err}")
    # an engine failure must not become a 500 (nor its details leak to the client): log it here
    logger.error("scoring failed", exc_info=err)
    return ApiError(ErrorKind.BACKEND, f"the model failed: {type(err).__name__}")


#: OpenAPI: the error answers of a route behind the API key.
AUTH_RESPONSES = {401: {"model": CohereError, "description": "Missing or wrong bearer token."}}
#: OpenAPI: the error answers of any rerank route (limits and failures).
LIMIT_RESPONSES = {
    413: {"model": CohereError, "description": "Body over the payload limit."},
    429: {"model": CohereError, "description": "Too many requests in flight; see Retry-After."},
    503: {"model": CohereError, "description": "The model failed or the server is shutting down."},
}
#: OpenAPI: the answers of ``POST /rerank`` (TEI or Cohere v1 shape).
RERANK_RESPONSES = {
    400: {
        "model": TeiError | CohereError,
        "description": "Empty input, bad JSON (Cohere: any invalid request).",
    },
    422: {"model": TeiError, "description": "TEI: invalid request."},
    424: {"model": TeiError, "description": "TEI: the model failed on this request."},
    **AUTH_RESPONSES,
    **LIMIT_RESPONSES,
}
#: OpenAPI: the answers of ``GET /health``.
HEALTH_RESPONSES = {200: {"description": "Ready (empty body)."}, 503: {"model": TeiError}}
