"""Config-driven RAG apps against `crossrank serve`: each app's request, replayed from its source.

Open WebUI, Dify (both plugins), RAGFlow (both factories), R2R and Kotaemon can't run here (they
are Docker stacks), so each test reads the app's example configuration under ``examples/apps/``,
sends the exact request body that app's code sends to the URL it builds from that configuration,
and reads the answer the way that code does (``../shared/research/serving.md`` §1d-§2 gives the
source of each). The documents go in scrambled, so an index-mapping bug would show: every app must
end up with ``Reranker.rank``'s top 3. The LiteLLM proxy does run here: it is started as its own
process from its example ``config.yaml``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from crossrank import Reranker

APPS = Path(__file__).resolve().parents[2] / "examples" / "apps"
PLACEHOLDER = "localhost:8080"
pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def server(service):
    return service


@pytest.fixture(scope="module")
def docs(flea_chunks: list[str]) -> list[str]:
    return flea_chunks


@pytest.fixture(scope="module")
def top3(flea_top3: list[str]) -> list[str]:
    return flea_top3


@pytest.fixture(scope="module")
def query(flea_query: str) -> str:
    return flea_query


def _config_text(name: str, server) -> str:
    """An example file with its placeholder host pointed at the test server."""
    return (APPS / name).read_text(encoding="utf-8").replace(PLACEHOLDER, f"127.0.0.1:{server.port}")


def _best3(texts: list[str], scores: list[float]) -> list[str]:
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    return [texts[i] for i in order[:3]]


def test_open_webui(server, query, docs, top3) -> None:
    """backend/open_webui/retrieval/models/external.py: POST the full URL, sort results by index."""
    env = dict(
        line.split("=", 1)
        for line in _config_text("open-webui.env", server).splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env["RAG_RERANKING_ENGINE"] == "external" and env["ENABLE_RAG_HYBRID_SEARCH"] == "true"
    payload = {"model": env["RAG_RERANKING_MODEL"], "query": query, "documents": docs, "top_n": len(docs)}
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {env['RAG_EXTERNAL_RERANKER_API_KEY']}",
    }
    data = httpx.post(env["RAG_EXTERNAL_RERANKER_URL"], headers=headers, json=payload, timeout=60).json()
    scores = [result["relevance_score"] for result in sorted(data["results"], key=lambda x: x["index"])]
    assert len(scores) == len(docs) and all(0 <= score <= 1 for score in scores)  # its threshold is 0-1
    assert _best3(docs, scores) == top3
    threshold = float(env["RAG_RELEVANCE_THRESHOLD"])
    assert any(score >= threshold for score in scores)


def test_dify_openai_compatible(server, query, docs, top3) -> None:
    """Dify's OpenAI-API-compatible rerank: POST {endpoint_url}/rerank, results[].index/relevance_score."""
    settings = yaml.safe_load(_config_text("dify-openai-compatible.yaml", server))
    credentials = settings["credentials"]
    payload = {"model": credentials["endpoint_model_name"], "query": query, "documents": docs, "top_n": 3}
    headers = {"Authorization": f"Bearer {credentials['api_key']}", "Content-Type": "application/json"}
    response = httpx.post(
        f"{credentials['endpoint_url'].rstrip('/')}/rerank", headers=headers, json=payload, timeout=60
    )
    response.raise_for_status()
    results = response.json()["results"]
    assert [docs[result["index"]] for result in results] == top3
    assert all(isinstance(result["relevance_score"], float) for result in results)


def test_dify_text_embedding_inference(server, query, docs, top3) -> None:
    """Dify's TEI provider: GET /info (model_type's first key must be "reranker"), then POST /rerank."""
    credentials = yaml.safe_load(_config_text("dify-tei.yaml", server))["credentials"]
    base = credentials["server_url"].rstrip("/")
    headers = {"Authorization": f"Bearer {credentials['api_key']}"}
    info = httpx.get(f"{base}/info", headers=headers, timeout=10).json()
    assert next(iter(info["model_type"])) == "reranker"
    assert info["max_input_length"] > 0 and info["max_client_batch_size"] >= len(docs)
    results = httpx.post(
        f"{base}/rerank",
        headers=headers,
        json={"query": query, "texts": docs, "return_text": True},
        timeout=60,
    ).json()
    reranked = [(result["index"], result["text"], result["score"]) for result in results]
    assert all(docs[index] == text for index, text, _ in reranked)
    assert [text for _, text, _ in reranked[:3]] == top3


def test_ragflow_openai_api_compatible(server, query, docs, top3, fixture_reranker: Reranker) -> None:
    """RAGFlow's OpenAI-API-Compatible rerank: texts cut to 500 tokens, Cohere shape to base_url + /rerank."""
    settings = yaml.safe_load(_config_text("ragflow.yaml", server))["openai_api_compatible"]
    tokenizer = fixture_reranker.tokenizer
    texts = [tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids[:500]) for text in docs]
    payload = {"model": settings["model_name"], "query": query, "documents": texts, "top_n": len(texts)}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings['api_key']}"}
    res = httpx.post(f"{settings['base_url']}/rerank", headers=headers, json=payload, timeout=60).json()
    rank = [0.0] * len(texts)
    for result in res["results"]:
        rank[result["index"]] = result["relevance_score"]
    assert _best3(docs, rank) == top3


