"""An LLM reranker (tiny Qwen3-Reranker) and a multilingual encoder (tiny XLM-RoBERTa, the
bge-reranker-v2-m3 architecture) through every face: the server (Cohere, TEI, /info), the three
framework packages, `crossrank rank` and `crossrank eval`; each face ranks as the Reranker does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank import Reranker, RerankerConfig
from crossrank.cli import app
from crossrank.families_testing import build_tiny_qwen3_reranker, build_tiny_xlm_roberta

QUERY = "how long does a flea live"
DOCS = [
    "fleas live two to three months, up to a year with a host",
    "the eiffel tower is in paris",
    "bread dough rests before baking",
    "the flea life cycle: egg, larva, pupa and adult",
]
BUILDERS = {
    "qwen3-reranker": (build_tiny_qwen3_reranker, "Qwen3-Reranker-tiny"),
    "cross-encoder": (build_tiny_xlm_roberta, "bge-reranker-v2-m3-tiny"),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def family_model(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    build, name = BUILDERS[request.param]
    return request.param, build(tmp_path_factory.mktemp("family") / name)


@pytest.fixture(scope="module")
def reranker(family_model) -> Reranker:
    return Reranker(family_model[1], backend="torch", device="cpu", top_n=2)


def _order(reranker: Reranker) -> list[int]:
    return [hit.index for hit in reranker.rank(QUERY, DOCS, top_n=2)]


def test_the_server_answers_and_says_the_family(family_model, reranker) -> None:
    from fastapi.testclient import TestClient

    from crossrank.server import create_app

    family, _ = family_model
    with TestClient(create_app(reranker)) as client:
        cohere = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2})
        tei = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True})
        info = client.get("/info").json()
    assert cohere.status_code == 200 and tei.status_code == 200
    assert [hit["index"] for hit in cohere.json()["results"]] == _order(reranker)
    scores = reranker.score(QUERY, DOCS)
    assert {hit["index"]: hit["score"] for hit in tei.json()} == pytest.approx(dict(enumerate(scores)))
    assert info["family"] == family and info["instruction"] is None


def test_the_framework_packages_rank_as_the_reranker(reranker) -> None:
    from haystack import Document as HaystackDocument
    from haystack_integrations.components.rankers.crossrank import CrossrankRanker
    from langchain_core.documents import Document
    from langchain_crossrank import CrossrankRerank
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.crossrank import CrossrankRerank as LlamaRerank

    want = [DOCS[i] for i in _order(reranker)]
    lc = CrossrankRerank(reranker=reranker, top_n=2).compress_documents(
        [Document(page_content=text) for text in DOCS], QUERY
    )
    li = LlamaRerank(reranker=reranker, top_n=2).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=text)) for text in DOCS], query_str=QUERY
    )
    ranker = CrossrankRanker(reranker=reranker, top_k=2)
    ranker.warm_up()
    hs = ranker.run(query=QUERY, documents=[HaystackDocument(content=text) for text in DOCS])["documents"]
    assert [d.page_content for d in lc] == [n.node.get_content() for n in li] == want
    assert [d.content for d in hs] == want


def test_the_command_line_ranks_and_evaluates(family_model, reranker, tmp_path) -> None:
    _, folder = family_model
    documents = tmp_path / "docs.txt"
    documents.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ranked = CliRunner().invoke(
        app, ["rank", str(documents), "-q", QUERY, "-m", str(folder), "--backend", "torch", "--json"]
    )
    assert ranked.exit_code == 0, ranked.output
    assert [hit["index"] for hit in json.loads(ranked.stdout)["results"][:2]] == _order(reranker)

    dataset = tmp_path / "trec"
    dataset.mkdir()
    (dataset / "qrels.txt").write_text("q1 0 a 3\nq1 0 b 0\n", encoding="utf-8")
    hits = [
        {"docid": docid, "text": text, "bm25_score": 1.0, "rank": rank}
        for rank, (docid, text) in enumerate(zip("abcd", DOCS, strict=True))
    ]
    (dataset / "bm25_top100.jsonl").write_text(json.dumps({"qid": "q1", "query": QUERY, "hits": hits}) + "\n")
    evaluated = CliRunner().invoke(
        app, ["eval", "-d", str(dataset), "-m", str(folder), "--backend", "torch", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics and all("crossrank" in row for row in metrics.values())


def test_an_instruction_reaches_the_prompt_from_the_config(family_model) -> None:
    family, folder = family_model
    config = RerankerConfig(model=str(folder), backend="torch", device="cpu", instruction="Find insect facts")
    if family == "cross-encoder":
        with pytest.raises(ValueError, match="instruction applies to LLM rerankers"):
            Reranker.from_config(config)
        return
    told = Reranker.from_config(config)
    default = Reranker(folder, backend="torch", device="cpu")
    assert told.instruction == "Find insect facts" and told.score(QUERY, DOCS) != default.score(QUERY, DOCS)
    ids = told.encoder.encode(QUERY, DOCS[:1]).first[0].ids
    prompt = told.tokenizer.decode(ids, skip_special_tokens=False)
    assert "<Instruct>: Find insect facts\n<Query>: how long does a flea live\n<Document>:" in prompt
