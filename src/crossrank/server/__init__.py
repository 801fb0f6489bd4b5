"""``crossrank serve``: the Cohere, Jina and TEI rerank APIs over one Reranker.

Needs the ``server`` extra: ``pip install 'crossrank[server]'``. :class:`ServerConfig` imports
without it (the command line builds its options from it), ``create_app`` needs FastAPI.
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
