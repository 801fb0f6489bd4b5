"""The one scoring path: checked requests in, logits out; logits to scores; scores to a ranking.

:class:`Scorer` takes a batch of checked requests ``[(query, [text, ...]), ...]``: each request's
identical texts are encoded once, all the pairs are cut into one length-sorted batch plan
(:meth:`crossrank.encoding.PairEncoder.batches`), scored by the engine, split back per request,
and long documents' windows are reduced to their best score (MaxP). Every public method of
:class:`crossrank.Reranker`, the server's batcher and Ray's actors end here.

:func:`to_scores` (the one sigmoid) and :func:`rank_logits` (the one way from logits to a
:class:`~crossrank.Ranking`) are what ``rank`` does after scoring, public so that a caller holding
logits (the server) ranks exactly as ``rank`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding

from crossrank.backends import Backend
from crossrank.encoding import EncodedPairs, PairEncoder
from crossrank.errors import ScoringError
from crossrank.rank_options import RankOptions
from crossrank.results import Ranking, ScoringStats
from crossrank.selection import select
from crossrank.validation import CheckedRequest

__all__ = ["Scorer", "rank_logits", "to_scores"]

logger = logging.getLogger(__name__)


def to_scores(logits: Sequence[float] | np.ndarray, normalize: bool) -> list[float]:
    """Python floats: the logits as they are, or their sigmoid (0-1) when ``normalize``.

    The sigmoid is computed in float64, so 0-1 scores of very confident pairs stay distinct
    (float32 rounds them to 1.0 early).

    Example:
        >>> to_scores([0.0, 2.0], normalize=False), to_scores([0.0], normalize=True)
        ([0.0, 2.0], [0.5])
    """
    values = np.asarray(logits, dtype=np.float64)
    if not normalize:
        return values.tolist()
    with np.errstate(over="ignore"):  # exp(-(-1000)) is inf: the score is 0.0, as it should be
        return (1.0 / (1.0 + np.exp(-values))).tolist()


def rank_logits(
    texts: Sequence[str],
    logits: Sequence[float] | np.ndarray,
    options: RankOptions,
    *,
    first_stage: Sequence[float] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Ranking:
    """The :class:`~crossrank.Ranking` of ``texts`` from their logits, as ``Reranker.rank`` makes it.

    Args:
        texts: The documents, in input order.
        logits: One raw logit per text.
        options: The call's options (:meth:`RankOptions.resolve`).
        first_stage: Stage 1's scores, for fusion.
        count_tokens: What ``max_tokens`` counts with (``Reranker.budget_tokens``).

    Example:
        >>> ranking = rank_logits(["a", "b", "c"], [0.1, 2.0, -1.0], RankOptions(top_n=2))
        >>> [hit.index for hit in ranking], ranking[0].score
        ([1, 0], 2.0)
    """
    ranking = select(
        texts,
        to_scores(logits, options.normalize),
        options.select_options,
        first_stage=first_stage,
        count_tokens=count_tokens,
    )
    if ranking.num_below_min_score:
        below = ranking.num_below_min_score
        logger.info("min_score=%s dropped %d of %d documents", options.min_score, below, len(texts))
    if ranking.num_duplicates:
        logger.info("dedupe=%s skipped %d near-duplicate documents", options.dedupe, ranking.num_duplicates)
    return ranking


@dataclass
class _Pairs:
    """Every request's encoded pairs, side by side: one distinct document's first pair in ``first``,
    further windows of long documents in ``extra``."""

    first: list[Encoding] = field(default_factory=list)
    extra: list[Encoding] = field(default_factory=list)
    #: For each extra window, its document's position in ``first``.
    extra_owners: list[int] = field(default_factory=list)
    #: Each request's slice of ``first`` and of ``extra``.
    first_groups: list[range] = field(default_factory=list)
    extra_groups: list[range] = field(default_factory=list)
    #: For each request's documents, the position of its distinct text within the request.
    inverses: list[list[int]] = field(default_factory=list)
    num_cut: int = 0
    num_capped: int = 0

    def add(self, pairs: EncodedPairs | None, inverse: list[int]) -> None:
        offset, extra_offset = len(self.first), len(self.extra)
        if pairs is not None:
            self.first += pairs.first
            self.extra += pairs.extra
            self.extra_owners += [offset + owner for owner in pairs.extra_owners]
            self.num_cut += pairs.num_cut
            self.num_capped += pairs.num_capped
        self.first_groups.append(range(offset, len(self.first)))
        self.extra_groups.append(range(extra_offset, len(self.extra)))
        self.inverses.append(inverse)


class Scorer:
    """Scores checked requests with an engine: the scoring path every face of crossrank shares.

    Args:
        engine: The :class:`~crossrank.backends.Backend` running the model.
        encoder: Turns (query, documents) into padded batches.
        model_name: The name error messages give the model.
        batch_size: Most pairs per forward pass.
        long_documents: ``"truncate"`` or ``"windows"`` (MaxP).
        stride, max_windows, window_length: How ``"windows"`` cuts a long document.
    """

    def __init__(
        self,
        engine: Backend,
        encoder: PairEncoder,
        *,
        model_name: str,
        batch_size: int,
        long_documents: str = "truncate",
        stride: int | None = None,
        max_windows: int = 32,
        window_length: int | None = None,
    ) -> None:
        self.engine, self.encoder, self.model_name = engine, encoder, model_name
        self.batch_size = batch_size
        self.windows = long_documents == "windows"
        self.stride, self.max_windows, self.window_length = stride, max_windows, window_length
        self._warned_truncation = False

    def logits(self, requests: list[CheckedRequest], stats: ScoringStats | None = None) -> list[np.ndarray]:
        """Raw float32 logits per request, in input order: every request's pairs in one batch plan.

        Raises:
            ScoringError: The model returned a non-finite score (the request and documents named).
        """
        pairs = self._encode(requests)
        # An engine whose rows depend on their batch-mates (dynamic int8) plans each request on its
        # own, so a request scores exactly as alone; otherwise every request's pairs share one plan.
        mix = self.engine.batch_invariant
        # The first pair of every document is batched exactly as without windows, so documents that
        # fit score bit for bit the same in both modes; further windows follow in their own batches.
        logits = self._forward(pairs.first, [range(len(pairs.first))] if mix else pairs.first_groups, stats)
        if pairs.extra:
            extra = self._forward(
                pairs.extra, [range(len(pairs.extra))] if mix else pairs.extra_groups, stats
            )
            np.maximum.at(logits, pairs.extra_owners, extra)
        results = []
        for i, (group, inverse) in enumerate(zip(pairs.first_groups, pairs.inverses, strict=True)):
            request_logits = logits[group.start : group.stop][inverse] if inverse else logits[:0]
            if not np.all(np.isfinite(request_logits)):
                bad = np.flatnonzero(~np.isfinite(request_logits)).tolist()
                where = f"requests[{i}]: " if len(requests) > 1 else ""
                raise ScoringError(
                    f"Model {self.model_name!r} returned non-finite scores for {where}documents {bad}."
                )
            results.append(request_logits)
        return results

    def _encode(self, requests: list[CheckedRequest]) -> _Pairs:
        pairs = _Pairs()
        for query, texts in requests:
            distinct: dict[str, int] = {}  # identical texts are scored once and share the score
            inverse = [distinct.setdefault(text, len(distinct)) for text in texts]
            encoded = None
            if distinct:
                encoded = self.encoder.encode(
                    query,
                    list(distinct),
                    windows=self.windows,
                    stride=self.stride,
                    max_windows=self.max_windows,
                    window_length=self.window_length,
                )
            pairs.add(encoded, inverse)
        self._warn_long(pairs)
        return pairs

    def _warn_long(self, pairs: _Pairs) -> None:
        if pairs.num_cut and not self.windows and not self._warned_truncation:
            self._warned_truncation = True  # once per Reranker: loud enough to notice, not log spam
            logger.warning(
                "%d of %d documents are longer than max_length=%d with the query and were cut at the end; "
                "set long_documents='windows' (`--long-documents windows`, CROSSRANK_LONG_DOCUMENTS) "
                "to score all of each document.",
                pairs.num_cut,
                len(pairs.first),
                self.encoder.max_length,
            )
        if pairs.num_capped:
            logger.warning(
                "%d documents are longer than max_windows=%d windows; only their first %d windows were "
                "scored (raise max_windows to read more of them, at one forward pass per window).",
                pairs.num_capped,
                self.max_windows,
                self.max_windows,
            )

    def _forward(
        self, encodings: Sequence[Encoding], groups: list[range], stats: ScoringStats | None
    ) -> np.ndarray:
        """Logits of ``encodings``; each group is planned into batches on its own."""
        logits = np.empty(len(encodings), dtype=np.float32)
        overhead = self.engine.batch_overhead_tokens
        for group in groups:
            if not group:
                continue
            members = encodings[group.start : group.stop]
            for batch in self.encoder.batches(members, self.batch_size, overhead):
                logits[group.start + batch.positions] = self.engine.logits(batch)
                if stats is not None:
                    rows, width = batch.input_ids.shape
                    stats.pairs += rows
                    stats.tokens += int(batch.attention_mask.sum())
                    stats.padded_tokens += rows * width
                    stats.forward_passes += 1
                    stats.batch_rows.append(rows)
        return logits
