"""Property tests: whatever the input, the caller's arguments come back untouched and every
document is accounted for, on every engine of ``crossrank.testing.SERVING_ENGINES``."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrank import EmptyQueryError, Reranker
from crossrank.testing import SERVING_ENGINES, engine_id


@pytest.fixture(scope="module", params=SERVING_ENGINES, ids=engine_id)
def tiny_reranker(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Reranker:
    """The tiny model on each engine: these invariants are every backend's contract."""
    return Reranker(tiny_model_dir, device="cpu", backend=request.param)


# The whole of Unicode: control, format (zero-width), private-use and unassigned characters, and
# lone surrogates (what json.loads gives for a cut emoji): a typed error or a sound ranking, never a crash.
texts = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)
words = st.sampled_from(["flea", "fleas", "live", "a", "year", "paris", "tower", "tea", "", "  ", "\u200b"])
documents = st.lists(st.one_of(texts, words), max_size=12).flatmap(
    lambda docs: st.just(docs + docs[: len(docs) // 2])  # with duplicates
)
settings_ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings_
@given(query=st.one_of(texts, words), docs=documents, top_n=st.one_of(st.none(), st.integers(1, 20)))
def test_rank_never_mutates_and_accounts_for_every_document(
    tiny_reranker: Reranker, query, docs, top_n
) -> None:
    before = copy.copy(docs)
    ids = [id(doc) for doc in docs]
    try:
        ranking = tiny_reranker.rank(query, docs, top_n=top_n)
    except EmptyQueryError:
        # Blank means "no tokens": the query's text gives the model nothing to read.
        assert tiny_reranker.count_tokens(query) == 0
        return
    assert tiny_reranker.count_tokens(query) > 0
    assert docs == before and [id(doc) for doc in docs] == ids
    assert ranking.num_candidates == len(docs) and ranking.num_below_min_score == 0
    assert len(ranking) == (len(docs) if top_n is None else min(top_n, len(docs)))
    assert len({hit.index for hit in ranking}) == len(ranking)
    for hit in ranking:
        assert hit.text is docs[hit.index]
        assert type(hit.score) is float
    # Best first, except that blank chunks come after every chunk with text.
    blank = [not hit.text.strip() for hit in ranking]
    assert blank == sorted(blank)
    for part in (False, True):
        scores = [hit.score for hit, is_blank in zip(ranking, blank, strict=True) if is_blank is part]
        assert scores == sorted(scores, reverse=True)
    # Identical texts share one score, so their order is input order, not float noise.
    for a in ranking:
        for b in ranking:
            if a.text == b.text:
                assert a.score == b.score and (a.index < b.index) == (ranking.index(a) < ranking.index(b))


@settings_
@given(
    requests=st.lists(
        st.tuples(words.filter(str.strip).filter(lambda w: w != "\u200b"), documents), max_size=5
    )
)
def test_batches_never_mutate_and_equal_one_call_per_request(tiny_reranker: Reranker, requests) -> None:
    before = copy.deepcopy(requests)
    batch = tiny_reranker.score_batch(requests)
    assert requests == before
    assert len(batch) == len(requests)
    for (query, docs), scores in zip(requests, batch, strict=True):
        alone = tiny_reranker.score(query, docs)
        assert len(scores) == len(docs)
        assert all(abs(a - b) <= 1e-5 for a, b in zip(scores, alone, strict=True))
    rankings = tiny_reranker.rank_batch(requests, top_n=None)
    assert [ranking.num_candidates for ranking in rankings] == [len(docs) for _, docs in requests]


@settings_
@given(query=words.filter(str.strip).filter(lambda w: w != "\u200b"), docs=documents)
def test_async_never_mutates(tiny_reranker: Reranker, query, docs) -> None:
    before = copy.copy(docs)
    scores = asyncio.run(tiny_reranker.ascore(query, docs))
    assert docs == before
    assert scores == tiny_reranker.score(query, docs)


@settings_
@given(docs=documents)
def test_tuple_and_generator_inputs(tiny_reranker: Reranker, docs) -> None:
    as_list = tiny_reranker.score("flea", docs)
    assert tiny_reranker.score("flea", tuple(docs)) == as_list
    assert tiny_reranker.score("flea", (d for d in docs)) == as_list
