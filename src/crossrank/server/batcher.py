"""Pair-level dynamic batching: concurrent requests' pairs share forward passes.

Every request waits in one FIFO queue. A single consumer takes pairs from the front (whole
documents, a request's documents possibly over several steps) until the step's token budget is
spent, waiting at most ``max_wait_ms`` for more when the queue is short of a full step, and scores
them with one :meth:`crossrank.Reranker.score_batch` call in a worker thread, so the event loop
keeps accepting requests (and building the next step) while the model runs. The seam guarantees a
document's score doesn't depend on its batch-mates beyond float rounding (and not at all on
engines such as int8 that would: they never mix requests in one forward pass).

A request whose client went away is dropped when it reaches the front, before any of its pairs
are scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from crossrank.errors import ScoringError
from crossrank.reranker import Reranker
from crossrank.results import ScoringStats

__all__ = ["ClientGone", "PairBatcher", "Scored"]

logger = logging.getLogger(__name__)


class ClientGone(Exception):
    """The request's client disconnected before its pairs were scored; they were dropped."""


@dataclass
class Scored:
    """The raw logits of one request, in document order, with what they cost."""

    logits: list[float]
    queue_s: float
    inference_s: float
    tokens: int


@dataclass
class _Job:
    query: str
    texts: list[str]
    estimates: list[int]
    future: asyncio.Future[Scored]
    is_gone: Callable[[], Awaitable[bool]] | None
    enqueued: float = field(default_factory=time.perf_counter)
    taken: int = 0  # documents handed to a step so far (steps take them in order)
    scored: int = 0  # documents whose scores are back
    logits: list[float] = field(default_factory=list)
    started: float | None = None
    inference_s: float = 0.0
    tokens: int = 0

    def __post_init__(self) -> None:
        self.logits = [0.0] * len(self.texts)


