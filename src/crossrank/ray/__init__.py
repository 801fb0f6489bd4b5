"""Scale out on Ray: replicated rerank serving (Ray Serve) and batch reranking (Ray Data).

Both paths hold one :class:`crossrank.Reranker` per Ray actor, built from a
:class:`crossrank.RerankerConfig`, and score through its ``score_batch`` seam: Serve replicas run the
very app of ``crossrank serve`` (:func:`crossrank.server.create_app`), batch actors call
``Reranker.score_batch`` on candidate sets read from JSONL or Parquet. Needs ``pip install
'crossrank[ray]'``; the submodules import Ray, this package does not.

* :func:`crossrank.ray.batch.rerank_batch` (``crossrank rerank-batch INPUT OUTPUT``)
* :func:`crossrank.ray.serving.build_app` (``crossrank serve --ray --replicas N``)
* :class:`RayConfig`: replicas, CPUs/GPUs per actor, backpressure; from YAML (``ray:``) or
  ``CROSSRANK_RAY_*``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from crossrank.ray.config import RAY_ENV_PREFIX, RayConfig

if TYPE_CHECKING:
    from crossrank.ray.batch import BatchReport

__all__ = ["RAY_ENV_PREFIX", "RayConfig", "rerank_batch"]


def rerank_batch(
    input_path: str | os.PathLike[str], output: str | os.PathLike[str], **options: Any
) -> BatchReport:
    """:func:`crossrank.ray.batch.rerank_batch`, imported on first use (it needs Ray)."""
    from crossrank.ray.batch import rerank_batch as run

    return run(input_path, output, **options)
