"""CrossrankRerank on real TREC DL 2019 passages, scored by the trained fixture cross-encoder."""

from __future__ import annotations

import asyncio
import functools
import math
from pathlib import Path

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.crossrank import CrossrankRerank
from pydantic import ValidationError

from crossrank import EmptyQueryError, Reranker, RerankerConfig

pytestmark = pytest.mark.real_model  # every test here runs the trained fixture cross-encoder


def ids_and_scores(nodes: list[NodeWithScore]) -> list[tuple[str, float]]:
    return [(n.node.node_id, n.score) for n in nodes]


@functools.cache
def _core_ranking(reranker: Reranker, query: str, texts: tuple[str, ...]) -> list[tuple[int, float]]:
    return [(hit.index, hit.score) for hit in reranker.rank(query, texts, top_n=None)]


def expected(
    reranker: Reranker, query: str, nodes: list[NodeWithScore], top_n: int | None
) -> list[tuple[str, float]]:
    """What the core ranks highest, on the text LlamaIndex's rerankers score (MetadataMode.EMBED)."""
    texts = tuple(n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes)
    return [(nodes[i].node.node_id, score) for i, score in _core_ranking(reranker, query, texts)[:top_n]]


def snapshot(nodes: list[NodeWithScore]) -> list[dict]:
    return [n.model_dump() for n in nodes]


# ------------------------------------------------------------------ construction


def test_shares_a_given_reranker(reranker: Reranker, fixture_model_dir: Path) -> None:
    first = CrossrankRerank(reranker=reranker)
    second = CrossrankRerank(reranker=reranker, top_n=5, keep_retrieval_score=True)
    assert first.reranker is reranker and second.reranker is reranker
    assert (first.model, first.device) == (str(fixture_model_dir), "cpu")
    assert (first.top_n, first.normalize, first.min_score) == (3, False, None)  # the Reranker's defaults
    assert first.keep_retrieval_score is False
    assert (second.top_n, second.keep_retrieval_score) == (5, True)


def test_builds_its_reranker_from_config(fixture_model_dir: Path) -> None:
    config = RerankerConfig(
        model=str(fixture_model_dir), device="cpu", top_n=5, normalize=True, min_score=0.1
    )
    postprocessor = CrossrankRerank(config=config, top_n=2)
    assert postprocessor.reranker.model_name == str(fixture_model_dir)
    # ranking options not passed come from the config; those passed win
    assert (postprocessor.top_n, postprocessor.normalize, postprocessor.min_score) == (2, True, 0.1)


