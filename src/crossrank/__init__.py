"""crossrank: cross-encoder reranking for RAG pipelines.

Retrieve ~20 chunks fast, let a cross-encoder read each one together with the query, keep the
best few::

    from crossrank import Reranker

    reranker = Reranker()  # cross-encoder/ms-marco-MiniLM-L6-v2
    for hit in reranker.rank("how long does a flea live", chunks, top_n=3):
        print(hit.index, hit.score, hit.text)
"""

from crossrank.config import DEFAULT_MODEL, RerankerConfig
from crossrank.errors import (
    BackendUnavailableError,
    CrossrankError,
    DocumentTypeError,
    EmptyQueryError,
    InvalidArgumentError,
    ModelLoadError,
    ScoringError,
    UnsupportedModelError,
)
from crossrank.reranker import USE_DEFAULT, Reranker, RerankRequest
from crossrank.results import RankedDocument, Ranking, ScoringStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "USE_DEFAULT",
    "BackendUnavailableError",
    "CrossrankError",
    "DocumentTypeError",
    "EmptyQueryError",
    "InvalidArgumentError",
    "ModelLoadError",
    "RankedDocument",
    "Ranking",
    "RerankRequest",
    "Reranker",
    "RerankerConfig",
    "ScoringError",
    "ScoringStats",
    "UnsupportedModelError",
    "__version__",
]
