"""Real clients no one here wrote, unchanged, against `crossrank serve`: they get `Reranker.rank`'s top 3.

* the official ``cohere`` SDK (``ClientV2(base_url=...)``, which POSTs ``/v2/rerank``);
* ``litellm.rerank`` with the ``cohere/`` provider (``/v1/rerank``) and the ``huggingface/``
  provider (TEI's ``/rerank``); LiteLLM's strict ``RerankResponse`` doubles as a schema check.
And the command itself: ``crossrank serve`` as a process, stopped with SIGTERM while requests are
in flight, answers them all before it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.real_model


def test_cohere_sdk(service, flea_query: str, flea_chunks: list[str], flea_top3: list[str]) -> None:
    import cohere

    client = cohere.ClientV2(api_key=service.api_key, base_url=service.url)
    response = client.rerank(model="crossrank", query=flea_query, documents=flea_chunks, top_n=3)
    assert [flea_chunks[result.index] for result in response.results] == flea_top3
    assert all(0 < result.relevance_score < 1 for result in response.results)
    with pytest.raises(cohere.errors.BadRequestError) as info:
        client.rerank(model="crossrank", query=flea_query, documents=[], request_options={"max_retries": 0})
    assert "must not be empty" in str(info.value.body)


@pytest.mark.parametrize("provider", ["cohere", "huggingface"])
def test_litellm_rerank(service, flea_query, flea_chunks, flea_top3, provider: str, monkeypatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the cost map from the internet
    import litellm

    response = litellm.rerank(
        model=f"{provider}/crossrank",
        query=flea_query,
        documents=flea_chunks,
        top_n=3,
        api_base=service.url,
        api_key=service.api_key,
    )
    assert [flea_chunks[result["index"]] for result in response.results] == flea_top3
    assert all(0 < result["relevance_score"] < 1 for result in response.results)


def test_serve_command_drains_in_flight_requests_on_sigterm(tiny_model_dir, port: int, ready) -> None:
    env = os.environ | {"CROSSRANK_SERVER_PORT": str(port), "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crossrank",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--max-batch-tokens",
            "512",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready(process, f"{url}/health")
        deadline = time.monotonic() + 60
        statuses: list[int] = []
        body = {"query": "flea", "texts": [f"fleas live a year with a host {i}" for i in range(1000)]}

        def call() -> None:
            statuses.append(httpx.post(f"{url}/rerank", json=body, timeout=120).status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        while "crossrank_requests_in_flight 4.0" not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline and not statuses, "the requests did not get in flight together"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)  # 4,000 pairs in flight: seconds of work left
        for thread in threads:
            thread.join(timeout=120)
        # uvicorn drains, then re-raises the signal so the exit status says what stopped it.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert statuses == [200] * 4  # every request in flight was answered before the exit
    finally:
        if process.poll() is None:
            process.kill()