def test_serialises_and_rebuilds_from_model(reranker: Reranker) -> None:
    data = CrossrankRerank(reranker=reranker, top_n=4, normalize=True).to_dict()
    assert data == {
        "class_name": "CrossrankRerank",
        "model": reranker.model_name,
        "device": "cpu",
        "top_n": 4,
        "normalize": True,
        "min_score": None,
        "dedupe": None,
        "max_tokens": None,
        "fusion": None,
        "keep_retrieval_score": False,
    }
    rebuilt = CrossrankRerank.from_dict(data)  # loads `model` itself
    assert rebuilt.reranker is not reranker
    assert rebuilt.to_dict() == data


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "cross-encoder/ms-marco-MiniLM-L6-v2"}, "got `model` and `reranker`"),
        ({"device": "cuda"}, "got `device` and `reranker`"),
        ({"config": RerankerConfig()}, "got `reranker` and `config`"),
    ],
)
def test_conflicting_model_sources_are_an_error(reranker: Reranker, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CrossrankRerank(reranker=reranker, **kwargs)


def test_top_n_must_be_positive(reranker: Reranker) -> None:
    with pytest.raises(ValidationError, match="top_n must be a positive int or None, got 0"):
        CrossrankRerank(reranker=reranker, top_n=0)


# ------------------------------------------------------------------ reranking


def test_returns_the_core_ranking_as_new_nodes(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    before = snapshot(nodes)
    metadata_dicts = [n.node.metadata for n in nodes]

    reranked = CrossrankRerank(reranker=reranker, top_n=3).postprocess_nodes(nodes, query_str=query)

    assert ids_and_scores(reranked) == expected(reranker, query, nodes, top_n=3)
    assert all(type(n.score) is float for n in reranked)
    assert [n.score for n in reranked] == sorted((n.score for n in reranked), reverse=True)
    # the cross-encoder's top 3 are not BM25's top 3
    assert [n.node.node_id for n in reranked] != [n.node.node_id for n in nodes[:3]]
    # new NodeWithScore objects; the caller's objects, nodes and metadata dicts are untouched
    assert not any(r is n for r in reranked for n in nodes)
    assert snapshot(nodes) == before
    assert all(n.node.metadata is m for n, m in zip(nodes, metadata_dicts, strict=True))
    # without keep_retrieval_score nothing needs copying: the nodes themselves are shared
    by_id = {n.node.node_id: n.node for n in nodes}
    assert all(r.node is by_id[r.node.node_id] for r in reranked)


def test_scores_the_embed_text_of_each_node(reranker: Reranker) -> None:
    """MetadataMode.EMBED: metadata shown to embedding models is scored with the text, hidden keys are not."""
    node = TextNode(
        text="Adult fleas live two to three months; with a host and good conditions up to a year.",
        metadata={"title": "Flea life cycle", "internal_id": "kb-4711"},
        excluded_embed_metadata_keys=["internal_id"],
        excluded_llm_metadata_keys=["title"],
    )
    query = "how long do fleas live"
    texts = {mode: node.get_content(metadata_mode=mode) for mode in MetadataMode}
    assert len(set(texts.values())) == 4  # the four modes give four different texts...
    scores = reranker.score(query, list(texts.values()))
    assert min(abs(a - b) for i, a in enumerate(scores) for b in scores[:i]) > 1e-3  # ...scored differently

    [result] = CrossrankRerank(reranker=reranker).postprocess_nodes(
        [NodeWithScore(node=node)], query_str=query
    )
    assert result.score == reranker.score(query, [texts[MetadataMode.EMBED]])[0]
    assert result.score == pytest.approx(scores[list(texts).index(MetadataMode.EMBED)], abs=1e-4)


def test_keep_retrieval_score_copies_the_node(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    before = snapshot(nodes)
    by_id = {n.node.node_id: n for n in nodes}

    reranked = CrossrankRerank(reranker=reranker, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=query
    )

    assert ids_and_scores(reranked) == expected(reranker, query, nodes, top_n=3)
    for result in reranked:
        original = by_id[result.node.node_id]
        assert result.node is not original.node and result.node.metadata is not original.node.metadata
        assert result.node.metadata == {**original.node.metadata, "retrieval_score": original.score}
        assert result.node.relationships == original.node.relationships
        assert result.node.excluded_llm_metadata_keys == original.node.excluded_llm_metadata_keys
        assert result.node.text == original.node.text
    assert snapshot(nodes) == before
    assert all("retrieval_score" not in n.node.metadata for n in nodes)


def test_normalize_min_score_and_top_n_none(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    everything = expected(reranker, query, nodes, top_n=None)  # all 20, best first, raw logits

    normalized = CrossrankRerank(reranker=reranker, top_n=None, normalize=True).postprocess_nodes(
        nodes, query_str=query
    )
    assert [n.node.node_id for n in normalized] == [node_id for node_id, _ in everything]
    for result, (_, logit) in zip(normalized, everything, strict=True):
        assert result.score == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-9)

    # a cut between the 5th and 6th best logits keeps exactly 5, with no top_n limit
    cut = (everything[4][1] + everything[5][1]) / 2
    kept = CrossrankRerank(reranker=reranker, top_n=None, min_score=cut).postprocess_nodes(
        nodes, query_str=query
    )
    assert ids_and_scores(kept) == everything[:5]


def test_missing_query_bundle_is_a_value_error(reranker: Reranker, retrieved) -> None:
    _, nodes = retrieved
    postprocessor = CrossrankRerank(reranker=reranker)
    with pytest.raises(ValueError, match="Missing query bundle"):
        postprocessor.postprocess_nodes(nodes)
    with pytest.raises(ValueError, match="Missing query bundle"):
        asyncio.run(postprocessor.apostprocess_nodes(nodes))


def test_blank_query_is_rejected_by_the_core(reranker: Reranker, retrieved) -> None:
    _, nodes = retrieved
    with pytest.raises(EmptyQueryError):
        CrossrankRerank(reranker=reranker).postprocess_nodes(nodes, query_str="   ")


def test_empty_node_list(reranker: Reranker, collected_events: list) -> None:
    postprocessor = CrossrankRerank(reranker=reranker)
    assert postprocessor.postprocess_nodes([], query_str="anything") == []
    assert asyncio.run(postprocessor.apostprocess_nodes([], query_str="anything")) == []
    assert not [e for e in collected_events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]


# ------------------------------------------------------------------ async


def test_async_agrees_with_sync(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    postprocessor = CrossrankRerank(reranker=reranker, keep_retrieval_score=True)
    sync = postprocessor.postprocess_nodes(nodes, query_str=query)
    result = asyncio.run(postprocessor.apostprocess_nodes(nodes, query_bundle=QueryBundle(query)))
    assert ids_and_scores(result) == ids_and_scores(sync) == expected(reranker, query, nodes, top_n=3)
    assert [n.node.metadata for n in result] == [n.node.metadata for n in sync]
    assert all("retrieval_score" in n.node.metadata for n in result)


def test_many_concurrent_async_calls_agree_with_sync(reranker: Reranker, bm25_top20) -> None:
    postprocessor = CrossrankRerank(reranker=reranker, top_n=3)
    candidates = [(query, nodes[:6]) for query, nodes in bm25_top20]
    sync = [ids_and_scores(postprocessor.postprocess_nodes(nodes, query_str=q)) for q, nodes in candidates]
    assert len({tuple(s) for s in sync}) == len(sync)  # three different rankings

    async def run_all() -> list[list[NodeWithScore]]:
        calls = [
            postprocessor.apostprocess_nodes(nodes, query_str=q) for _ in range(3) for q, nodes in candidates
        ]
        return await asyncio.gather(*calls)

    results = asyncio.run(run_all())  # 9 calls on one shared Reranker at once
    assert [ids_and_scores(r) for r in results] == sync * 3


def test_async_does_not_block_the_event_loop(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    postprocessor = CrossrankRerank(reranker=reranker)

    async def main() -> tuple[list[NodeWithScore], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # let the ticker start
        ticks_before = ticks
        result = await postprocessor.apostprocess_nodes(nodes, query_str=query)
        done.set()
        await task
        return result, ticks - ticks_before

    result, ticks_while_scoring = asyncio.run(main())
    assert len(result) == 3
    assert ticks_while_scoring >= 5  # the loop kept running while 20 passages were scored


# ------------------------------------------------------------------ instrumentation


@pytest.mark.parametrize("run_async", [False, True], ids=["sync", "async"])
def test_emits_rerank_events(reranker: Reranker, retrieved, collected_events: list, run_async: bool) -> None:
    query, nodes = retrieved
    postprocessor = CrossrankRerank(reranker=reranker, top_n=2)
    bundle = QueryBundle(query)
    if run_async:
        reranked = asyncio.run(postprocessor.apostprocess_nodes(nodes, query_bundle=bundle))
    else:
        reranked = postprocessor.postprocess_nodes(nodes, query_bundle=bundle)

    events = [e for e in collected_events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]
    assert [type(e) for e in events] == [ReRankStartEvent, ReRankEndEvent]
    start, end = events
    assert start.query is bundle and start.nodes == nodes
    assert (start.top_n, start.model_name) == (2, reranker.model_name)
    assert end.nodes == reranked
    method = "_apostprocess_nodes" if run_async else "_postprocess_nodes"
    assert start.span_id.startswith(f"CrossrankRerank.{method}-") and end.span_id == start.span_id


def test_reports_to_the_callback_manager(reranker: Reranker, retrieved) -> None:
    query, nodes = retrieved
    debug = LlamaDebugHandler()
    postprocessor = CrossrankRerank(reranker=reranker, callback_manager=CallbackManager([debug]))
    reranked = postprocessor.postprocess_nodes(nodes, query_str=query)
    [(start, end)] = debug.get_event_pairs(CBEventType.RERANKING)
    assert start.payload[EventPayload.NODES] == nodes
    assert start.payload[EventPayload.QUERY_STR] == query
    assert end.payload[EventPayload.NODES] == reranked
