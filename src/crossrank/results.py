"""What :meth:`crossrank.Reranker.rank` returns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RankedDocument", "Ranking", "ScoringStats", "rank_order"]


def rank_order(texts: Sequence[str], scores: Sequence[float]) -> list[int]:
    """Positions of ``texts`` best first: by score, ties in input order, blank texts last.

    An empty or whitespace-only chunk (what broken PDF parsing and chunkers produce) can score
    high against a query (the model then reads the query alone), and it must never reach an LLM
    by accident: it keeps its score but ranks after every chunk with text. Every face that ranks
    (``Reranker.rank``, the adapters, the CLI, the server) orders with this function.

    Example:
        >>> rank_order(["b", "", "a", "  "], [0.2, 0.9, 0.5, 0.1])
        [2, 0, 1, 3]
    """
    return sorted(range(len(texts)), key=lambda i: (not texts[i].strip(), -scores[i]))


@dataclass(frozen=True, slots=True)
class RankedDocument:
    """One document of a ranking.

    Attributes:
        index: Position of the document in the list passed to ``rank`` (use it to find your own
            object: ids, metadata). Duplicated documents keep their own indexes.
        score: Cross-encoder score, a Python ``float``: the raw logit, or its sigmoid (0-1) when
            ``normalize=True``.
        text: The document text, the same ``str`` object the caller passed.
        fused_score: With ``fusion``, the score the ranking is ordered by (the reranker's order
            fused with stage 1's); None without fusion.
    """

    index: int
    score: float
    text: str
    fused_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"index": int, "score": float, "text": str}``, and ``fused_score`` with fusion."""
        plain = {"index": self.index, "score": self.score, "text": self.text}
        return plain if self.fused_score is None else {**plain, "fused_score": self.fused_score}


class Ranking(list[RankedDocument]):
    """A ``list`` of :class:`RankedDocument`, best first, that also says what was left out.

    It is a real ``list`` (slicing, ``len``, JSON via ``to_dict``); the extra attributes make
    ``top_n``, ``min_score``, ``dedupe`` and ``max_tokens`` cuts visible instead of silent.

    Attributes:
        num_candidates: How many documents were scored.
        num_below_min_score: How many were dropped because their score was below ``min_score``.
        num_duplicates: How many were skipped by ``dedupe`` as near-duplicates of a kept document.
        num_tokens: With ``max_tokens``, the tokens of the documents returned; otherwise None.
    """

    num_candidates: int
    num_below_min_score: int
    num_duplicates: int
    num_tokens: int | None

    def __init__(
        self,
        items: Iterable[RankedDocument] = (),
        *,
        num_candidates: int = 0,
        num_below_min_score: int = 0,
        num_duplicates: int = 0,
        num_tokens: int | None = None,
    ) -> None:
        super().__init__(items)
        self.num_candidates = num_candidates
        self.num_below_min_score = num_below_min_score
        self.num_duplicates = num_duplicates
        self.num_tokens = num_tokens

    def __repr__(self) -> str:
        extra = f", num_duplicates={self.num_duplicates}" if self.num_duplicates else ""
        extra += f", num_tokens={self.num_tokens}" if self.num_tokens is not None else ""
        return (
            f"Ranking({list.__repr__(self)}, num_candidates={self.num_candidates}, "
            f"num_below_min_score={self.num_below_min_score}{extra})"
        )


@dataclass
class ScoringStats:
    """What a scoring call cost, filled in by :meth:`crossrank.Reranker.score_batch` when given one.

    A server reads it for its metrics and timing headers; counts add up over calls given the same object.

    Attributes:
        pairs: (query, document) pairs scored, windows of long documents included; identical
            documents in one request count once.
        tokens: Real tokens in those pairs, special tokens included.
        padded_tokens: Tokens the engine processed, padding included.
        forward_passes: Calls to the engine.
        batch_rows: Rows of each forward pass, in order.
    """

    pairs: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    forward_passes: int = 0
    batch_rows: list[int] = field(default_factory=list)
