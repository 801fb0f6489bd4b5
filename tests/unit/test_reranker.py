"""Reranker behaviour on the tiny random model: ordering, top_n, normalize, min_score, batching, async."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sentence_transformers import CrossEncoder

from crossrank import InvalidArgumentError, RankedDocument, Ranking, Reranker
from crossrank.cpus import native_bf16

QUERY = "how long does a flea live"
DOCS = [
    "fleas live a year with a host",
    "the eiffel tower is in paris",
    "",
    "bread dough must rest so the yeast can work",
    "fleas live a year with a host",
    "coffee has more caffeine than tea",
]


def test_rank_sorts_by_score_and_keeps_indexes(tiny_reranker: Reranker) -> None:
    ranking = tiny_reranker.rank(QUERY, DOCS, top_n=None)
    assert isinstance(ranking, Ranking) and isinstance(ranking, list)
    assert sorted(hit.index for hit in ranking) == list(range(len(DOCS)))
    assert ranking[-1].text == ""  # the blank chunk ranks last; the rest best first
    scores = [hit.score for hit in ranking[:-1]]
    assert scores == sorted(scores, reverse=True)
    for hit in ranking:
        assert isinstance(hit, RankedDocument)
        assert type(hit.score) is float
        assert hit.text is DOCS[hit.index]
    assert ranking.num_candidates == len(DOCS) and ranking.num_below_min_score == 0


def test_score_is_in_input_order_and_matches_rank(tiny_reranker: Reranker) -> None:
    scores = tiny_reranker.score(QUERY, DOCS)
    assert len(scores) == len(DOCS) and all(type(s) is float for s in scores)
    for hit in tiny_reranker.rank(QUERY, DOCS, top_n=None):
        assert hit.score == scores[hit.index]


def test_scores_match_sentence_transformers(tiny_model_dir, tiny_reranker: Reranker) -> None:
    # The tiny model has no saved activation, so ST applies its default sigmoid; logits via Identity.
    ce = CrossEncoder(str(tiny_model_dir), device="cpu")
    pairs = [(QUERY, doc) for doc in DOCS]
    st_logits = ce.predict(pairs, activation_fn=__import__("torch").nn.Identity())
    st_probs = ce.predict(pairs)
    assert np.max(np.abs(np.array(tiny_reranker.score(QUERY, DOCS)) - st_logits)) <= 1e-5
    assert np.max(np.abs(np.array(tiny_reranker.score(QUERY, DOCS, normalize=True)) - st_probs)) <= 1e-6


def test_top_n(tiny_reranker: Reranker) -> None:
    full = tiny_reranker.rank(QUERY, DOCS, top_n=None)
    assert tiny_reranker.rank(QUERY, DOCS, top_n=2) == full[:2]
    assert len(tiny_reranker.rank(QUERY, DOCS)) == 3  # the default
    assert tiny_reranker.rank(QUERY, DOCS[:2], top_n=10) == tiny_reranker.rank(QUERY, DOCS[:2], top_n=None)


def test_normalize_is_sigmoid_of_logit(tiny_reranker: Reranker) -> None:
    logits = tiny_reranker.score(QUERY, DOCS)
    probs = tiny_reranker.score(QUERY, DOCS, normalize=True)
    for logit, prob in zip(logits, probs, strict=True):
        assert 0.0 < prob < 1.0
        assert prob == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-12)


def test_min_score_drops_and_counts(tiny_reranker: Reranker, caplog: pytest.LogCaptureFixture) -> None:
    scores = sorted(tiny_reranker.score(QUERY, DOCS), reverse=True)
    threshold = scores[2]
    kept = [s for s in scores if s >= threshold]
    assert 3 <= len(kept) < len(DOCS)
    with caplog.at_level(logging.INFO, logger="crossrank"):
        ranking = tiny_reranker.rank(QUERY, DOCS, top_n=None, min_score=threshold)
    assert [hit.score for hit in ranking] == kept
    assert ranking.num_below_min_score == len(DOCS) - len(kept)
    assert f"dropped {len(DOCS) - len(kept)} of {len(DOCS)}" in caplog.text
    # top_n cuts after min_score; the count says what min_score removed.
    assert len(tiny_reranker.rank(QUERY, DOCS, top_n=1, min_score=threshold)) == 1


def test_min_score_uses_the_normalized_scale(tiny_reranker: Reranker) -> None:
    assert len(tiny_reranker.rank(QUERY, DOCS, top_n=None, normalize=True, min_score=0.0)) == len(DOCS)
    assert len(tiny_reranker.rank(QUERY, DOCS, top_n=None, normalize=True, min_score=1.0)) == 0


class _ConstantBackend:
    """Wraps a backend, returning the same logit for every pair, to exercise exact ties."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, batch):
        self.calls += 1
        return np.zeros(len(batch.positions), dtype=np.float32)


