"""``crossrank serve``: the Cohere, Jina and TEI rerank APIs over one Reranker.

Needs the ``server`` extra: ``pip install 'crossrank[server]'``. :class:`ServerConfig` imports
without it (the command line builds its options from it), ``create_app`` needs FastAPI.

One job per module:

* ``app``: :func:`create_app` and the routes (HTTP only: a body in, a schema's answer out).
* ``service``: :class:`~crossrank.server.service.RerankService`, a request's way from checks to ranking.
* ``batcher``: :class:`~crossrank.server.batcher.PairBatcher`, concurrent requests' pairs in shared steps.
* ``schemas``: the request and response bodies; the responses build themselves from a Ranking.
* ``errors``: the one table of error kind to status per API shape, and the error bodies.
* ``metrics``: the Prometheus metrics and the middleware that limits bodies and counts requests.
* ``config``: :class:`ServerConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossrank.server.config import ServerConfig

if TYPE_CHECKING:
    from crossrank.server.app import create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # imported on use: FastAPI is only needed to serve
        from crossrank.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