class PairBatcher:
    """Scores requests through one reranker, merging concurrent requests at the pair level.

    Args:
        reranker: The model; only its :meth:`~crossrank.Reranker.score_batch` is called.
        max_batch_tokens: Most estimated tokens (``len(query + document) / 4``, capped at the
            model's ``max_length``) one step takes; a single larger document is taken alone.
        max_wait_ms: How long a step waits for more requests when the queue holds less than a
            full step (0: never wait).
        enabled: False scores every request on its own, as it arrives (no merging): the
            baseline the benchmark compares against.
        pipeline: Steps in flight at once. With 2 (the default), the next step is tokenised and
            planned while the current one's forward passes run (the engine runs one forward pass
            at a time either way), as TEI builds its next batch while the backend works.
        on_step: Called after each step with its :class:`~crossrank.ScoringStats` and seconds.
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_batch_tokens: int = 16384,
        max_wait_ms: float = 2.0,
        enabled: bool = True,
        pipeline: int = 2,
        on_step: Callable[[ScoringStats, float], None] | None = None,
    ) -> None:
        self.reranker = reranker
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000
        self.enabled = enabled
        self.pipeline = pipeline
        self.on_step = on_step
        self._queue: deque[_Job] = deque()
        self._queued_tokens = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._steps: set[asyncio.Task[None]] = set()
        #: Requests dropped because their client went away.
        self.dropped = 0

    @property
    def queued_pairs(self) -> int:
        """Pairs waiting in the queue (not yet handed to a step)."""
        return sum(len(job.texts) - job.taken for job in self._queue)

    @property
    def running(self) -> bool:
        """Whether requests are being scored: batching off, or the consumer task alive."""
        return not self.enabled or (self._task is not None and not self._task.done())

    def estimate_tokens(self, query: str, text: str) -> int:
        """A cheap token estimate of a pair (characters / 4), capped at the model's limit."""
        return min(self.reranker.max_length, (len(query) + len(text)) // 4 + 3)

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="crossrank-batcher")

    async def stop(self) -> None:
        """Stop taking work, finish the steps in flight; requests still queued fail with ClientGone."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._steps:
            await asyncio.gather(*self._steps, return_exceptions=True)
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(ClientGone("the server is shutting down"))

    async def score(
        self, query: str, texts: list[str], *, is_gone: Callable[[], Awaitable[bool]] | None = None
    ) -> Scored:
        """Raw logits of ``texts`` against ``query`` (inputs already checked by the caller).

        Raises:
            ClientGone: ``is_gone`` said so before scoring, the batcher was stopped with the request
                still queued, or it is not running (never started, or stopped).
            ScoringError: The model gave this request non-finite scores (its batch-mates still score).
        """
        if self.enabled and not self.running:  # nothing would ever take it from the queue
            raise ClientGone("the scoring loop is not running")
        if not self.enabled:
            stats, started = ScoringStats(), time.perf_counter()
            (logits,) = await asyncio.to_thread(
                self.reranker.score_batch, [(query, texts)], normalize=False, stats=stats
            )
            seconds = time.perf_counter() - started
            if self.on_step is not None:
                self.on_step(stats, seconds)
            return Scored(logits, 0.0, seconds, stats.tokens)
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        estimates = [self.estimate_tokens(query, text) for text in texts]
        self._queue.append(_Job(query, texts, estimates, future, is_gone))
        self._queued_tokens += sum(estimates)
        self._ready.set()
        return await future

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.pipeline)
        while True:
            await slots.acquire()
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
            if self.max_wait_s and self._queued_tokens < self.max_batch_tokens:
                await asyncio.sleep(self.max_wait_s)  # let concurrent requests join this step
            pieces = await self._take()
            if not pieces:
                slots.release()
                continue
            step = asyncio.create_task(self._score(pieces))
            self._steps.add(step)
            step.add_done_callback(lambda task: (self._steps.discard(task), slots.release()))

    async def _take(self) -> list[tuple[_Job, int, int]]:
        """The next step: ``(job, first, stop)`` document ranges, within the token budget."""
        pieces: list[tuple[_Job, int, int]] = []
        budget = self.max_batch_tokens
        for job in list(self._queue):
            if job.taken == 0 and await self._gone(job):
                self._forget(job)
                self.dropped += 1
                if not job.future.done():
                    job.future.set_exception(ClientGone("the client went away"))
                continue
            first = stop = job.taken
            while stop < len(job.texts) and (job.estimates[stop] <= budget or (not pieces and stop == first)):
                budget -= job.estimates[stop]
                stop += 1
            if stop > first:
                pieces.append((job, first, stop))
                job.taken = stop
                self._queued_tokens -= sum(job.estimates[first:stop])
                if job.taken == len(job.texts):
                    self._queue.remove(job)  # all handed out; it resolves when its scores are back
            if budget <= 0 or stop < len(job.texts):
                break
        return pieces

    @staticmethod
    async def _gone(job: _Job) -> bool:
        """Whether nobody waits for ``job`` any more (its client disconnected, or it was cancelled)."""
        return job.future.done() or (job.is_gone is not None and await job.is_gone())

    async def _score(self, pieces: list[tuple[_Job, int, int]]) -> None:
        requests = [(job.query, job.texts[first:stop]) for job, first, stop in pieces]
        started = time.perf_counter()
        for job, _, _ in pieces:
            if job.started is None:
                job.started = started
        stats = ScoringStats()
        try:
            results = await asyncio.to_thread(
                self.reranker.score_batch, requests, normalize=False, stats=stats
            )
        except ScoringError as err:
            if len(pieces) == 1:
                self._fail(pieces[0][0], err)
                return
            # One request's document broke the model: score each alone so only that request fails.
            for piece in pieces:
                await self._score([piece])
            return
        except Exception as err:  # the engine failed: every request of this step gets the error
            logger.exception("scoring failed")
            for job, _, _ in pieces:
                self._fail(job, err)
            return
        seconds = time.perf_counter() - started
        if self.on_step is not None:
            self.on_step(stats, seconds)
        total_pairs = sum(stop - first for _, first, stop in pieces) or 1
        for (job, first, stop), logits in zip(pieces, results, strict=True):
            job.logits[first:stop] = logits
            job.scored += stop - first
            job.inference_s += seconds
            job.tokens += stats.tokens * (stop - first) // total_pairs
            if job.scored == len(job.texts) and not job.future.done():
                queue_s = (job.started or started) - job.enqueued
                job.future.set_result(Scored(job.logits, queue_s, job.inference_s, job.tokens))

    def _fail(self, job: _Job, err: BaseException) -> None:
        self._forget(job)
        if not job.future.done():
            job.future.set_exception(err)

    def _forget(self, job: _Job) -> None:
        if job in self._queue:
            self._queue.remove(job)
            self._queued_tokens -= sum(job.estimates[job.taken :])
            job.taken = len(job.texts)