def test_ties_keep_input_order(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu")
    reranker = Reranker.from_backend(_ConstantBackend(reranker.engine))
    # Equal scores keep input order; DOCS[2] is blank, so it goes last.
    assert [hit.index for hit in reranker.rank(QUERY, DOCS, top_n=None)] == [0, 1, 3, 4, 5, 2]


def test_duplicates_are_each_returned(tiny_reranker: Reranker) -> None:
    ranking = tiny_reranker.rank(QUERY, ["fleas live a year"] * 4, top_n=None)
    assert [hit.index for hit in ranking] == [0, 1, 2, 3]  # one shared score: input order
    assert len({hit.score for hit in ranking}) == 1


def test_empty_documents_make_no_model_call(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu")
    reranker = Reranker.from_backend(spy := _ConstantBackend(reranker.engine))
    assert reranker.rank(QUERY, []) == []
    assert reranker.score(QUERY, []) == []
    assert asyncio.run(reranker.arank(QUERY, [])) == []
    assert spy.calls == 0


def test_batch_size_does_not_change_scores(tiny_model_dir, tiny_reranker: Reranker) -> None:
    docs = [f"fleas live {'a year ' * n}with a host" for n in range(40)]
    one_by_one = Reranker(tiny_model_dir, device="cpu", batch_size=1)
    assert np.allclose(one_by_one.score(QUERY, docs), tiny_reranker.score(QUERY, docs), atol=1e-5)


def test_long_documents_are_cut_on_the_document_side(tiny_reranker: Reranker) -> None:
    long_doc = "fleas live a year with a host " * 100  # far over the tiny model's 128 tokens
    (pair,) = tiny_reranker.encoder.encode(QUERY, [long_doc]).first
    query_tokens = ["how", "long", "does", "a", "flea", "live"]
    assert len(pair.ids) == tiny_reranker.max_length == 128
    assert pair.tokens[: 2 + len(query_tokens)] == ["[CLS]", *query_tokens, "[SEP]"]
    assert pair.tokens[-1] == "[SEP]"
    # What scores is the document's beginning: adding more text past the cut changes nothing.
    assert tiny_reranker.score(QUERY, [long_doc]) == tiny_reranker.score(QUERY, [long_doc + " tea " * 50])


def test_overlong_query_is_cut_to_half_with_a_warning(tiny_reranker, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        (pair,) = tiny_reranker.encoder.encode("flea " * 200, ["fleas live a year"]).first
    assert "cut to" in caplog.text
    assert len(pair.ids) <= tiny_reranker.max_length
    assert pair.tokens[-5:] == ["fleas", "live", "a", "year", "[SEP]"]


def test_small_max_length(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu", max_length=16)
    (pair,) = reranker.encoder.encode(QUERY, ["fleas live a year with a host " * 5]).first
    assert len(pair.ids) == 16
    assert len(reranker.rank(QUERY, DOCS)) == 3


def test_from_config_applies_defaults(tiny_model_dir) -> None:
    from crossrank import RerankerConfig

    reranker = Reranker.from_config(
        RerankerConfig(model=str(tiny_model_dir), top_n=5, normalize=True, device="cpu")
    )
    ranking = reranker.rank(QUERY, DOCS)
    assert len(ranking) == 5 and all(0 < hit.score < 1 for hit in ranking)
    assert len(reranker.rank(QUERY, DOCS, top_n=2, normalize=False)) == 2
    from_dict = Reranker.from_config({"model": str(tiny_model_dir), "batch_size": 4}, device="cpu")
    assert from_dict.batch_size == 4 and from_dict.device == "cpu"


async def test_async_matches_sync(tiny_reranker: Reranker) -> None:
    queries = [QUERY, "paris tower", "why is the sky blue", "coffee or tea"] * 5
    expected = [tiny_reranker.rank(q, DOCS, top_n=None) for q in queries]
    got = await asyncio.gather(*(tiny_reranker.arank(q, DOCS, top_n=None) for q in queries))
    assert got == expected
    scores = await asyncio.gather(*(tiny_reranker.ascore(q, DOCS) for q in queries))
    assert scores == [tiny_reranker.score(q, DOCS) for q in queries]


async def test_async_does_not_block_the_event_loop(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu")

    class SlowBackend(_ConstantBackend):
        def logits(self, batch):
            time.sleep(0.3)  # a model forward that holds its thread, as a real one does
            return super().logits(batch)

    reranker = Reranker.from_backend(SlowBackend(reranker.engine))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    ranking = await reranker.arank(QUERY, DOCS)
    task.cancel()
    assert len(ranking) == 3
    assert ticks >= 5  # the loop kept running while the forward pass slept in its thread


def test_threads_share_one_reranker(tiny_reranker: Reranker) -> None:
    queries = [f"{word} flea" for word in ("how", "why", "when", "what")] * 6
    expected = [tiny_reranker.score(q, DOCS) for q in queries]
    barrier = threading.Barrier(8)

    def run(query: str) -> list[float]:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return tiny_reranker.score(query, DOCS)

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(run, queries))
    assert got == expected


class _CountTokenBackend(_ConstantBackend):
    """Scores a pair by how many times one token occurs in it: makes window logic checkable."""

    def __init__(self, inner, token_id: int) -> None:
        super().__init__(inner)
        self.token_id = token_id

    def logits(self, batch):
        self.calls += 1
        return (batch.input_ids == self.token_id).sum(axis=1).astype(np.float32)


def test_windows_score_the_end_of_a_long_document(tiny_model_dir) -> None:
    long_doc = "flea " * 400 + "tea"  # 'tea' sits far past the 128-token cut
    short_docs = ["tea for two", "fleas live a year"]
    scores = {}
    for mode in ("truncate", "windows"):
        reranker = Reranker(tiny_model_dir, device="cpu", long_documents=mode)
        tea = reranker.encoder.tokenizer.token_to_id("tea")
        reranker = Reranker.from_backend(_CountTokenBackend(reranker.engine, tea), long_documents=mode)
        scores[mode] = reranker.score(QUERY, [long_doc, *short_docs])
    assert scores["truncate"] == [0.0, 1.0, 0.0]
    assert scores["windows"] == [1.0, 1.0, 0.0]  # max over windows finds the one holding 'tea'


def test_windows_cover_the_whole_document_with_overlap(tiny_reranker: Reranker) -> None:
    encoder = tiny_reranker.encoder
    doc = " ".join(["flea", "tea", "paris", "coffee"] * 150)  # 600 tokens
    pairs = encoder.encode(QUERY, [doc], windows=True, stride=10)
    windows = [pairs.first[0], *pairs.extra]
    assert pairs.extra_owners == [0] * len(pairs.extra) and pairs.num_cut == 1
    query_part = ["[CLS]", "how", "long", "does", "a", "flea", "live", "[SEP]"]
    doc_tokens = []
    for i, window in enumerate(windows):
        assert len(window.ids) <= 128 and window.tokens[: len(query_part)] == query_part
        body = window.tokens[len(query_part) : -1]
        doc_tokens += body if i == 0 else body[10:]  # consecutive windows share 10 tokens
        if i:
            assert body[:10] == windows[i - 1].tokens[len(query_part) : -1][-10:]
    assert doc_tokens == doc.split()


def test_windows_leave_short_documents_bit_for_bit(tiny_model_dir, tiny_reranker: Reranker) -> None:
    windowed = Reranker(tiny_model_dir, device="cpu", long_documents="windows")
    docs = [*DOCS, "fleas live a year with a host " * 60]
    truncated_scores = tiny_reranker.score(QUERY, docs)
    windowed_scores = windowed.score(QUERY, docs)
    assert windowed_scores[:-1] == truncated_scores[:-1]  # exact equality, not approx
    assert windowed_scores[-1] >= truncated_scores[-1]


def test_window_length_windows_long_documents_only(tiny_model_dir, tiny_reranker: Reranker) -> None:
    doc = " ".join(["flea", "tea", "paris", "coffee"] * 150)  # 600 tokens
    encoder = tiny_reranker.encoder
    pairs = encoder.encode(QUERY, [doc, *DOCS], windows=True, stride=10, window_length=48)
    windows = [pairs.first[0], *pairs.extra]
    assert all(len(window.ids) <= 48 for window in windows)
    doc_tokens = []
    for i, window in enumerate(windows):  # the whole document, consecutive windows sharing 10 tokens
        body = window.tokens[8:-1]
        doc_tokens += body if i == 0 else body[10:]
    assert doc_tokens == doc.split()
    plain = encoder.encode(QUERY, DOCS, windows=True)  # documents that fit: encoded whole, as without it
    assert [p.ids for p in pairs.first[1:]] == [p.ids for p in plain.first]
    short = Reranker(tiny_model_dir, device="cpu", long_documents="windows", window_length=48)
    assert short.score(QUERY, DOCS) == tiny_reranker.score(QUERY, DOCS)  # exact equality
    with pytest.raises(InvalidArgumentError, match="window_length applies to long_documents='windows' only"):
        Reranker(tiny_model_dir, device="cpu", window_length=64)
    with pytest.raises(InvalidArgumentError, match="window_length=256 exceeds max_length=128"):
        Reranker(tiny_model_dir, device="cpu", long_documents="windows", window_length=256)


def test_truncation_warns_once(tiny_model_dir, caplog: pytest.LogCaptureFixture) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu")
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        reranker.score(QUERY, ["flea " * 300, "tea"])
        reranker.score(QUERY, ["flea " * 300])
    assert caplog.text.count("long_documents='windows'") == 1
    assert "1 of 2 documents are longer than max_length=128" in caplog.text


def test_to_config_round_trips(tiny_model_dir) -> None:
    reranker = Reranker(
        tiny_model_dir, device="cpu", top_n=4, max_length=64, long_documents="windows", stride=8
    )
    config = reranker.to_config()
    assert (config.model, config.top_n, config.max_length, config.long_documents, config.stride) == (
        str(tiny_model_dir),
        4,
        64,
        "windows",
        8,
    )
    rebuilt = Reranker.from_config(config)
    assert rebuilt.to_config() == config
    assert rebuilt.score(QUERY, DOCS) == reranker.score(QUERY, DOCS)


def _brute_force_cost(lengths: list[int], batch_size: int) -> float:
    from functools import cache

    from crossrank.encoding import BATCH_OVERHEAD_TOKENS

    @cache
    def best(start: int) -> float:
        if start == len(lengths):
            return 0.0
        return min(
            (stop - start) * lengths[start] + BATCH_OVERHEAD_TOKENS + best(stop)
            for stop in range(start + 1, min(len(lengths), start + batch_size) + 1)
        )

    return best(0)


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_plan_batches_is_contiguous_bounded_and_optimal(batch_size: int) -> None:
    from crossrank.encoding import BATCH_OVERHEAD_TOKENS, plan_batches

    rng = np.random.default_rng(batch_size)
    for n, high in ((0, 300), (1, 300), (7, 300), (20, 300), (45, 300), (45, 12), (60, 10), (30, 9)):
        # Few distinct lengths (high - 8) make long runs of equal lengths, where the planner
        # skips starts: its cost must still be the least possible.
        lengths = sorted(rng.integers(8, high, size=n).tolist(), reverse=True)
        plan = plan_batches(lengths, batch_size)
        assert [start for start, _ in plan] == ([0] + [stop for _, stop in plan[:-1]] if n else [])
        assert (plan[-1][1] if plan else 0) == n
        assert all(0 < stop - start <= batch_size for start, stop in plan)
        cost = sum((stop - start) * lengths[start] + BATCH_OVERHEAD_TOKENS for start, stop in plan)
        assert cost == _brute_force_cost(lengths, batch_size)


def test_mixed_lengths_are_split_into_tighter_batches(tiny_reranker: Reranker) -> None:
    docs = ["fleas " * n for n in (100, 95, 90, 10, 8, 6, 5, 4, 3, 2)]
    pairs = tiny_reranker.encoder.encode(QUERY, docs).first
    widths = [batch.input_ids.shape[1] for batch in tiny_reranker.encoder.batches(pairs, 32)]
    assert len(widths) >= 2 and min(widths) < 30  # the short pairs are not padded to ~110 tokens


def test_plan_batches_without_overhead_never_pads() -> None:
    from crossrank.encoding import plan_batches

    lengths = [90, 90, 80, 64, 64, 64, 12]
    plan = plan_batches(lengths, 32, overhead_tokens=0)
    assert all(len({lengths[i] for i in range(start, stop)}) == 1 for start, stop in plan)
    assert len(plan_batches(lengths, 32, overhead_tokens=10**6)) == 1  # passes dearer than padding


def test_default_batch_size_and_precision_on_cpu(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, backend="torch", device="cpu")
    assert reranker.batch_size == 32 and reranker.precision == "auto"
    # "auto" is bf16 on a CPU that computes it natively, fp32 on others
    assert reranker.engine.precision == ("bf16" if native_bf16() else "fp32")


def test_bf16_on_cpu_keeps_scores_close(tiny_model_dir, tiny_reranker: Reranker) -> None:
    bf16 = Reranker(tiny_model_dir, device="cpu", precision="bf16")
    assert bf16.engine.precision == "bf16" and bf16.to_config().precision == "bf16"
    ours, reference = bf16.score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS)
    assert all(type(s) is float for s in ours)
    assert ours != reference  # it really ran in bf16 (weights cast at load)
    assert np.max(np.abs(np.subtract(ours, reference))) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "cpu", "precision": "fp16"}, "needs a CUDA device"),
        ({"precision": "fp8"}, "precision: Input should be"),
        ({"backend": "onnx", "precision": "fp16"}, "applies to backend='torch'"),
    ],
)
def test_bad_precision_is_refused(tiny_model_dir, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Reranker(tiny_model_dir, **kwargs)


def test_scoring_stats_count_what_the_engine_did(tiny_reranker: Reranker) -> None:
    from crossrank import ScoringStats

    docs = ["fleas live a year", "tea", "fleas live a year", "paris " * 200]  # a duplicate, a long one
    stats = ScoringStats()
    tiny_reranker.score_batch([(QUERY, docs), ("tea", ["tea"])], stats=stats)
    encoded = tiny_reranker.encoder.encode(QUERY, list(dict.fromkeys(docs))).first
    encoded += tiny_reranker.encoder.encode("tea", ["tea"]).first
    assert stats.pairs == 4  # the duplicate is scored once
    assert stats.tokens == sum(len(pair) for pair in encoded)
    assert stats.padded_tokens >= stats.tokens and sum(stats.batch_rows) == stats.pairs
    assert stats.forward_passes == len(stats.batch_rows)


def test_score_pairs_keeps_row_order_with_interleaved_queries(tiny_reranker: Reranker) -> None:
    rows = [("flea", "fleas live a year"), ("tea", "tea for two"), ("flea", "paris"), ("tea", "coffee")]
    scores = tiny_reranker.score_pairs([q for q, _ in rows], [t for _, t in rows])
    # Rows are grouped by query into requests of one score_batch call, then put back in row order.
    flea, tea = tiny_reranker.score_batch(
        [("flea", ["fleas live a year", "paris"]), ("tea", ["tea for two", "coffee"])]
    )
    assert scores == [flea[0], tea[0], flea[1], tea[1]]
    assert all(type(score) is float for score in scores)
    assert tiny_reranker.score_pairs([], []) == []


def test_windows_per_document_are_capped(tiny_model_dir, caplog: pytest.LogCaptureFixture) -> None:
    """One huge chunk can't stall a call: at most max_windows forward rows per document, logged."""
    from crossrank import ScoringStats

    huge = "fleas live a year with a host " * 30_000  # ~900,000 characters, thousands of windows
    reranker = Reranker(tiny_model_dir, device="cpu", long_documents="windows", max_windows=5)
    stats = ScoringStats()
    with caplog.at_level("WARNING", logger="crossrank"):
        (score,) = reranker.score_batch([(QUERY, [huge])], stats=stats)
    assert stats.pairs == 5 and len(score) == 1 and math.isfinite(score[0])
    assert "longer than max_windows=5 windows" in caplog.text
    uncapped = Reranker(tiny_model_dir, device="cpu", long_documents="windows", max_windows=10_000)
    stats = ScoringStats()
    uncapped.score_batch([(QUERY, ["tea " * 1000])], stats=stats)
    assert stats.pairs > 5  # the cap is what stopped it, not the document


def test_a_ready_engine_as_the_backend(tiny_reranker: Reranker) -> None:
    from crossrank import InvalidArgumentError

    shared = Reranker("my-ce", backend=tiny_reranker.engine, top_n=1)
    assert shared.model_name == "my-ce" and shared.engine is tiny_reranker.engine and shared.top_n == 1
    assert shared.score(QUERY, DOCS) == tiny_reranker.score(QUERY, DOCS)
    with pytest.raises(InvalidArgumentError, match="apply when loading a model"):
        Reranker("my-ce", backend=tiny_reranker.engine, device="cuda")
    # The loader's own arguments load nothing here either: refused, by both entry points alike.
    for loader_only in ({"token": "hf_x"}, {"model_kwargs": {"torch_dtype": "float16"}}):
        with pytest.raises(InvalidArgumentError, match=f"{next(iter(loader_only))} apply when loading"):
            Reranker(backend=tiny_reranker.engine, **loader_only)
        with pytest.raises(InvalidArgumentError, match=f"{next(iter(loader_only))} apply when loading"):
            Reranker.from_backend(tiny_reranker.engine, **loader_only)
    # Unnamed, both report the engine's model, not the default model that was never loaded.
    unnamed = Reranker(backend=tiny_reranker.engine)
    assert unnamed.model_name == Reranker.from_backend(tiny_reranker.engine).model_name
    assert unnamed.model_name == tiny_reranker.engine.name != "cross-encoder/ms-marco-MiniLM-L6-v2"
    with pytest.raises(InvalidArgumentError, match="object lacks name, device"):
        Reranker.from_backend(object())


def test_from_config_raises_the_typed_error() -> None:
    from crossrank import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="top_n"):
        Reranker.from_config({"top_n": 0})


class _ShortIsBest(_ConstantBackend):
    """Scores a pair higher the shorter it is: a blank chunk (the query alone) gets the best score."""

    def logits(self, batch):
        return -batch.attention_mask.sum(axis=1).astype(np.float32)


def test_blank_chunks_rank_last_whatever_their_score(tiny_reranker: Reranker) -> None:
    reranker = Reranker.from_backend(_ShortIsBest(tiny_reranker.engine), top_n=None)
    docs = ["fleas live a year with a host", "", "tea", "   \n", "paris tower"]
    scores = reranker.score(QUERY, docs)
    assert scores[1] == max(scores)  # the empty chunk scored best...
    ranking = reranker.rank(QUERY, docs)
    assert [hit.index for hit in ranking] == [2, 4, 0, 1, 3]  # ...and still ranks after every text
    assert [hit.index for hit in reranker.rank(QUERY, docs, top_n=3)] == [2, 4, 0]
    assert [hit.index for hit in reranker.rank_batch([(QUERY, docs)], top_n=2)[0]] == [2, 4]
