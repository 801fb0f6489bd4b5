"""`crossrank serve`: the Cohere, Jina and TEI rerank APIs over HTTP, tested on a real server.

Every test talks HTTP to uvicorn on 127.0.0.1 (a free port, stopped after the module). The tests of
the ``tiny_api`` server run on uvicorn and on Ray Serve replicas of the same app (``app_runner``,
``crossrank serve --ray``), which must answer the same, each on every engine of ``SERVING_ENGINES``.
The limit and fault tests use the tiny model, wrapped where a test needs a slow or failing engine.
The ranking tests over the trained fixture model are in tests/e2e/test_server_real_model.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest

from crossrank import Reranker
from crossrank.ray import RayConfig
from crossrank.server import ServerConfig, create_app
from crossrank.testing import SERVING_ENGINES, engine_id

QUERY = "how long does a flea live"


@pytest.fixture(scope="module", params=SERVING_ENGINES, ids=engine_id)
def tiny_api(request, tiny_model_dir, app_runner):
    """A server over the tiny model with small limits, to reach every limit quickly (on Ray: 2 replicas),
    on each engine of :data:`~crossrank.testing.SERVING_ENGINES`."""
    reranker = Reranker(tiny_model_dir, device="cpu", backend=request.param)
    config = ServerConfig(max_client_batch_size=50, payload_limit=20_000, max_batch_tokens=256)
    with app_runner.serve("tiny", reranker, config, RayConfig(replicas=2, num_cpus=0.5)) as url:
        yield url, reranker


# --------------------------------------------------------------------------- every error path


def _post(url: str, body, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.post(url, content=content, headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/rerank", {"query": "flea", "texts": []}, 400, "cannot be empty"),
        ("/v2/rerank", {"query": "flea", "documents": []}, 400, "must not be empty"),
        ("/rerank", {"query": " ", "texts": ["a"]}, 422, "no tokens"),
        ("/rerank", {"query": "\u200b", "texts": ["a"]}, 422, "no tokens"),
        ("/v2/rerank", {"query": "", "documents": ["a"]}, 400, "no tokens"),
        ("/rerank", {"query": 3, "texts": ["a"]}, 422, "query"),
        ("/rerank", {"query": "flea", "texts": "one text"}, 422, "texts"),
        ("/v2/rerank", {"query": "flea", "documents": [None]}, 400, "documents"),
        ("/v2/rerank", {"query": "flea", "documents": ["a"], "top_n": 0}, 400, "top_n"),
        ("/v2/rerank", {"documents": ["a"]}, 400, "query"),
        ("/v2/rerank", b"{not json", 400, "not valid JSON"),
        ("/rerank", b"[1, 2]", 422, "valid dictionary"),
        (
            "/rerank",
            {"query": "flea", "texts": ["a"] * 51},
            422,
            "batch size 51 > maximum allowed batch size 50",
        ),
        ("/v2/rerank", {"query": "flea", "documents": ["a"] * 51}, 400, "maximum allowed batch size 50"),
        ("/rerank", {"query": "flea", "texts": ["x" * 30_000]}, 413, "larger than the limit"),
    ],
)
def test_bad_requests_get_the_right_4xx_in_their_shape(tiny_api, path, body, status, fragment) -> None:
    url, _ = tiny_api
    response = _post(f"{url}{path}", body)
    assert response.status_code == status, response.text
    payload = response.json()
    if path == "/v2/rerank" or (isinstance(body, dict) and "documents" in body):
        assert fragment in payload["message"]
    elif status != 413 and isinstance(body, dict):
        assert fragment in payload["error"] and payload["error_type"] in {"Empty", "Validation"}
    else:
        assert fragment in json.dumps(payload)


def test_split_internally_not_rejected_at_32(tiny_api) -> None:
    """50 documents in one request (TEI's default cap is 32): split over several steps, all scored."""
    url, reranker = tiny_api
    texts = [f"fleas live {'a year ' * (i % 7)}with a host {i}" for i in range(50)]
    ranks = _post(f"{url}/rerank", {"query": QUERY, "texts": texts, "raw_scores": True}).json()
    logits = reranker.score(QUERY, texts)
    assert sorted(rank["index"] for rank in ranks) == list(range(50))
    assert max(abs(rank["score"] - logits[rank["index"]]) for rank in ranks) <= 1e-5


def test_truncation_choices(tiny_api) -> None:
    url, reranker = tiny_api
    long_text = "flea " * 300 + "tea"  # far over the tiny model's 128 tokens
    cut = _post(f"{url}/rerank", {"query": "tea", "texts": [long_text], "raw_scores": True})
    assert cut.status_code == 200 and cut.json()[0]["score"] == pytest.approx(
        reranker.score("tea", [long_text])[0], abs=1e-5
    )
    refused = _post(f"{url}/rerank", {"query": "tea", "texts": [long_text], "truncate": False})
    assert refused.status_code == 422 and "must have less than 128 tokens" in refused.json()["error"]
    left = _post(
        f"{url}/rerank",
        {
            "query": "tea",
            "texts": [long_text],
            "truncate": True,
            "truncation_direction": "Left",
            "raw_scores": True,
        },
    )
    right = _post(
        f"{url}/rerank", {"query": "tea", "texts": [long_text], "truncate": True, "raw_scores": True}
    )
    assert left.json()[0]["score"] != right.json()[0]["score"]  # the end, holding "tea", was kept
    capped = _post(
        f"{url}/v2/rerank",
        {"query": "tea", "documents": [long_text], "max_tokens_per_doc": 5, "raw_scores": True},
    )
    assert capped.json()["results"][0]["relevance_score"] == pytest.approx(
        reranker.score("tea", ["flea flea flea flea flea"])[0], abs=1e-5
    )


class _Gate:
    """An engine wrapper: each forward pass waits for the gate; a pair holding ``poison`` gives NaN."""

    def __init__(self, inner, poison_id: int | None = None) -> None:
        self.inner, self.poison_id = inner, poison_id
        self.open = threading.Event()
        self.open.set()
        self.rows = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, batch):
        self.open.wait(timeout=30)
        self.rows += len(batch.positions)
        logits = self.inner.logits(batch)
        if self.poison_id is not None:
            logits[(batch.input_ids == self.poison_id).any(axis=1)] = np.nan
        return logits


