"""One server's state, and a rerank request's way through it: checks, admission, fitting, scoring, ranking.

:class:`RerankService` knows nothing of HTTP or of the API shapes: the routes
(:mod:`crossrank.server.app`) turn a body into a query, texts and
:class:`~crossrank.rank_options.RankOptions`, and a :class:`Reranked` back into a body
(:mod:`crossrank.server.schemas`); what goes wrong is raised as an
:class:`~crossrank.server.errors.ApiError` of some kind, whose status the shape's table says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from crossrank.errors import DocumentTooLongError, InvalidArgumentError
from crossrank.rank_options import RankOptions
from crossrank.reranker import Reranker
from crossrank.results import Ranking
from crossrank.server.batcher import ClientGone, PairBatcher, Scored
from crossrank.server.config import ServerConfig
from crossrank.server.errors import ApiError, ErrorKind, scoring_failure
from crossrank.server.metrics import Metrics

__all__ = ["RerankService", "Reranked", "batching_enabled"]


def batching_enabled(reranker: Reranker, config: ServerConfig) -> bool:
    """Whether the server merges requests: as configured, else on for engines whose batches may mix
    requests (fp32, static int8). Dynamic int8 batches never mix them (scores would move with
    batch-mates), so merging saves nothing there, and measured, the server was no faster with the
    batcher (docs/serving.md).

    Example:
        >>> from crossrank.testing import FakeEngine
        >>> batching_enabled(Reranker.from_backend(FakeEngine(batch_invariant=False)), ServerConfig())
        False
    """
    if config.batching is not None:
        return config.batching
    return bool(reranker.engine.batch_invariant)


@dataclass(frozen=True)
class Reranked:
    """A request's ranking, with what it cost: the batcher's :class:`~crossrank.server.batcher.Scored`
    (tokens, queue and inference seconds) and the seconds from arrival to scores."""

    ranking: Ranking
    scored: Scored
    total_s: float


class RerankService:
    """The served reranker, its batcher and metrics, and the requests in flight.

    Args:
        reranker: The model to serve.
        config: Batching, limits, truncation default.
    """

    def __init__(self, reranker: Reranker, config: ServerConfig) -> None:
        self.reranker, self.config = reranker, config
        self.model_name = config.served_model_name or reranker.model_name
        self.metrics = Metrics()
        self.batcher = PairBatcher(
            reranker,
            max_batch_tokens=config.max_batch_tokens,
            max_wait_ms=config.max_wait_ms,
            enabled=batching_enabled(reranker, config),
            pipeline=config.pipeline,
            on_step=self.metrics.step,
        )
        self.metrics.watch_queue(self.batcher)
        #: Rerank requests admitted and not yet answered.
        self.in_flight = 0

    async def rerank(
        self,
        query: str,
        texts: list[str],
        options: RankOptions,
        *,
        truncate: bool | None = None,
        side: Literal["right", "left"] = "right",
        max_tokens_per_doc: int | None = None,
        is_gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> Reranked:
        """Check, admit, fit, queue and score one request; rank ``texts`` with ``options``.

        Args:
            query, texts: The request (texts as the client sent them; the ranking shows these).
            options: The request's ranking options (:meth:`crossrank.Reranker.rank_options`).
            truncate: Cut texts too long for the model (None: the server's ``auto_truncate``);
                False refuses them.
            side: Which end of a long text is cut off.
            max_tokens_per_doc: Cut every text to this many tokens.
            is_gone: Whether the client went away (its pairs are then dropped unscored).

        Raises:
            ApiError: Of the kind that says what went wrong.
        """
        started = time.perf_counter()
        await asyncio.to_thread(self.check, query, texts)  # tokenises the query: off the event loop
        if self.in_flight >= self.config.max_concurrent_requests:
            raise ApiError(
                ErrorKind.OVERLOADED,
                f"too many requests in flight (limit {self.config.max_concurrent_requests}); retry shortly",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            cut = self.config.auto_truncate if truncate is None else truncate
            fitted = await self.fit(query, texts, cut=cut, side=side, max_tokens_per_doc=max_tokens_per_doc)
            try:
                scored = await self.batcher.score(query, fitted, is_gone=is_gone)
            except Exception as err:
                if isinstance(err, ClientGone):
                    self.metrics.dropped.inc()
                raise scoring_failure(err) from None
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        total_s = time.perf_counter() - started
        self.metrics.queue_seconds.observe(scored.queue_s)
        self.metrics.request_seconds.observe(total_s)
        ranking = await asyncio.to_thread(self.reranker.rank_logits, texts, scored.logits, options)
        return Reranked(ranking, scored, total_s)

    def check(self, query: str, texts: list[str]) -> None:
        """Refuse what no step may see: no texts, too many, a query without tokens (here, not in
        the batcher, so a bad request can't fail its batch-mates)."""
        if not texts:
            raise ApiError(
                ErrorKind.EMPTY, "list of documents must not be empty", tei_message="`texts` cannot be empty"
            )
        limit = self.config.max_client_batch_size
        if len(texts) > limit:
            raise ApiError(ErrorKind.INVALID, f"batch size {len(texts)} > maximum allowed batch size {limit}")
        try:
            self.reranker.check_query(query)
        except InvalidArgumentError as err:
            raise ApiError(ErrorKind.INVALID, str(err)) from None

    async def fit(
        self,
        query: str,
        texts: list[str],
        *,
        cut: bool,
        side: Literal["right", "left"],
        max_tokens_per_doc: int | None,
    ) -> list[str]:
        """``texts`` fitted to the model as the request asks (:meth:`crossrank.encoding.PairEncoder.fit`).

        Left alone where the Reranker does the same itself: it cuts a long text's end, or scores
        it as windows (``long_documents="windows"``).
        """
        windows = self.reranker.long_documents == "windows"
        if max_tokens_per_doc is None and (windows or (cut and side == "right")):
            return texts
        try:
            return await asyncio.to_thread(
                self.reranker.encoder.fit,
                query,
                texts,
                max_tokens_per_doc=max_tokens_per_doc,
                side=side,
                cut=cut,
                windows=windows,
            )
        except DocumentTooLongError as err:
            message = f"`inputs` must have less than {err.max_length} tokens. Given: {err.tokens}"
            raise ApiError(ErrorKind.INVALID, f"{message} (texts[{err.index}])") from None
