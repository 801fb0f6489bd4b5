"""Framework clients of a rerank service, unchanged, against `crossrank serve`.

LangChain's ``CohereRerank(base_url=...)``, LlamaIndex's TEI postprocessor
(``llama-index-postprocessor-tei-rerank``) and Haystack's ``HuggingFaceTEIRanker`` loaded from the
example pipeline YAML: each gets ``Reranker.rank``'s top 3, from documents given in scrambled order
(so an index-mapping bug, like the one LlamaIndex's postprocessor had before 0.6, would show).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrank import Reranker

APPS = Path(__file__).resolve().parents[2] / "examples" / "apps"
pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def expected(fixture_reranker: Reranker, flea_query: str, flea_chunks: list[str]):
    return fixture_reranker.rank(flea_query, flea_chunks, top_n=3, normalize=True)


def _example(name: str):
    """A module of examples/apps/, imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, APPS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_langchain_cohere_rerank(service, flea_query, flea_chunks, expected) -> None:
    from langchain_core.documents import Document

    reranker = _example("langchain_cohere_rerank").build_reranker(service.url, service.api_key)
    ranked = reranker.compress_documents([Document(page_content=text) for text in flea_chunks], flea_query)
    assert [doc.page_content for doc in ranked] == [hit.text for hit in expected]
    scores = [doc.metadata["relevance_score"] for doc in ranked]
    assert scores == pytest.approx([hit.score for hit in expected], abs=1e-5)


def test_llamaindex_tei_postprocessor(service, flea_query, flea_chunks, expected) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    postprocessor = _example("llamaindex_tei_rerank").build_postprocessor(service.url, service.api_key)
    nodes = [NodeWithScore(node=TextNode(text=text), score=1.0) for text in flea_chunks]
    ranked = postprocessor.postprocess_nodes(nodes, query_str=flea_query)
    assert [node.node.get_content() for node in ranked] == [hit.text for hit in expected]
    assert [node.score for node in ranked] == pytest.approx([hit.score for hit in expected], abs=1e-5)


def test_haystack_pipeline_yaml_with_the_tei_ranker(
    service, flea_query, flea_chunks, fixture_reranker: Reranker, monkeypatch
) -> None:
    from haystack import Document, Pipeline

    monkeypatch.setenv("CROSSRANK_API_KEY", service.api_key)
    yaml_text = (
        (APPS / "haystack-tei.yaml")
        .read_text(encoding="utf-8")
        .replace("localhost:8080", f"127.0.0.1:{service.port}")
    )
    pipeline = Pipeline.loads(yaml_text)  # the default allowlist: no extra modules needed
    store = pipeline.get_component("retriever").document_store
    store.write_documents([Document(content=text) for text in flea_chunks])
    result = pipeline.run({"retriever": {"query": flea_query}, "ranker": {"query": flea_query}})
    ranked = result["ranker"]["documents"]
    retrieved = [doc.content for doc in store.bm25_retrieval(flea_query, top_k=20)]
    core = fixture_reranker.rank(flea_query, retrieved, top_n=3, normalize=True)
    assert [doc.content for doc in ranked] == [hit.text for hit in core]
    assert [doc.score for doc in ranked] == pytest.approx([hit.score for hit in core], abs=1e-5)
