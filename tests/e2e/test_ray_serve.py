"""`crossrank serve --ray`: the server app as Ray Serve replicas, its settings and backpressure.

The HTTP API itself is tested by tests/server/test_server.py, whose server tests also run on Ray Serve
(``app_runner``). Here: RayConfig, Serve's backpressure (429 with Retry-After) and the command.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from crossrank import Reranker, RerankerConfig
from crossrank.ray import RayConfig
from crossrank.server import ServerConfig

REPO = Path(__file__).resolve().parents[2]


def test_ray_config_gives_serve_its_deployment_options(tmp_path: Path, monkeypatch) -> None:
    fixed = RayConfig(replicas=3, num_cpus=0.5, max_queued_requests=10, backpressure_status=503)
    options = fixed.deployment_options()
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    assert options["max_queued_requests"] == 10 and options["max_ongoing_requests"] == 64
    scaling = RayConfig(min_replicas=0, max_replicas=4, num_gpus=1).deployment_options()
    assert "num_replicas" not in scaling and scaling["autoscaling_config"]["max_replicas"] == 4
    assert scaling["autoscaling_config"]["initial_replicas"] == 1
    with pytest.raises(ValidationError, match="give both or neither"):
        RayConfig(max_replicas=2)
    with pytest.raises(ValidationError, match="exceeds max_replicas"):
        RayConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValidationError, match="backpressure_status"):
        RayConfig(backpressure_status=500)
    path = tmp_path / "crossrank.yaml"
    path.write_text("reranker:\n  model: m\nray:\n  replicas: 4\n  num_cpus: 2\n")
    monkeypatch.setenv("CROSSRANK_RAY_NUM_CPUS", "0.5")
    from_file = RayConfig.from_yaml(path)
    assert (from_file.replicas, from_file.num_cpus) == (4, 0.5)  # the environment wins over the file
    assert RayConfig.from_yaml(path, replicas=2).replicas == 2


def test_ray_config_docstring_examples_run() -> None:
    import doctest

    import crossrank.ray.config

    outcome = doctest.testmod(crossrank.ray.config, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted >= 3 and outcome.failed == 0


def test_replica_health_check_reads_the_app_it_built() -> None:
    """Serve's health check asks the replica's own app (no Ray internals): unhealthy without its loop."""
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from crossrank.ray.serving import RerankReplica
    from crossrank.testing import FakeEngine

    replica = SimpleNamespace(
        reranker=Reranker.from_backend(FakeEngine()),
        server_config=ServerConfig(batching=True),
        server_app=None,
    )
    RerankReplica.check_health(replica)  # before Serve has asked for the app
    app = RerankReplica.__serve_build_asgi_app__(replica)
    assert replica.server_app is app
    with pytest.raises(RuntimeError, match="scoring loop is not running"):
        RerankReplica.check_health(replica)  # the app's lifespan has not started its batcher
    with TestClient(app):
        RerankReplica.check_health(replica)


def test_serve_backpressure_answers_429_with_retry_after(ray_serve, tiny_model_dir: Path) -> None:
    """One request at a time per replica, one waiting: the rest are refused, not queued forever."""
    ray_config = RayConfig(
        num_cpus=0.5, max_ongoing_requests=1, max_queued_requests=1, backpressure_status=429, retry_after_s=2
    )
    url = ray_serve.deploy(
        "pressure", RerankerConfig(model=str(tiny_model_dir), device="cpu"), ServerConfig(), ray_config
    )
    try:
        texts = [f"fleas live up to a year with a host, number {i}" for i in range(800)]

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(
                    *(client.post(f"{url}/rerank", json={"query": "flea", "texts": texts}) for _ in range(6))
                )

        responses = asyncio.run(burst())
        statuses = sorted(response.status_code for response in responses)
        assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
        assert set(statuses) <= {200, 429}
        refused = next(response for response in responses if response.status_code == 429)
        assert refused.headers["retry-after"] == "2"
        answered = next(response for response in responses if response.status_code == 200)
        assert sorted(rank["index"] for rank in answered.json()) == list(range(800))
    finally:
        ray_serve.delete("pressure")


def test_crossrank_serve_ray_command(tiny_model_dir: Path, tiny_reranker: Reranker, port: int) -> None:
    """The README's command: two replicas on a local Ray, the same answers, Ctrl-C stops it cleanly."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_AUTH_MODE": "disabled"}
    command = [
        sys.executable, "-m", "crossrank", "serve", "--ray", "--replicas", "2", "--num-cpus", "0.5",
        "--local-cpus", "2", "--model", str(tiny_model_dir), "--device", "cpu", "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops" not in " ".join("".join(lines).split()):  # the banner: deployed, waiting
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        texts = ["fleas live a year", "tea", "", "fleas jump"]
        body = {"query": "flea", "texts": texts, "raw_scores": True}
        ranks = httpx.post(f"http://127.0.0.1:{port}/rerank", json=body, timeout=60).json()
        expected = tiny_reranker.score("flea", texts)
        got = {rank["index"]: rank["score"] for rank in ranks}
        assert got == pytest.approx(dict(enumerate(expected)), abs=1e-5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    output = " ".join("".join(lines).split())
    assert process.returncode == 0, output[-3000:]
    assert "2 replica(s)" in output
