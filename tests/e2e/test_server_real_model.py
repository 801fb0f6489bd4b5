"""`crossrank serve` over the trained fixture model: each API shape ranks as ``Reranker.rank`` does.

The ``api`` server runs twice (``app_runner``): on uvicorn, and on Ray Serve replicas of the same
app. Inputs are scrambled so that an index-mapping bug would show. The limit and fault tests over
the tiny model are in tests/server/test_server.py.
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from crossrank import Reranker
from crossrank.server import ServerConfig, create_app

QUERY = "how long does a flea live"
DOCS = [
    "The Eiffel Tower is in Paris.",
    "Adult fleas live two to three months, up to a year with a host.",
    "Bread dough rests before baking.",
    "The flea life cycle: egg, larva, pupa and adult.",
    "Tea and coffee both hold caffeine.",
    "Cats and dogs carry fleas.",
]


@pytest.fixture(scope="module")
def api(fixture_reranker: Reranker, app_runner):
    """The server over the trained fixture model, with the default settings (uvicorn, or Ray Serve)."""
    with app_runner.serve("fixture", fixture_reranker, ServerConfig()) as url:
        yield url


@pytest.mark.real_model
def test_tei_shape_sorted_sigmoid_with_index(api: str, fixture_reranker: Reranker) -> None:
    order = list(range(len(DOCS)))
    random.Random(7).shuffle(order)
    texts = [DOCS[i] for i in order]
    response = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": texts}, timeout=60)
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list) and [set(rank) for rank in ranks] == [{"index", "score"}] * len(texts)
    expected = fixture_reranker.rank(QUERY, texts, top_n=None, normalize=True)
    assert [rank["index"] for rank in ranks] == [hit.index for hit in expected]
    assert [rank["score"] for rank in ranks] == pytest.approx([hit.score for hit in expected], abs=1e-6)
    assert all(0 < rank["score"] < 1 for rank in ranks)
    for header in ("x-compute-time", "x-queue-time", "x-inference-time", "x-total-time", "x-compute-tokens"):
        assert header in response.headers
    assert int(response.headers["x-compute-tokens"]) > len(texts) * 5


@pytest.mark.real_model
def test_tei_raw_scores_and_return_text(api: str, fixture_reranker: Reranker) -> None:
    body = {"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True, "model-id": "ignored"}
    ranks = httpx.post(f"{api}/v1/rerank", json=body, timeout=60).json()  # /v1 + /rerank: same API
    logits = fixture_reranker.score(QUERY, DOCS)
    assert [rank["score"] for rank in ranks] == pytest.approx(sorted(logits, reverse=True), abs=1e-4)
    assert all(rank["text"] == DOCS[rank["index"]] for rank in ranks)
    assert min(rank["score"] for rank in ranks) < 0  # logits, not 0-1


@pytest.mark.real_model
@pytest.mark.parametrize("path", ["/v2/rerank", "/v1/rerank", "/rerank", "/v1/v2/rerank"])
def test_cohere_shape(api: str, fixture_reranker: Reranker, path: str) -> None:
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 3, "priority": 0}
    response = httpx.post(f"{api}{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload) >= {"id", "results", "meta"} and payload["model"] == "rerank-v3.5"
    assert payload["meta"]["api_version"]["version"] == ("2" if "v2" in path else "1")
    expected = fixture_reranker.rank(QUERY, DOCS, top_n=3, normalize=True)
    assert [r["index"] for r in payload["results"]] == [hit.index for hit in expected]
    assert all("document" not in r for r in payload["results"])  # omitted, never null, when not asked
    assert payload["usage"]["total_tokens"] == payload["meta"]["tokens"]["input_tokens"] > 0


@pytest.mark.real_model
def test_cohere_document_objects_and_rank_fields(api: str) -> None:
    documents = [{"title": f"doc {i}", "text": text, "id": str(i)} for i, text in enumerate(DOCS)]
    body = {"query": QUERY, "documents": documents, "return_documents": True, "top_n": 2}
    results = httpx.post(f"{api}/v1/rerank", json=body, timeout=60).json()["results"]
    # The documents as sent (the Cohere SDK: "it will return the documents passed in"): ids kept.
    assert [r["document"] for r in results] == [documents[r["index"]] for r in results]
    body = {
        "query": QUERY,
        "documents": documents,
        "rank_fields": ["title", "text"],
        "return_documents": True,
    }
    results = httpx.post(f"{api}/v2/rerank", json=body, timeout=60).json()["results"]
    # Ranked on "title: ...\ntext: ..." lines, but sent back as the object, not the lines.
    assert [r["document"] for r in results] == [documents[r["index"]] for r in results]
    titled = httpx.post(f"{api}/v2/rerank", json={**body, "return_documents": False}, timeout=60).json()
    plain = httpx.post(f"{api}/v2/rerank", json={**body, "rank_fields": ["text"]}, timeout=60).json()
    scores = [[r["relevance_score"] for r in answer["results"]] for answer in (titled, plain)]
    assert scores[0] != scores[1]  # ranked on title + text, not on text alone
    missing = httpx.post(f"{api}/v2/rerank", json={**body, "rank_fields": ["body"]}, timeout=60)
    assert missing.status_code == 400 and "no field 'body'" in missing.json()["message"]


@pytest.mark.real_model
def test_info_health_metrics(api: str, fixture_reranker: Reranker) -> None:
    info = httpx.get(f"{api}/info").json()
    assert next(iter(info["model_type"])) == "reranker"  # Dify's TEI plugin checks the first key
    assert info["max_input_length"] == fixture_reranker.max_length and info["max_client_batch_size"] == 1000
    assert httpx.get(f"{api}/health").status_code == 200 and httpx.get(f"{api}/v1/health").text == ""
    httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60)
    metrics = httpx.get(f"{api}/metrics").text
    for name in (
        'crossrank_requests_total{route="/rerank",status="200"}',
        "crossrank_pairs_scored_total",
        "crossrank_tokens_scored_total",
        "crossrank_batch_pairs_bucket",
        "crossrank_queue_seconds_count",
        "crossrank_inference_seconds_count",
    ):
        assert name in metrics, name
    pairs = float(
        next(
            line for line in metrics.splitlines() if line.startswith("crossrank_pairs_scored_total")
        ).split()[1]
    )
    assert pairs >= len(DOCS)


# --------------------------------------------------------------------------- batching


@pytest.mark.real_model
def test_concurrent_requests_each_score_as_alone(fixture_reranker: Reranker, served, dl19_top20) -> None:
    """Random concurrent mixes: every response equals its request scored alone (fp32: within 1e-5)."""
    rng = random.Random(19)
    config = ServerConfig(max_wait_ms=5)
    with served(create_app(fixture_reranker, config)) as server:
        for _ in range(3):
            rows = rng.sample(dl19_top20, 8)
            bodies = [
                {
                    "query": row["query"],
                    "texts": [h["text"] for h in rng.sample(row["hits"], rng.randint(1, 20))],
                }
                for row in rows
            ]

            async def all_at_once(bodies=bodies):
                async with httpx.AsyncClient(timeout=120) as client:
                    return await asyncio.gather(
                        *(client.post(f"{server.url}/rerank", json=b) for b in bodies)
                    )

            responses = asyncio.run(all_at_once())
            for body, response in zip(bodies, responses, strict=True):
                assert response.status_code == 200
                # The 0-1 scores clients read; raw logits (|x| up to ~10) differ by up to ~8e-6
                # with their batch-mates (benchmarks/batch_throughput.py), their sigmoid by a quarter of that.
                alone = fixture_reranker.score(body["query"], body["texts"], normalize=True)
                got = {rank["index"]: rank["score"] for rank in response.json()}
                assert max(abs(got[i] - alone[i]) for i in range(len(alone))) <= 1e-5
        metrics = httpx.get(f"{server.url}/metrics").text
    steps = float(
        next(line for line in metrics.splitlines() if line.startswith("crossrank_step_pairs_count")).split()[
            1
        ]
    )
    requests = 3 * 8
    assert steps < requests  # requests did share scoring steps
