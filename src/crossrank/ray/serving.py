"""The rerank server on Ray Serve: replicas of the very app ``crossrank serve`` runs.

Each replica builds one :class:`crossrank.Reranker` from a :class:`crossrank.RerankerConfig` and
serves :func:`crossrank.server.create_app` over it through ``@serve.ingress``: same routes, schema,
errors and scores as the single-process server. Requests are batched per replica at the pair level
by the app's own :class:`~crossrank.server.batcher.PairBatcher` (token-sized steps,
``max_batch_tokens``), which merges the requests Serve lets in at once (``max_ongoing_requests``);
``@serve.batch`` is not used because it would be a second batcher in front of the first, batching
whole requests by count. Ray adds what one process can't: replicas on many nodes, autoscaling and
proxy backpressure (``max_queued_requests`` answered with 429 or 503), from :class:`RayConfig`.

Run it with ``crossrank serve --ray --replicas 2`` or, on a running cluster, with
``serve run crossrank.ray.serving:app_builder config=crossrank.yaml``.
"""

from __future__ import annotations

from typing import Any

from crossrank.config import RerankerConfig
from crossrank.ray.config import RayConfig
from crossrank.ray.runtime import require_serve
from crossrank.server.config import ServerConfig

serve = require_serve()

__all__ = ["RerankReplica", "app_builder", "build_app", "run"]

#: The Serve application's name.
APP_NAME = "crossrank"


@serve.ingress()
class RerankReplica:
    """One replica: a Reranker and the server app over it (built in ``__serve_build_asgi_app__``)."""

    def __init__(self, reranker_config: RerankerConfig, server_config: ServerConfig) -> None:
        from crossrank.reranker import Reranker

        self.reranker = Reranker(**reranker_config.model_dump())
        self.server_config = server_config
        #: The app this replica serves, once Serve has asked for it (``__serve_build_asgi_app__``).
        self.server_app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from crossrank.server import create_app

        self.server_app = create_app(self.reranker, self.server_config)
        return self.server_app

    def check_health(self) -> None:
        """Serve's health check: the replica's scoring loop must be running (else it is replaced)."""
        if self.server_app is not None and not self.server_app.state.crossrank.batcher.running:
            raise RuntimeError("the replica's scoring loop is not running")


def build_app(
    reranker_config: RerankerConfig,
    server_config: ServerConfig | None = None,
    ray_config: RayConfig | None = None,
) -> Any:
    """The Serve application (``Deployment.bind(...)``); replicas, resources, backpressure: ``ray_config``.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> config = RerankerConfig(model="cross-encoder/ms-marco-MiniLM-L6-v2")
        >>> serve.run(build_app(config))  # doctest: +SKIP
    """
    server_config = server_config or ServerConfig()
    ray_config = ray_config or RayConfig()
    config = ray_config.actor_reranker_config(reranker_config)
    deployment = serve.deployment(RerankReplica, name="Reranker", **ray_config.deployment_options())
    return deployment.bind(config, server_config)


def app_builder(args: dict[str, str]) -> Any:
    """The ``serve run`` target: ``serve run crossrank.ray.serving:app_builder config=crossrank.yaml``.

    ``config`` (optional) is a YAML file with ``reranker``, ``server`` and ``ray`` sections; the
    ``CROSSRANK_*``, ``CROSSRANK_SERVER_*`` and ``CROSSRANK_RAY_*`` variables override it.
    """
    path = args.get("config")
    if path is None:
        return build_app(RerankerConfig(), ServerConfig(), RayConfig())
    return build_app(
        RerankerConfig.from_yaml(path, section="reranker"),
        ServerConfig.from_yaml(path),
        RayConfig.from_yaml(path),
    )


def run(
    reranker_config: RerankerConfig,
    server_config: ServerConfig,
    ray_config: RayConfig,
    *,
    timeout_s: float = 600.0,
) -> str:
    """Start Serve's HTTP proxy on ``server_config.host:port`` and deploy the app; its URL.

    Needs a joined Ray (see :func:`crossrank.ray.runtime.ray_cluster`). Returns once every replica
    is healthy; ``serve.shutdown()`` stops it.
    """
    serve.start(http_options={"host": server_config.host, "port": server_config.port})
    serve.run(
        build_app(reranker_config, server_config, ray_config),
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
    )
    _wait_running(timeout_s)
    return f"http://{server_config.host}:{server_config.port}"


def _wait_running(timeout_s: float) -> None:
    import time

    from crossrank.errors import CrossrankError

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP_NAME)
        state = str(getattr(status, "status", ""))
        if state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED") or time.monotonic() > deadline:
            message = getattr(status, "message", "") or "timed out"
            raise CrossrankError(f"the Ray Serve app did not start: {message}")
        time.sleep(0.5)
