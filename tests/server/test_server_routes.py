"""The server's routes over :class:`FakeEngine`, in process (Starlette's TestClient): no uvicorn, no model.

What a client gets must be what ``Reranker.rank`` gives, bit for bit (the routes rank logits with
``Reranker.rank_logits``); every kind of error must be answered as the one table
(:data:`crossrank.server.errors.ANSWERS`) says, in the shape of the route's API; and the bodies
are the schema classes' own.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from crossrank import Reranker
from crossrank.errors import InvalidArgumentError, ScoringError
from crossrank.server import ServerConfig, create_app
from crossrank.server.batcher import ClientGone
from crossrank.server.errors import (
    ANSWERS,
    RERANK_RESPONSES,
    ApiError,
    ErrorKind,
    error_body,
    scoring_failure,
    shape_of,
)
from crossrank.testing import FakeEngine

QUERY = "how long do fleas live"
DOCS = [
    "tea and coffee",
    "fleas live a year with a host",
    "paris tower",
    "the flea life cycle",
    "fleas live",
    "dog and cat",
]


@pytest.fixture(scope="module")
def reranker() -> Reranker:
    return Reranker.from_backend(FakeEngine(fail_word="poison"), dedupe=0.9)


@pytest.fixture(scope="module")
def client(reranker: Reranker):
    config = ServerConfig(max_wait_ms=0, max_client_batch_size=8, payload_limit=4000, api_key="key")
    with TestClient(create_app(reranker, config), headers={"authorization": "Bearer key"}) as running:
        yield running


# --------------------------------------------------------------------------- what clients get


def test_tei_scores_are_rank_s_bit_for_bit(client: TestClient, reranker: Reranker) -> None:
    ranks = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True}).json()
    expected = reranker.rank(QUERY, DOCS, top_n=None, normalize=True)
    assert ranks == [{"index": hit.index, "score": hit.score, "text": hit.text} for hit in expected]
    raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "top_n": 2}).json()
    logits = reranker.rank(QUERY, DOCS, top_n=2)
    assert raw == [{"index": hit.index, "score": hit.score} for hit in logits]


@pytest.mark.parametrize(("path", "version"), [("/v1/rerank", "1"), ("/v2/rerank", "2"), ("/rerank", "1")])
def test_cohere_answer_is_built_from_rank(
    client: TestClient, reranker: Reranker, path: str, version: str
) -> None:
    body = {"query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True, "model": "m"}
    answer = client.post(path, json=body).json()
    expected = reranker.rank(QUERY, DOCS, top_n=3, normalize=True)
    assert answer["results"] == [
        {"index": hit.index, "relevance_score": hit.score, "document": {"text": hit.text}} for hit in expected
    ]
    assert answer["meta"]["api_version"] == {"version": version} and answer["model"] == "m"
    assert answer["usage"]["total_tokens"] == answer["meta"]["tokens"]["input_tokens"] > 0
    plain = client.post(path, json={"query": QUERY, "documents": DOCS}).json()
    assert all(set(result) == {"index", "relevance_score"} for result in plain["results"])
    assert plain["model"] == reranker.model_name and len(plain["results"]) == len(DOCS)


def test_fusion_shows_the_fused_score_in_the_fused_order(client: TestClient, reranker: Reranker) -> None:
    body = {"query": QUERY, "documents": DOCS, "fusion": "rrf", "dedupe": None}
    results = client.post("/v2/rerank", json=body).json()["results"]
    expected = reranker.rank(QUERY, DOCS, top_n=None, fusion="rrf", dedupe=None, normalize=True)
    assert [(r["index"], r["relevance_score"]) for r in results] == [
        (hit.index, hit.fused_score) for hit in expected
    ]


def test_the_served_dedupe_applies_to_cohere_unless_the_request_says(client: TestClient) -> None:
    texts = ["fleas live a year", "fleas live a year", "tea"]
    assert len(client.post("/v2/rerank", json={"query": QUERY, "documents": texts}).json()["results"]) == 2
    undone = client.post("/v2/rerank", json={"query": QUERY, "documents": texts, "dedupe": None})
    assert len(undone.json()["results"]) == 3
    # TEI answers one result per text (LlamaIndex's TEI postprocessor asserts it): dedupe only if asked.
    assert len(client.post("/rerank", json={"query": QUERY, "texts": texts}).json()) == 3
    assert len(client.post("/rerank", json={"query": QUERY, "texts": texts, "dedupe": 0.9}).json()) == 2


def test_return_documents_gives_back_the_documents_sent(client: TestClient, reranker: Reranker) -> None:
    documents = [
        {"title": "tea", "body": "and coffee", "id": 7, "text": 5, "tags": None},  # any keys, any values
        "fleas live a year",
        {"text": "flea", "id": 9},
    ]
    sent = json.loads(json.dumps(documents))
    body = {"query": QUERY, "documents": documents, "return_documents": True, "dedupe": None}
    fields = client.post(
        "/v2/rerank", json={**body, "rank_fields": ["title", "body"], "documents": documents[:1]}
    )
    assert fields.json()["results"][0]["document"] == documents[0]  # the object, not "title: tea\nbody: ..."
    texts = client.post("/v2/rerank", json={**body, "documents": documents[1:]}).json()["results"]
    assert {r["index"]: r["document"] for r in texts} == {0: {"text": "fleas live a year"}, 1: documents[2]}
    assert documents == sent


def test_the_query_is_checked_off_the_event_loop(client: TestClient, reranker: Reranker, monkeypatch) -> None:
    # Tokenising a megabyte-long query takes seconds: on the loop, it would stall every other request.
    where = []
    check = reranker.check_query

    def spy(query, **kwargs):
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("worker thread")
        return check(query, **kwargs)

    monkeypatch.setattr(reranker, "check_query", spy)
    assert client.post("/rerank", json={"query": QUERY, "texts": DOCS}).status_code == 200
    assert where == ["worker thread"]


def test_a_body_over_the_limit_without_content_length_is_a_413(client: TestClient) -> None:
    big = json.dumps({"query": QUERY, "texts": ["fleas " * 100] * 20}).encode()
    chunks = (big[i : i + 100] for i in range(0, len(big), 100))  # sent chunked: no Content-Length
    response = client.post("/v2/rerank", content=chunks, headers={"content-type": "application/json"})
    _answer(response, ErrorKind.TOO_LARGE, "cohere", "larger than the limit of 4000 bytes")
    broken = client.post("/rerank", content=b'{"query": "\xff', headers={"content-type": "application/json"})
    assert broken.status_code in (400, 422) and "detail" not in broken.json()


def test_truncation_choices_reach_the_encoder(client: TestClient, reranker: Reranker) -> None:
    long_text = "fleas " * 200 + "tea"
    left = client.post(
        "/rerank",
        json={"query": "tea", "texts": [long_text], "truncation_direction": "left", "raw_scores": True},
    ).json()
    (kept,) = reranker.encoder.fit("tea", [long_text], side="left")
    assert left[0]["score"] == reranker.score("tea", [kept])[0]
    capped = client.post(
        "/v2/rerank",
        json={"query": "tea", "documents": [long_text], "max_tokens_per_doc": 3, "raw_scores": True},
    ).json()
    assert capped["results"][0]["relevance_score"] == reranker.score("tea", ["fleas fleas fleas"])[0]


# --------------------------------------------------------------------- every kind of error, by the table


def _answer(response, kind: ErrorKind, shape: str, fragment: str) -> None:
    answer = ANSWERS[kind]
    assert response.status_code == answer.status(shape), response.text
    payload = response.json()
    if shape == "cohere":
        assert set(payload) == {"message"} and fragment in payload["message"]
        assert payload["message"].startswith(answer.cohere_prefix)
    elif shape == "tei":
        assert set(payload) == {"error", "error_type"} and fragment in payload["error"]
        assert payload["error_type"] == answer.error_type
    else:
        assert fragment in payload["message"] and payload["error_type"] == answer.error_type


@pytest.mark.parametrize(
    ("path", "body", "kind", "shape", "fragment"),
    [
        ("/rerank", {"query": "flea", "texts": []}, ErrorKind.EMPTY, "tei", "`texts` cannot be empty"),
        ("/v2/rerank", {"query": "flea", "documents": []}, ErrorKind.EMPTY, "cohere", "must not be empty"),
        ("/rerank", {"query": "flea", "texts": ["a"] * 9}, ErrorKind.INVALID, "tei", "batch size 9 >"),
        ("/v1/rerank", {"query": "flea", "documents": ["a"] * 9}, ErrorKind.INVALID, "cohere", "batch size"),
        ("/rerank", {"query": "\u200b", "texts": ["a"]}, ErrorKind.INVALID, "tei", "no tokens"),
        (
            "/rerank",
            {"query": "flea", "texts": ["flea " * 200], "truncate": False},
            ErrorKind.INVALID,
            "tei",
            "`inputs` must have less than 128 tokens. Given: 204 (texts[0])",
        ),
        (
            "/v2/rerank",
            {"query": "flea", "documents": [{"x": "a"}]},
            ErrorKind.INVALID,
            "cohere",
            "no field 'text'",
        ),
        ("/rerank", {"query": 3, "texts": ["a"]}, ErrorKind.UNREADABLE, "tei", "invalid request: query"),
        (
            "/v2/rerank",
            {"query": "f", "documents": ["a"], "top_n": 0},
            ErrorKind.UNREADABLE,
            "cohere",
            "top_n",
        ),
        ("/rerank", {"query": "f", "texts": ["a"], "dedupe": True}, ErrorKind.UNREADABLE, "tei", "got True"),
        ("/v2/rerank", b"{not json", ErrorKind.BAD_JSON, "cohere", "not valid JSON"),
        (
            "/rerank",
            {"query": "f", "texts": ["x" * 5000]},
            ErrorKind.TOO_LARGE,
            "both",
            "larger than the limit",
        ),
        (
            "/rerank",
            {"query": "flea", "texts": ["poison", "tea"]},
            ErrorKind.MODEL_FAILED,
            "tei",
            "non-finite",
        ),
        (
            "/v2/rerank",
            {"query": "flea", "documents": ["poison"]},
            ErrorKind.MODEL_FAILED,
            "cohere",
            "non-finite",
        ),
    ],
)
def test_each_error_is_answered_as_the_table_says(client, path, body, kind, shape, fragment) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    _answer(response, kind, shape, fragment)


def test_a_bad_key_is_refused_before_the_body_is_read(client: TestClient) -> None:
    response = client.post("/rerank", content=b"{bad", headers={"authorization": "Bearer nope"})
    _answer(response, ErrorKind.UNAUTHORIZED, "both", "Bearer")
    _answer(client.get("/info", headers={"authorization": ""}), ErrorKind.UNAUTHORIZED, "tei", "Bearer")


def test_without_a_scoring_loop_requests_are_refused_not_left_waiting(reranker: Reranker) -> None:
    client = TestClient(create_app(reranker, ServerConfig()))  # no `with`: the lifespan never starts it
    _answer(client.get("/health"), ErrorKind.UNHEALTHY, "tei", "not running")
    _answer(client.post("/rerank", json={"query": "flea", "texts": ["a"]}), ErrorKind.GONE, "tei", "dropped")


def test_an_engine_crash_is_a_backend_error_and_the_server_goes_on() -> None:
    class Crashing(FakeEngine):
        def logits(self, batch):
            if len(batch.input_ids) == 2:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().logits(batch)

    with TestClient(create_app(Reranker.from_backend(Crashing()), ServerConfig(max_wait_ms=0))) as client:
        crashed = client.post("/rerank", json={"query": "flea", "texts": ["a", "b"]})
        _answer(crashed, ErrorKind.BACKEND, "tei", "the model failed: RuntimeError")
        assert "CUDA" not in crashed.text  # the engine's own message stays in the log
        assert client.post("/rerank", json={"query": "flea", "texts": ["a"]}).status_code == 200


def test_every_status_a_rerank_route_can_answer_is_documented() -> None:
    documented = set(RERANK_RESPONSES)
    rerank_kinds = set(ErrorKind) - {ErrorKind.UNHEALTHY}  # /health's own
    assert {ANSWERS[kind].status(shape) for kind in rerank_kinds for shape in ("cohere", "tei")} <= documented
    assert set(ANSWERS) == set(ErrorKind)


def test_error_bodies_and_failures() -> None:
    error = ApiError(
        ErrorKind.EMPTY, "list of documents must not be empty", tei_message="`texts` cannot be empty"
    )
    assert error_body("cohere", error) == {"message": "invalid request: list of documents must not be empty"}
    assert error_body("tei", error) == {"error": "`texts` cannot be empty", "error_type": "Empty"}
    assert set(error_body("both", error)) == {"message", "error", "error_type"}
    assert scoring_failure(ClientGone()).kind is ErrorKind.GONE
    assert scoring_failure(ScoringError("NaN")).kind is ErrorKind.MODEL_FAILED
    assert scoring_failure(InvalidArgumentError("x")).kind is ErrorKind.BACKEND
    assert [shape_of(p) for p in ("/v2/rerank", "/v1/rerank", "/info", "/metrics")] == [
        "cohere",
        "both",
        "tei",
        "both",
    ]


# --------------------------------------------------------------------------- info and metrics


def test_info_and_the_queue_gauge(client: TestClient, reranker: Reranker) -> None:
    info = client.get("/info").json()
    assert info["max_input_length"] == reranker.max_length and info["max_client_batch_size"] == 8
    assert info["model_id"] == reranker.model_name and info["tokenization_workers"] == 1
    service = client.app.state.crossrank
    assert service.batcher.enabled and service.batcher.running
    assert service.metrics.registry.get_sample_value("crossrank_queue_pairs") == 0
    metrics = client.get("/metrics").text
    assert "crossrank_queue_pairs 0.0" in metrics and "crossrank_requests_total" in metrics


def test_the_queue_gauge_reads_the_queue_it_watches() -> None:
    from types import SimpleNamespace

    from crossrank.server.metrics import Metrics

    metrics, queue = Metrics(), SimpleNamespace(queued_pairs=0)
    metrics.watch_queue(queue)
    queue.queued_pairs = 7
    assert metrics.registry.get_sample_value("crossrank_queue_pairs") == 7