def test_auth_overload_and_model_failure(tiny_model_dir, served) -> None:
    base = Reranker(tiny_model_dir, device="cpu")
    engine = _Gate(base.engine, poison_id=base.encoder.tokenizer.token_to_id("paris"))
    reranker = Reranker.from_backend(engine)
    config = ServerConfig(api_key="s3cret", max_concurrent_requests=2, max_wait_ms=0)
    with served(create_app(reranker, config)) as server:
        url, auth = server.url, {"authorization": "Bearer s3cret"}
        body = {"query": "flea", "texts": ["fleas live a year", "tea"]}
        unauthorised = _post(f"{url}/rerank", body)
        assert unauthorised.status_code == 401 and "Bearer" in unauthorised.json()["message"]
        assert (
            httpx.post(f"{url}/rerank", content=b"{bad", headers={"authorization": "Bearer nope"}).status_code
            == 401
        )
        assert (
            httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/metrics").status_code == 200
        )
        assert (
            httpx.get(f"{url}/info").status_code == 401
            and httpx.get(f"{url}/info", headers=auth).status_code == 200
        )
        assert _post(f"{url}/rerank", body, headers=auth).status_code == 200
        # NaN from the model: that request fails with 424 (TEI) / 503 (Cohere), the others still score.
        poisoned = _post(f"{url}/rerank", {"query": "flea", "texts": ["paris", "tea"]}, headers=auth)
        assert poisoned.status_code == 424 and poisoned.json()["error_type"] == "Backend"
        assert (
            _post(f"{url}/v2/rerank", {"query": "flea", "documents": ["paris"]}, headers=auth).status_code
            == 503
        )
        assert _post(f"{url}/rerank", body, headers=auth).status_code == 200
        # Two requests held at the gate fill the cap: a third gets 429 with Retry-After.
        engine.open.clear()
        results: list[int] = []

        def held() -> None:
            results.append(_post(f"{url}/rerank", body, headers=auth).status_code)

        threads = [threading.Thread(target=held) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            if "crossrank_requests_in_flight 2.0" in metrics:
                break
            time.sleep(0.02)
        third = _post(f"{url}/rerank", body, headers=auth)
        engine.open.set()
        for thread in threads:
            thread.join(timeout=30)
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert third.json()["error_type"] == "Overloaded"
        assert results == [200, 200]


def test_a_request_whose_client_went_away_is_dropped(tiny_model_dir, served) -> None:
    base = Reranker(tiny_model_dir, device="cpu")
    engine = _Gate(base.engine)
    reranker = Reranker.from_backend(engine)
    # One step in flight, so the second request waits in the queue (with 2, it would be in a step).
    with served(create_app(reranker, ServerConfig(max_wait_ms=0, pipeline=1))) as server:
        engine.open.clear()
        first = threading.Thread(
            target=_post, args=(f"{server.url}/rerank", {"query": "flea", "texts": ["a"]})
        )
        first.start()  # held in a forward pass at the gate
        time.sleep(0.3)

        async def give_up() -> None:
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.TimeoutException):
                    await client.post(
                        f"{server.url}/rerank", json={"query": "flea", "texts": ["b"] * 7}, timeout=0.5
                    )

        asyncio.run(give_up())  # queued behind the first, then its client disconnects
        rows_before = engine.rows
        engine.open.set()
        first.join(timeout=30)
        deadline = time.monotonic() + 30  # the batcher reaches the abandoned request next
        while "crossrank_requests_dropped_total 1.0" not in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "the abandoned request was never dropped"
            time.sleep(0.05)
        assert engine.rows == rows_before + 1  # only the first request's pair was scored


