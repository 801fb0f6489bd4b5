"""The server's :class:`PairBatcher`, driven directly under asyncio over :class:`FakeEngine`.

No HTTP, no model files, no torch: the fake engine's logit is a pure function of its row, so
every score is known in advance (``Reranker.score`` on the same engine), latency is injected with
``delay_s`` and failures with ``fail_word``. Each test is well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator

import pytest

from crossrank import Reranker, ScoringError, ScoringStats
from crossrank.server.batcher import ClientGone, PairBatcher
from crossrank.testing import FakeEngine

QUERY = "how long do fleas live"
WORDS = ["the", "a", "of", "fleas", "flea", "live", "life", "cycle", "year", "host", "dog", "cat"]
WORDS += ["tea", "coffee", "paris", "tower", "bread", "sky"]

#: A guard on every await of a result: a batcher bug must fail a test, not hang the run.
TIMEOUT_S = 20


class TimedEngine(FakeEngine):
    """A FakeEngine that records when each forward pass ran."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.spans: list[tuple[float, float]] = []

    def logits(self, batch):
        started = time.perf_counter()
        out = super().logits(batch)
        self.spans.append((started, time.perf_counter()))
        return out


class GatedEngine(FakeEngine):
    """A FakeEngine whose forward passes wait until ``release`` is set; ``entered`` says one began."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.entered = threading.Event()
        self.release = threading.Event()

    def logits(self, batch):
        self.entered.set()
        self.release.wait(TIMEOUT_S)
        return super().logits(batch)


@contextlib.asynccontextmanager
async def running(reranker: Reranker, **options) -> AsyncIterator[tuple[PairBatcher, list[ScoringStats]]]:
    """A started batcher over ``reranker`` (stopped at the end) and the stats of each step it scored."""
    steps: list[ScoringStats] = []
    batcher = PairBatcher(reranker, on_step=lambda stats, seconds: steps.append(stats), **options)
    await batcher.start()
    try:
        yield batcher, steps
    finally:
        await batcher.stop()


async def _until(condition, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.002)


def _texts(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def _alone(reranker: Reranker, query: str, texts: list[str]) -> list[float]:
    return reranker.score(query, texts, normalize=False)


# --------------------------------------------------------------------------- the token budget


async def test_each_step_stays_within_the_token_budget() -> None:
    reranker = Reranker.from_backend(FakeEngine(), batch_size=64)
    texts = [f"fleas live a year with a host {i:02d}" for i in range(28)]
    probe = PairBatcher(reranker)
    estimate = probe.estimate_tokens(QUERY, texts[0])
    assert all(probe.estimate_tokens(QUERY, text) == estimate for text in texts)
    budget = 5 * estimate + estimate // 2  # room for 5 pairs, not 6
    async with running(reranker, max_batch_tokens=budget, max_wait_ms=0) as (batcher, steps):
        requests = [texts[i : i + 7] for i in range(0, 28, 7)]
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.score(QUERY, request) for request in requests)), TIMEOUT_S
        )
    # 28 pairs in steps of at most 5 (requests split over steps); steps report as they finish
    assert sorted(step.pairs for step in steps) == [3, 5, 5, 5, 5, 5]
    assert max(reranker.engine.batches) <= 5
    for request, scored in zip(requests, results, strict=True):
        assert scored.logits == _alone(reranker, QUERY, request)
        assert scored.tokens > 0 and scored.queue_s >= 0 and scored.inference_s > 0


async def test_a_document_over_the_budget_is_taken_alone() -> None:
    reranker = Reranker.from_backend(FakeEngine())
    texts = ["fleas live a year with a host dog cat"] * 2 + ["tea"]
    async with running(reranker, max_batch_tokens=4, max_wait_ms=0) as (batcher, steps):
        scored = await asyncio.wait_for(batcher.score(QUERY, texts), TIMEOUT_S)
    assert [step.pairs for step in steps] == [1, 1, 1]
    assert scored.logits == _alone(reranker, QUERY, texts)


# --------------------------------------------------------------------------- pipelining


async def _serve_four_steps(pipeline: int) -> tuple[float, TimedEngine]:
    engine = TimedEngine(delay_s=0.15)
    reranker = Reranker.from_backend(engine)
    text = "fleas live a year"
    budget = PairBatcher(reranker).estimate_tokens(QUERY, text)  # one pair per step
    async with running(reranker, max_batch_tokens=budget, max_wait_ms=0, pipeline=pipeline) as (batcher, _):
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(batcher.score(QUERY, [text]) for _ in range(4))), TIMEOUT_S)
        return time.perf_counter() - started, engine


def _overlapping(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


async def test_the_next_step_is_built_while_the_model_runs() -> None:
    """pipeline=2: a second step is taken and started while the first one's forward pass runs."""
    serial_s, serial = await _serve_four_steps(pipeline=1)
    pipelined_s, pipelined = await _serve_four_steps(pipeline=2)
    assert len(serial.spans) == len(pipelined.spans) == 4
    assert not _overlapping(serial.spans)  # one step at a time
    assert _overlapping(pipelined.spans)
    assert pipelined_s < 0.8 * serial_s  # ~0.3 s against ~0.6 s


