"""LlamaIndex code that already uses a TEI reranker (llama-index-postprocessor-tei-rerank), on crossrank.

pip install llama-index-postprocessor-tei-rerank
"""

from __future__ import annotations

import os

CROSSRANK_URL = os.environ.get("CROSSRANK_URL", "http://localhost:8080")


def build_postprocessor(base_url: str = CROSSRANK_URL, api_key: str | None = None, top_n: int = 3):
    """A ``TextEmbeddingInference`` node postprocessor that calls ``crossrank serve``."""
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    key = api_key or os.environ.get("CROSSRANK_API_KEY", "change-me")
    # Its auth_token is the whole Authorization header, scheme included.
    return TextEmbeddingInference(
        base_url=base_url, top_n=top_n, auth_token=f"Bearer {key}", model_name="crossrank"
    )
