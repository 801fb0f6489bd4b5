"""examples/pipeline.yaml loaded with Haystack's default allowlist: BM25 top 20 -> CrossrankRanker top 3.

The trained fixture model and TREC DL 2019 passages: the pipeline's top 3 must be crossrank's own
``Reranker.rank`` top 3 of the same 20 retrieved texts, with its scores.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from haystack import Document, Pipeline
from haystack.core.errors import DeserializationError
from haystack.core.serialization import DeserializationCallbacks
from haystack_integrations.components.rankers.crossrank import CrossrankRanker

from crossrank import Reranker

EXAMPLE_YAML = Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml"
RANKER_TYPE = "haystack_integrations.components.rankers.crossrank.ranker.CrossrankRanker"


@pytest.fixture
def default_allowlist(monkeypatch) -> None:
    """Nothing widens Haystack's deserialization allowlist in this test."""
    monkeypatch.delenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", raising=False)
    monkeypatch.delenv("HAYSTACK_UNSAFE_DESERIALIZATION", raising=False)


def corpus(dl19: list[dict]) -> list[Document]:
    """The BM25 top 40 passages of each query, once each, as an app would index them."""
    hits = {hit["docid"]: hit for row in dl19 for hit in row["hits"][:40]}
    return [
        Document(id=hit["docid"], content=hit["text"], meta={"docid": hit["docid"]}) for hit in hits.values()
    ]


def load_example(fixture_model_dir: Path, **loads: Any) -> Pipeline:
    """examples/pipeline.yaml as it is, the model swapped for the fixture (the hub is unreachable here)."""

    def use_fixture_model(name: str, cls: type, init_params: dict[str, Any]) -> None:
        if name == "ranker":
            assert init_params["model"] == "cross-encoder/ms-marco-MiniLM-L6-v2"  # what the file says
            init_params["model"] = str(fixture_model_dir)
            init_params["device"] = "cpu"

    return Pipeline.loads(
        EXAMPLE_YAML.read_text(encoding="utf-8"),
        callbacks=DeserializationCallbacks(component_pre_init=use_fixture_model),
        **loads,
    )


@pytest.mark.real_model
def test_example_yaml_ranks_the_bm25_top_20_as_the_core_does(
    default_allowlist, fixture_model_dir, fixture_reranker: Reranker, dl19
) -> None:
    pipeline = load_example(fixture_model_dir)  # no allowed_modules: the default allowlist
    ranker = pipeline.get_component("ranker")
    assert isinstance(ranker, CrossrankRanker) and ranker.top_k == 3 and ranker.normalize is True
    retriever = pipeline.get_component("retriever")
    assert retriever.top_k == 20
    retriever.document_store.write_documents(corpus(dl19))

    reordered = []
    for row in dl19:
        query = row["query"]
        result = pipeline.run(
            {"retriever": {"query": query}, "ranker": {"query": query}}, include_outputs_from={"retriever"}
        )
        retrieved = result["retriever"]["documents"]
        ranked = result["ranker"]["documents"]
        assert len(retrieved) == 20
        core = fixture_reranker.rank(query, [doc.content for doc in retrieved], top_n=3, normalize=True)
        assert [doc.id for doc in ranked] == [retrieved[hit.index].id for hit in core]
        assert [doc.score for doc in ranked] == pytest.approx([hit.score for hit in core], abs=1e-6)
        assert all(type(doc.score) is float for doc in ranked)
        reordered.append([doc.id for doc in ranked] != [doc.id for doc in retrieved[:3]])
        # The retriever's Documents keep their BM25 scores.
        assert [doc.score for doc in retrieved] == sorted((doc.score for doc in retrieved), reverse=True)
        assert all(doc.score != next(r.score for r in retrieved if r.id == doc.id) for doc in ranked)
    # The reranker changes BM25's order: otherwise this test could not tell the two apart.
    assert any(reordered)


@pytest.mark.real_model
def test_example_yaml_run_async(default_allowlist, fixture_model_dir, fixture_reranker, dl19) -> None:
    text = EXAMPLE_YAML.read_text(encoding="utf-8").replace(
        "cross-encoder/ms-marco-MiniLM-L6-v2", str(fixture_model_dir)
    )
    pipeline = Pipeline.loads(text)  # Haystack 3: run_async on Pipeline
    pipeline.get_component("retriever").document_store.write_documents(corpus(dl19))
    query = dl19[1]["query"]
    result = asyncio.run(
        pipeline.run_async(
            {"retriever": {"query": query}, "ranker": {"query": query}}, include_outputs_from={"retriever"}
        )
    )
    retrieved = result["retriever"]["documents"]
    core = fixture_reranker.rank(query, [doc.content for doc in retrieved], top_n=3, normalize=True)
    assert [doc.id for doc in result["ranker"]["documents"]] == [retrieved[hit.index].id for hit in core]
    assert [doc.score for doc in result["ranker"]["documents"]] == pytest.approx(
        [hit.score for hit in core], abs=1e-6
    )


def test_the_default_allowlist_is_in_force(default_allowlist) -> None:
    """The same YAML naming a class outside haystack_integrations.* is refused, so the tests above prove
    that the component loads under the default allowlist."""
    text = EXAMPLE_YAML.read_text(encoding="utf-8")
    assert RANKER_TYPE in text
    with pytest.raises(DeserializationError, match="crossrank"):
        Pipeline.loads(text.replace(RANKER_TYPE, "crossrank.reranker.Reranker"))
