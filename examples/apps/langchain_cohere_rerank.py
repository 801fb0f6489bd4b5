"""LangChain code that already uses a rerank service: langchain-cohere's CohereRerank, pointed at crossrank.

pip install langchain-cohere
"""

from __future__ import annotations

import os

CROSSRANK_URL = os.environ.get("CROSSRANK_URL", "http://localhost:8080")


def build_reranker(base_url: str = CROSSRANK_URL, api_key: str | None = None, top_n: int = 3):
    """A ``CohereRerank`` document compressor that calls ``crossrank serve`` instead of Cohere."""
    from langchain_cohere import CohereRerank

    return CohereRerank(
        base_url=base_url,
        model="crossrank",
        cohere_api_key=api_key or os.environ.get("CROSSRANK_API_KEY", "change-me"),
        top_n=top_n,
    )