# --------------------------------------------------------------------------- batching


def test_int8_requests_score_exactly_as_alone(tiny_model_dir, served, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path))
    reranker = Reranker(tiny_model_dir, backend="onnx", quantize="int8")
    bodies = [
        {"query": q, "texts": [f"{q} {w}" for w in ("flea", "tea", "sky", "dog cat")], "raw_scores": True}
        for q in ("flea", "tea", "paris", "sun")
    ]
    # batching on explicitly (int8 defaults to off): the merge path must keep requests apart
    with served(create_app(reranker, ServerConfig(max_wait_ms=20, batching=True))) as server:

        async def all_at_once():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(f"{server.url}/rerank", json=b) for b in bodies))

        for body, response in zip(bodies, asyncio.run(all_at_once()), strict=True):
            alone = reranker.score(body["query"], body["texts"])
            assert {r["index"]: r["score"] for r in response.json()} == dict(enumerate(alone))


def test_lone_surrogates_are_scored_and_echoed_not_a_5xx(tiny_api) -> None:
    """A cut emoji from JavaScript-made JSON ("\\ud83d" alone) is valid JSON: scored, sent back as it came."""
    url, reranker = tiny_api
    raw = b'{"query": "flea \\ud83d", "texts": ["fleas \\ud83d live", "tea"], '
    raw += b'"return_text": true, "raw_scores": true}'
    response = _post(f"{url}/rerank", raw)
    assert response.status_code == 200, response.text
    ranks = response.json()
    texts = json.loads(raw)["texts"]
    assert sorted(rank["text"] for rank in ranks) == sorted(texts)  # the broken text, unchanged
    expected = reranker.score(json.loads(raw)["query"], texts)
    assert {rank["index"]: rank["score"] for rank in ranks} == pytest.approx(
        dict(enumerate(expected)), abs=1e-5
    )
    documents = _post(
        f"{url}/v2/rerank", b'{"query": "flea", "documents": ["a \\udc00"], "return_documents": true}'
    )
    assert documents.status_code == 200 and documents.json()["results"][0]["document"]["text"] == "a \udc00"


def test_an_engine_crash_is_a_503_and_the_server_keeps_serving(tiny_model_dir, served) -> None:
    class Crashing(_Gate):
        def logits(self, batch):
            if (batch.input_ids == self.poison_id).any():
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return self.inner.logits(batch)

    base = Reranker(tiny_model_dir, device="cpu")
    reranker = Reranker.from_backend(
        Crashing(base.engine, poison_id=base.encoder.tokenizer.token_to_id("paris"))
    )
    with served(create_app(reranker, ServerConfig())) as server:
        crashed = _post(f"{server.url}/rerank", {"query": "flea", "texts": ["paris"]})
        assert crashed.status_code == 503 and crashed.json()["error_type"] == "Backend"
        assert "RuntimeError" in crashed.json()["error"]
        assert _post(f"{server.url}/rerank", {"query": "flea", "texts": ["tea"]}).status_code == 200
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_blank_texts_rank_last_in_both_shapes(tiny_api) -> None:
    url, _ = tiny_api
    texts = ["", "fleas live a year", "  ", "tea"]
    ranks = _post(f"{url}/rerank", {"query": "flea", "texts": texts, "raw_scores": True}).json()
    assert {rank["index"] for rank in ranks[-2:]} == {0, 2}
    results = _post(f"{url}/v2/rerank", {"query": "flea", "documents": texts, "top_n": 2}).json()["results"]
    assert {result["index"] for result in results} == {1, 3}


def test_batching_defaults_to_what_the_engine_can_use(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """On for engines whose batches may mix requests (static int8 too); off for dynamic int8."""
    from crossrank.server.app import batching_enabled

    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path))
    torch_reranker = Reranker(tiny_model_dir, device="cpu")
    int8 = Reranker(tiny_model_dir, backend="onnx", quantize="int8")
    assert batching_enabled(torch_reranker, ServerConfig()) is True
    assert batching_enabled(int8, ServerConfig()) is False
    assert batching_enabled(int8, ServerConfig(batching=True)) is True
    assert batching_enabled(torch_reranker, ServerConfig(batching=False)) is False
    assert create_app(int8, ServerConfig()).state.crossrank.batcher.enabled is False
    static = Reranker(tiny_model_dir, backend="onnx", quantize="int8-static")
    assert batching_enabled(static, ServerConfig()) is True
