"""``crossrank serve``: the Cohere, Jina and TEI rerank APIs over one Reranker.

Needs the ``server`` extra: ``pip install 'crossrank[server]'``.
"""

from crossrank.server.app import create_app
from crossrank.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