# --------------------------------------------------------------------------- clients that went away


async def test_a_request_whose_client_is_gone_is_never_scored() -> None:
    engine = FakeEngine()
    reranker = Reranker.from_backend(engine)

    async def gone() -> bool:
        return True

    async with running(reranker, max_wait_ms=0) as (batcher, steps):
        with pytest.raises(ClientGone):
            await asyncio.wait_for(batcher.score(QUERY, ["fleas", "tea"], is_gone=gone), TIMEOUT_S)
        assert batcher.dropped == 1 and batcher.queued_pairs == 0
        # the batcher goes on serving
        alive = await asyncio.wait_for(batcher.score(QUERY, ["tea"]), TIMEOUT_S)
    assert engine.batches == [1] and len(steps) == 1
    assert alive.logits == _alone(reranker, QUERY, ["tea"])


async def test_a_cancelled_request_is_dropped_before_its_pairs_reach_the_engine() -> None:
    engine = GatedEngine()
    reranker = Reranker.from_backend(engine)
    async with running(reranker, max_wait_ms=0, pipeline=1) as (batcher, _):
        first = asyncio.create_task(batcher.score(QUERY, ["fleas live a year"]))
        await _until(engine.entered.is_set)  # its step is in the engine, holding the only slot
        waiting = asyncio.create_task(batcher.score(QUERY, ["tea"] * 7))
        await _until(lambda: batcher.queued_pairs == 7)  # queued behind it
        waiting.cancel()  # the client gave up (an HTTP disconnect cancels the handler the same way)
        engine.release.set()
        await asyncio.wait_for(first, TIMEOUT_S)
        await _until(lambda: batcher.dropped == 1)
        assert batcher.queued_pairs == 0
    assert engine.batches == [1]  # the first request's pair only
    with pytest.raises(asyncio.CancelledError):
        await waiting


# --------------------------------------------------------------------------- failures stay with their request


async def test_one_request_failing_fails_only_itself() -> None:
    engine = FakeEngine(fail_word="paris")
    reranker = Reranker.from_backend(engine)
    requests = [["fleas live a year", "tea"], ["fleas", "paris is big", "dog"], ["cat", "fleas and a host"]]
    async with running(reranker, max_wait_ms=0) as (batcher, steps):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.score(QUERY, texts) for texts in requests), return_exceptions=True),
            TIMEOUT_S,
        )
        assert batcher.running
    # one merged step of all 7 pairs failed, then each request was scored alone
    assert sum(engine.batches) == 7 + 2 + 3 + 2
    assert isinstance(results[1], ScoringError) and "documents [1]" in str(results[1])
    assert results[0].logits == _alone(reranker, QUERY, requests[0])
    assert results[2].logits == _alone(reranker, QUERY, requests[2])
    assert [step.pairs for step in steps] == [2, 2]  # the two that succeeded


async def test_an_engine_crash_fails_the_step_and_the_batcher_goes_on() -> None:
    class Crashing(FakeEngine):
        crash = True

        def logits(self, batch):
            if self.crash:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().logits(batch)

    engine = Crashing()
    reranker = Reranker.from_backend(engine)
    async with running(reranker, max_wait_ms=0) as (batcher, _):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.score(QUERY, ["tea"]) for _ in range(2)), return_exceptions=True),
            TIMEOUT_S,
        )
        assert all(isinstance(result, RuntimeError) for result in results)
        engine.crash = False
        scored = await asyncio.wait_for(batcher.score(QUERY, ["tea"]), TIMEOUT_S)
    assert scored.logits == _alone(reranker, QUERY, ["tea"])


