"""Shared fixtures: a tiny random cross-encoder built in seconds, and the trained fixture model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROSSRANK_SHARED", REPO_ROOT.parent / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19 = SHARED / "data" / "trec-dl-2019-passage"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random one-logit BERT cross-encoder (max 128 tokens)."""
    from crossrank.testing import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def tiny_two_label_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_model_dir`` but with two output labels (an NLI-style classifier)."""
    from crossrank.testing import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-two-label"), num_labels=2)


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_dir: Path):
    """One Reranker over the tiny model, shared by the tests that only read from it."""
    from crossrank import Reranker

    return Reranker(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (data and the trained fixture model)."""
    return SHARED


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    """The trained cross-encoder in ../shared (fails loudly if shared/ is missing: never skipped)."""
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"trained fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to shared/")
    return FIXTURE_MODEL


@pytest.fixture(scope="session")
def fixture_reranker(fixture_model_dir: Path):
    from crossrank import Reranker

    return Reranker(fixture_model_dir, device="cpu")


@pytest.fixture(scope="session")
def dl19_top20() -> list[dict]:
    """The 43 TREC DL 2019 queries with their BM25 top-20 passages: [{qid, query, hits: [...]}]."""
    import json

    path = DL19 / "bm25_top100.jsonl"
    if not path.is_file():
        pytest.fail(f"TREC DL 2019 data not found at {path}; set CROSSRANK_SHARED to shared/")
    with path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    for row in rows:
        row["hits"] = row["hits"][:20]
    return rows


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread; always stopped on exit."""

    def __init__(self, app, *, timeout_s: float = 30.0) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.timeout_s = timeout_s

    def __enter__(self) -> ServedApp:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the test server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout_s)


@pytest.fixture(scope="session")
def served():
    """Serve an app for the length of a ``with`` block: ``with served(app) as server: server.url``."""
    return ServedApp


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


# --------------------------------------------------------------------------- clients of the rerank service

#: The bearer token of the service the client tests talk to (what examples/apps/ configure).
SERVICE_API_KEY = "change-me"
_FLEA_CHUNKS = [
    "The Eiffel Tower is in Paris.",
    "Cats and dogs carry fleas.",
    "Adult fleas live two to three months, up to a year with a host.",
    "Bread dough rests before baking.",
    "The flea life cycle: egg, larva, pupa and adult.",
    "Tea and coffee both hold caffeine.",
    "Fleas can jump 150 times their own length.",
    "The sun is a star.",
    "A flea's lifespan depends on temperature and humidity.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="session")
def flea_query() -> str:
    return "how long does a flea live"


@pytest.fixture(scope="session")
def flea_chunks() -> list[str]:
    """Candidate chunks in a scrambled order, so that a client's index-mapping bug would show."""
    import random

    chunks = _FLEA_CHUNKS[:]
    random.Random(14).shuffle(chunks)
    return chunks


@pytest.fixture(scope="session")
def flea_top3(fixture_reranker, flea_query: str, flea_chunks: list[str]) -> list[str]:
    """What every client must end up with: ``Reranker.rank``'s top 3 texts."""
    return [hit.text for hit in fixture_reranker.rank(flea_query, flea_chunks, top_n=3)]


@pytest.fixture(scope="module")
def service(fixture_reranker, served):
    """``crossrank serve`` over the trained fixture, with the API key the example configs name."""
    from crossrank.server import ServerConfig, create_app

    with served(create_app(fixture_reranker, ServerConfig(api_key=SERVICE_API_KEY))) as running:
        running.api_key = SERVICE_API_KEY
        yield running


def wait_until_ready(process, url: str, timeout_s: float = 120.0) -> None:
    """Wait until ``url`` answers 200, or fail with the process's output if it exits or times out."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"{url} did not come up:\n{output[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def ready():
    """``ready(process, url)``: block until a started service answers, or fail with its output."""
    return wait_until_ready


# --------------------------------------------------------------------------- Ray (crossrank[ray])

#: CPUs of the local Ray the tests start (the CI machine has 2).
RAY_TEST_CPUS = 2


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray on 127.0.0.1 for the whole session (2 CPUs, no dashboard), always shut down.

    Token authentication is off: the cluster is the test process's own, on loopback.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_SERVE_HTTP_HOST", "127.0.0.1")
    import ray

    ray.init(
        address="local",
        num_cpus=RAY_TEST_CPUS,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def ray_serve(ray_local):
    """Ray Serve's HTTP proxy on 127.0.0.1 and a free port; ``ray_serve.deploy(...)`` runs an app.

    ``deploy(name, reranker_config, server_config, ray_config)`` serves the crossrank app under
    ``/name`` and returns its base URL (the app's routes under it, as at a server's root).
    """
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    class Deployer:
        url = f"http://127.0.0.1:{port}"

        @staticmethod
        def deploy(name: str, reranker_config, server_config, ray_config) -> str:
            from crossrank.ray.serving import build_app

            app = build_app(reranker_config, server_config, ray_config)
            serve.run(app, name=name, route_prefix=f"/{name}", blocking=False)  # waits until running
            return f"{Deployer.url}/{name}"

        @staticmethod
        def delete(name: str) -> None:
            serve.delete(name)

    return Deployer


@pytest.fixture(params=["uvicorn", "ray-serve"], scope="session")
def app_runner(request):
    """How a server test starts the crossrank app: uvicorn in-process, or Ray Serve replicas.

    ``with app_runner.serve(name, reranker, server_config, ray_config=None) as url`` yields the base
    URL. The Ray variant builds its replicas' Reranker from ``reranker.to_config()`` (the same model
    and settings) and serves the same ``create_app``; it needs an engine loaded from a model, not a
    wrapper, so tests of wrapped engines stay on uvicorn.
    """
    import contextlib

    kind = request.param

    class Runner:
        name = kind

        @staticmethod
        @contextlib.contextmanager
        def serve(name, reranker, server_config, ray_config=None):
            if kind == "uvicorn":
                from crossrank.server import create_app

                with ServedApp(create_app(reranker, server_config)) as running:
                    yield running.url
                return
            from crossrank.ray import RayConfig

            deployer = request.getfixturevalue("ray_serve")
            config = reranker.to_config()
            try:
                yield deployer.deploy(name, config, server_config, ray_config or RayConfig(num_cpus=0.5))
            finally:
                deployer.delete(name)

    return Runner
