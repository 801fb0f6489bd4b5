"""Property tests: whatever the input, the caller's arguments come back untouched."""

from __future__ import annotations

import asyncio
import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrank import EmptyQueryError, Reranker

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
words = st.sampled_from(["flea", "fleas", "live", "a", "year", "paris", "tower", "tea", "", "  "])
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
        assert not query.strip()
        return
    assert docs == before and [id(doc) for doc in docs] == ids
    expected = len(docs) if top_n is None else min(top_n, len(docs))
    assert len(ranking) == expected == min(expected, ranking.num_candidates)
    assert len({hit.index for hit in ranking}) == len(ranking)
    for hit in ranking:
        assert hit.text is docs[hit.index]
        assert type(hit.score) is float
    scores = [hit.score for hit in ranking]
    assert scores == sorted(scores, reverse=True)


@settings_
@given(query=words.filter(str.strip), docs=documents)
def test_async_never_mutates(tiny_reranker: Reranker, query, docs) -> None:
    before = copy.copy(docs)
    scores = asyncio.run(tiny_reranker.ascore(query, docs))
    assert docs == before
    assert len(scores) == len(docs)


@settings_
@given(docs=documents)
def test_tuple_and_generator_inputs(tiny_reranker: Reranker, docs) -> None:
    as_list = tiny_reranker.score("flea", docs)
    assert tiny_reranker.score("flea", tuple(docs)) == as_list
    assert tiny_reranker.score("flea", (d for d in docs)) == as_list