# --------------------------------------------------------------------------- merging changes nothing


@pytest.mark.parametrize("batch_invariant", [True, False])
@pytest.mark.parametrize("max_batch_tokens", [40, 16384])
async def test_merged_requests_score_bit_for_bit_as_alone(
    batch_invariant: bool, max_batch_tokens: int
) -> None:
    rng = random.Random(max_batch_tokens + batch_invariant)
    engine = FakeEngine(batch_invariant=batch_invariant)
    reranker = Reranker.from_backend(engine, batch_size=16)
    requests = [(" ".join(rng.sample(WORDS, 3)), _texts(rng, rng.randint(1, 9))) for _ in range(8)]
    requests.append((QUERY, ["fleas live", "fleas live", "tea"]))  # identical texts: scored once
    async with running(reranker, max_batch_tokens=max_batch_tokens, max_wait_ms=0) as (batcher, steps):
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.score(query, texts) for query, texts in requests)), TIMEOUT_S
        )
    for (query, texts), scored in zip(requests, results, strict=True):
        assert scored.logits == _alone(reranker, query, texts)
    if max_batch_tokens == 16384:
        assert len(steps) == 1  # every request shared one step
    else:
        assert len(steps) > 1
    if not batch_invariant:  # such an engine never sees two requests' pairs in one forward pass
        assert max(engine.batches) <= max(len(set(texts)) for _, texts in requests)


async def test_requests_that_arrive_while_waiting_join_the_step() -> None:
    reranker = Reranker.from_backend(FakeEngine())
    async with running(reranker, max_wait_ms=50) as (batcher, steps):

        async def later(delay_s: float, texts: list[str]):
            await asyncio.sleep(delay_s)
            return await batcher.score(QUERY, texts)

        await asyncio.wait_for(asyncio.gather(later(0, ["tea"]), later(0.01, ["fleas", "dog"])), TIMEOUT_S)
    assert [step.pairs for step in steps] == [3]


# --------------------------------------------------------------------------- stopping


async def test_stop_finishes_the_step_in_flight_and_fails_the_queued_requests() -> None:
    engine = GatedEngine()
    reranker = Reranker.from_backend(engine)
    batcher = PairBatcher(reranker, max_wait_ms=0, pipeline=1)
    await batcher.start()
    first = asyncio.create_task(batcher.score(QUERY, ["fleas live a year"]))
    await _until(engine.entered.is_set)
    queued = [asyncio.create_task(batcher.score(QUERY, ["tea", "dog"])) for _ in range(2)]
    await _until(lambda: batcher.queued_pairs == 4)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the step in flight
    engine.release.set()
    await asyncio.wait_for(stopping, TIMEOUT_S)
    assert not batcher.running and batcher.queued_pairs == 0
    assert engine.batches == [1]  # the step in flight, nothing queued
    assert (await first).logits == _alone(reranker, QUERY, ["fleas live a year"])
    for task in queued:
        with pytest.raises(ClientGone, match="shutting down"):
            await task
    with pytest.raises(ClientGone, match="not running"):  # after stop: refused, never left waiting
        await asyncio.wait_for(batcher.score(QUERY, ["tea"]), TIMEOUT_S)


async def test_without_batching_each_request_is_scored_as_it_comes() -> None:
    engine = FakeEngine()
    reranker = Reranker.from_backend(engine)
    async with running(reranker, enabled=False) as (batcher, steps):
        assert batcher.running  # nothing to start: there is no queue
        results = await asyncio.wait_for(
            asyncio.gather(batcher.score(QUERY, ["tea", "dog"]), batcher.score(QUERY, ["fleas"])), TIMEOUT_S
        )
    assert [result.logits for result in results] == [
        _alone(reranker, QUERY, ["tea", "dog"]),
        _alone(reranker, QUERY, ["fleas"]),
    ]
    assert sorted(step.pairs for step in steps) == [1, 2]
    assert all(result.queue_s == 0.0 for result in results)
