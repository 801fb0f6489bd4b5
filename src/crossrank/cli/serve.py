"""``crossrank serve``: the Cohere, Jina and TEI rerank APIs over HTTP, in this process or on Ray Serve."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Any

import typer
from rich.markup import escape

from crossrank.cli.console import err_console, errors_reported, fail, setup_logging
from crossrank.cli.options import Verbose, build_reranker, reranker_options
from crossrank.config import RerankerConfig

__all__ = ["SERVE_RAY_OPTIONS", "serve", "serve_on_ray"]

#: The Ray settings ``serve --ray`` takes as options (the rest come from YAML ``ray:`` or CROSSRANK_RAY_*).
SERVE_RAY_OPTIONS = (
    "address",
    "local_cpus",
    "num_cpus",
    "num_gpus",
    "replicas",
    "min_replicas",
    "max_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
)


@reranker_options(
    "model",
    "engine",
    "ranking",
    "selection",
    server=True,
    ray=SERVE_RAY_OPTIONS,
    exclude=("top_n", "normalize", "min_score"),
)
def serve(
    config: RerankerConfig,
    server_config: Any,
    ray_config: Any,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Serve on Ray Serve: --replicas copies of the same app (local Ray, or --address).",
            rich_help_panel="Ray",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Serve the Cohere (v1, v2), Jina and TEI rerank APIs over HTTP, with pair-level dynamic batching.

    Point Open WebUI, Dify, RAGFlow, LiteLLM, Haystack's TEI ranker or any Cohere / TEI client at
    http://HOST:PORT (or http://HOST:PORT/v1): see docs/serving.md. With --ray, the same app runs as
    Ray Serve replicas behind Ray's proxy (docs/scaling.md).
    """
    setup_logging(verbose)
    try:
        import uvicorn

        from crossrank.server import create_app
    except ImportError as err:
        message = f"crossrank serve needs the server extra: pip install 'crossrank[server]' ({err})"
        raise fail(message) from None
    if on_ray:
        serve_on_ray(config, server_config, ray_config, verbose)
        return
    with errors_reported():
        reranker = build_reranker(config)
    from crossrank.server.app import batching_enabled

    application = create_app(reranker, server_config)
    err_console.print(
        f"[bold]crossrank serve[/] {escape(reranker.model_name)} ({reranker.backend}, {reranker.device}) on "
        f"http://{server_config.host}:{server_config.port}  "
        f"[dim](batching {'on' if batching_enabled(reranker, server_config) else 'off'}, "
        f"auth {'on' if server_config.api_key else 'off'})[/]",
        highlight=False,
    )
    uvicorn.run(
        application,
        host=server_config.host,
        port=server_config.port,
        log_level="info" if verbose else "warning",
        timeout_graceful_shutdown=server_config.graceful_shutdown_s,
        limit_concurrency=None,
    )


def serve_on_ray(config: RerankerConfig, server_config: Any, ray_config: Any, verbose: bool) -> None:
    """``serve --ray``: deploy the app on Ray Serve, then wait for Ctrl-C or SIGTERM and shut it down."""
    stop = threading.Event()
    with errors_reported():
        from crossrank.ray.runtime import ray_cluster, require_serve

        serve_api = require_serve()
        from crossrank.ray import serving

        with ray_cluster(ray_config, logging_level=logging.INFO if verbose else logging.WARNING):
            try:
                with err_console.status("starting Ray Serve replicas"):
                    url = serving.run(config, server_config, ray_config)
                scale = (
                    f"{ray_config.min_replicas}-{ray_config.max_replicas} replicas (autoscaling)"
                    if ray_config.autoscaling
                    else f"{ray_config.replicas} replica(s)"
                )
                err_console.print(
                    f"[bold]crossrank serve --ray[/] {escape(config.model)} on {url}  [dim]({scale}, "
                    f"{ray_config.num_cpus:g} CPU / {ray_config.num_gpus:g} GPU each, "
                    f"auth {'on' if server_config.api_key else 'off'}; Ctrl-C stops)[/]",
                    highlight=False,
                )
                for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a stop: shut down, exit 0
                    signal.signal(signum, lambda *_: stop.set())
                while not stop.wait(1.0):
                    pass
            finally:
                serve_api.shutdown()
