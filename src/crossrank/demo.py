"""What ``crossrank demo`` reads: the small corpus bundled with crossrank, or a BEIR ``corpus.jsonl``.

The pipeline itself is two calls: :class:`crossrank.retrieval.BiEncoderRetriever` retrieves the
top ``k`` chunks, :meth:`crossrank.Reranker.rank` keeps the best few (see ``crossrank.cli.demo``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from crossrank.corpus import CorpusDocument, read_corpus

__all__ = ["default_corpus_path", "load_corpus"]


def default_corpus_path() -> Path:
    """The small corpus that ships with crossrank (80 chunks: RAG notes, cooking, science, history)."""
    return Path(str(resources.files("crossrank") / "data" / "demo_corpus.jsonl"))


def load_corpus(path: str | os.PathLike[str] | None = None) -> list[CorpusDocument]:
    """Read a BEIR-style ``corpus.jsonl`` (:func:`crossrank.corpus.read_corpus`); None: the bundled one."""
    return read_corpus(default_corpus_path() if path is None else path)
