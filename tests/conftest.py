"""Fixtures for every tier, and the rules of the layout: tests/ is laid out by risk.

- ``tests/unit/``: no model file from ../shared (the ``FakeEngine`` of :mod:`crossrank.testing`,
  or the tiny random BERT that ``tiny_model_dir`` builds in seconds).
- ``tests/server/``: the HTTP server and its batcher, on the tiny model or the fake engine.
- ``tests/e2e/``: the trained fixture model and the datasets in ../shared, Ray, the apps. Its
  fixtures live in tests/e2e/conftest.py, and every test there is marked ``real_model``
  (``-m "not real_model"`` runs the fast tiers only).

A test outside tests/e2e that asks for an end-to-end fixture fails, saying where it belongs. Ray
keeps its session folders in a temporary folder of the test run, removed when the run ends.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
E2E = TESTS / "e2e"
BENCHMARKS = TESTS.parent / "benchmarks"


def _e2e_fixtures() -> frozenset[str]:
    """The names of the fixtures tests/e2e/conftest.py defines (read, not imported)."""
    tree = ast.parse((E2E / "conftest.py").read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list)
    )


E2E_FIXTURES = _e2e_fixtures()


def _in_e2e(item: pytest.Item) -> bool:
    return item.path.is_relative_to(E2E)


#: Ray's temporary folder for this run, and what RAY_TMPDIR was before it.
_RAY_TMPDIR = pytest.StashKey[tuple[str, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    """Point Ray (here and in every subprocess) at a folder of this run, not /tmp/ray."""
    previous = os.environ.get("RAY_TMPDIR")
    folder = tempfile.mkdtemp(prefix="crossrank-ray-", dir=previous)
    config.stash[_RAY_TMPDIR] = (folder, previous)
    os.environ["RAY_TMPDIR"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove Ray's session folders with the run's folder (Ray was shut down by its fixtures)."""
    if _RAY_TMPDIR not in config.stash:
        return
    folder, previous = config.stash[_RAY_TMPDIR]
    if previous is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = previous
    shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is ``real_model`` (before ``-m`` selects)."""
    for item in items:
        if _in_e2e(item) and item.get_closest_marker("real_model") is None:
            item.add_marker(pytest.mark.real_model)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test outside tests/e2e may not use ../shared: fail it, before any fixture runs."""
    if _in_e2e(item):
        return
    wanted = sorted(E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if wanted:
        where = item.path.relative_to(TESTS.parent)
        pytest.fail(
            f"{item.nodeid} asks for {', '.join(wanted)}: fixtures of ../shared (the trained model, the "
            f"datasets) are for tests under tests/e2e only; move the test out of {where} into tests/e2e/, "
            "or use tiny_model_dir or crossrank.testing.FakeEngine",
            pytrace=False,
        )


# --------------------------------------------------------------------------- models that need no ../shared


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


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub (connection refused) and an empty HF cache: what a fresh machine here looks like."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("CROSSRANK_MODEL", raising=False)
    monkeypatch.delenv("CROSSRANK_DEMO_FALLBACK_MODEL", raising=False)
    monkeypatch.delenv("CROSSRANK_TOP_N", raising=False)


# --------------------------------------------------------------------------- serving an app


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


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of benchmarks/ by name (``benchmark_script("exact_cut")``), with its folder
    on ``sys.path`` while it loads, as when it runs (the scripts import their siblings)."""

    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        finally:
            sys.path.remove(str(BENCHMARKS))

    return load