def test_ragflow_huggingface_tei(server, query, docs, top3) -> None:
    """RAGFlow's HuggingFace rerank: TEI shape to http://{base_url}/rerank, batches of 8, truncate on."""
    settings = yaml.safe_load(_config_text("ragflow.yaml", server))["huggingface"]
    scores = [0.0] * len(docs)
    for start in range(0, len(docs), 8):
        batch = docs[start : start + 8]
        body = {"query": query, "texts": batch, "raw_scores": False, "truncate": True}
        res = httpx.post(
            f"http://{settings['base_url']}/rerank",
            json=body,
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ).json()
        for o in res:
            scores[start + o["index"]] = o["score"]
    # Scored in separate calls, RAGFlow compares scores across batches: they must be on one scale.
    assert _best3(docs, scores) == top3


def test_ragflow_cohere_factory_with_the_v1_sdk(server, query, docs, top3) -> None:
    """RAGFlow's "Cohere" / "VLLM" factories: the v1 SDK, rerank(..., return_documents=False)."""
    import cohere

    client = cohere.Client(api_key=server.api_key, base_url=server.url)
    response = client.rerank(
        model="crossrank", query=query, documents=docs, top_n=len(docs), return_documents=False
    )
    scores = [0.0] * len(docs)
    for result in response.results:
        scores[result.index] = result.relevance_score
    assert _best3(docs, scores) == top3


def test_r2r(server, query, docs, top3) -> None:
    """R2R's litellm provider with huggingface/: POST rerank_url {query, texts, "model-id"}, keep [:limit]."""
    # The [embedding] table of r2r.toml: `key = "value"` lines (tomllib is Python 3.11+ only).
    embedding = dict(re.findall(r'^(\w+) = "([^"]*)"$', _config_text("r2r.toml", server), flags=re.M))
    model = embedding["rerank_model"].split("/", 1)[1]
    body = {"query": query, "texts": docs, "model-id": model}
    results = httpx.post(
        embedding["rerank_url"], json=body, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
    ).json()
    limit = 3
    assert [docs[result["index"]] for result in results[:limit]] == top3  # relies on the sort


def test_kotaemon(server, query, docs, top3) -> None:
    """Kotaemon's TeiFastReranking: POST endpoint_url {query, texts, is_truncated} in batches of 6."""
    source = _config_text("kotaemon.py", server)
    namespace: dict = {}
    exec(compile(source, "kotaemon.py", "exec"), namespace)  # the example flowsettings snippet
    spec = namespace["KH_RERANKINGS"]["crossrank"]["spec"]
    assert spec["__type__"] == "kotaemon.rerankings.TeiFastReranking"
    scores: list[float] = []
    for start in range(0, len(docs), 6):
        batch = [text[: spec["max_tokens"]] for text in docs[start : start + 6]]  # Kotaemon cuts characters
        body = {"query": query, "texts": batch, "is_truncated": spec["is_truncated"]}
        response = httpx.post(
            spec["endpoint_url"], json=body, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
        )
        batch_scores = [0.0] * len(batch)
        for item in response.json():
            batch_scores[item["index"]] = item["score"]
        scores += batch_scores
    assert _best3(docs, scores) == top3


def test_every_example_points_at_the_same_placeholder() -> None:
    """The examples are one deployment's configuration: all name the same crossrank server."""
    for file in APPS.rglob("*"):
        if file.is_file() and file.suffix != ".pyc":
            text = file.read_text(encoding="utf-8")
            assert PLACEHOLDER in text and not re.search(r"localhost:80(?!80)\d\d", text), file


# --------------------------------------------------------------------------- the LiteLLM proxy, for real

#: The proxy runs in an environment of its own (``litellm[proxy]`` pins an older huggingface_hub
#: than crossrank's stack), as it is deployed: ``bash scripts/test.sh`` makes ``.venv-litellm``.
LITELLM = Path(
    os.environ.get(
        "CROSSRANK_LITELLM_PROXY", Path(__file__).resolve().parents[2] / ".venv-litellm" / "bin" / "litellm"
    )
)
MASTER_KEY = "sk-crossrank-test-master-key-0123456789"


@pytest.fixture(scope="module")
def litellm_proxy(server, tmp_path_factory, ready):
    """The LiteLLM proxy started as a process from examples/apps/litellm/config.yaml, always stopped."""
    if not LITELLM.is_file():
        pytest.fail(
            f"the LiteLLM proxy is not installed at {LITELLM}: run `bash scripts/test.sh`, or "
            "`python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]'`"
        )
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        proxy_port = sock.getsockname()[1]
    config = tmp_path_factory.mktemp("litellm") / "config.yaml"
    config.write_text(_config_text("litellm/config.yaml", server), encoding="utf-8")
    env = os.environ | {
        "CROSSRANK_API_KEY": server.api_key,
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(proxy_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{proxy_port}"
    try:
        ready(process, f"{url}/health/liveliness")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.parametrize("model", ["crossrank", "crossrank-tei"])
def test_litellm_proxy_from_the_example_config(litellm_proxy, query, docs, top3, model) -> None:
    """An app calling the proxy's /rerank reaches crossrank (Cohere or TEI provider) and gets its top 3."""
    response = httpx.post(
        f"{litellm_proxy}/rerank",
        json={"model": model, "query": query, "documents": docs, "top_n": 3},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [docs[result["index"]] for result in results] == top3
    assert all(0 < result["relevance_score"] < 1 for result in results)
