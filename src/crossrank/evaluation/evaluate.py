"""Rerank an evaluation set and measure it with ir-measures, side by side with stage 1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from crossrank.errors import BackendUnavailableError, InvalidArgumentError
from crossrank.evaluation.datasets import Candidate, EvalDataset
from crossrank.selection import SelectOptions, select, similarity

__all__ = ["BatchScorer", "EvalReport", "Scorer", "evaluate", "measures"]

#: Scores documents against a query, in input order (``Reranker.score`` has this shape).
Scorer = Callable[[str, list[str]], list[float]]


@runtime_checkable
class BatchScorer(Protocol):
    """Scores many ``(query, documents)`` requests in one call (:class:`crossrank.Reranker` is one)."""

    def score_batch(self, requests: list[tuple[str, list[str]]]) -> list[list[float]]: ...


#: Two chunks whose sets of lower-cased words overlap this much (Jaccard) count as near-duplicates
#: in the novelty measures ``dup@3`` and ``distinct rel@3``.
NEAR_DUPLICATE = 0.8

#: Pairs handed to one ``score_batch`` call: enough to fill forward passes across queries,
#: few enough that the progress bar moves.
PAIRS_PER_CALL = 1024


def measures(relevance_level: int) -> dict[str, Any]:
    """The reported metrics, by display name, as ir-measures objects.

    nDCG uses the graded judgements as gains; MRR and recall count a document as relevant from
    ``relevance_level`` up (2 on TREC DL passage, as TREC does). R@3 and nDCG@3 describe what
    reaches the LLM when the best 3 are kept.
    """
    try:
        import ir_measures
    except ImportError as err:
        raise BackendUnavailableError("evaluation needs ir-measures: pip install 'crossrank[eval]'") from err
    rel = relevance_level
    return {
        "nDCG@10": ir_measures.nDCG @ 10,
        "MRR@10": ir_measures.RR(rel=rel) @ 10,
        "R@3": ir_measures.R(rel=rel) @ 3,
        "nDCG@3": ir_measures.nDCG @ 3,
    }


@dataclass
class EvalReport:
    """The outcome of :func:`evaluate`.

    Attributes:
        dataset: Dataset name.
        stage1: Stage-1 system name.
        num_queries: Queries evaluated.
        metrics: ``{depth: {system: {metric: value}}}``; "stage 1" is always one of the systems.
            Besides the ir-measures metrics, the novelty of the top 3: ``dup@3``, the share of
            queries whose top 3 holds a near-duplicate pair (:data:`NEAR_DUPLICATE`), and
            ``distinct rel@3``, relevant chunks per query in the top 3 that don't repeat one above.
        timings: ``{system: {"seconds", "pairs", "pairs_per_second"}}`` for the rerankers;
            ``{system: {"seconds", "ms_per_query", "share_of_rerank"}}`` for selection variants
            (their own cost, next to the reranking they post-process).
        settings: Free-form description of what was run (model, backend, max_length...).
    """

    dataset: str
    stage1: str
    num_queries: int
    metrics: dict[int, dict[str, dict[str, float]]]
    timings: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "dataset": self.dataset,
            "stage1": self.stage1,
            "num_queries": self.num_queries,
            "settings": self.settings,
            "metrics": {str(depth): systems for depth, systems in self.metrics.items()},
            "timings": self.timings,
        }


def _score_all(
    dataset: EvalDataset, scorer: Scorer | BatchScorer, depth: int, progress: Callable[[], None] | None
) -> tuple[dict[str, list[float]], float, int]:
    """Every query's top-``depth`` scores; a batch scorer gets many queries per call."""
    requests = [
        (qid, dataset.queries[qid], [candidate.text for candidate in candidates[:depth]])
        for qid, candidates in dataset.candidates.items()
    ]
    chunks: list[list[tuple[str, str, list[str]]]] = [[]]
    for request in requests:
        if isinstance(scorer, BatchScorer) and sum(len(r[2]) for r in chunks[-1]) < PAIRS_PER_CALL:
            chunks[-1].append(request)
        else:
            chunks.append([request])
    scores, started = {}, time.perf_counter()
    for chunk in filter(None, chunks):
        if isinstance(scorer, BatchScorer):
            results = scorer.score_batch([(query, texts) for _, query, texts in chunk])
        else:
            results = [scorer(query, texts) for _, query, texts in chunk]
        for (qid, _, _), result in zip(chunk, results, strict=True):
            scores[qid] = [float(s) for s in result]
            if progress is not None:
                progress()
    return scores, time.perf_counter() - started, sum(len(texts) for _, _, texts in requests)


def evaluate(
    dataset: EvalDataset,
    scorers: Mapping[str, Scorer],
    *,
    depths: Iterable[int] = (100, 20),
    progress: Callable[[str], Callable[[], None]] | None = None,
    selections: Mapping[str, SelectOptions] | None = None,
) -> EvalReport:
    """Rerank each query's stage-1 top ``depth`` with every scorer and compute the metrics.

    Every scorer scores the candidates of the deepest depth once; shallower depths reuse those
    scores on their own prefix of the stage-1 ranking (a pair's score doesn't depend on which
    other documents are in the list).

    Args:
        dataset: From :func:`crossrank.evaluation.load_dataset`.
        scorers: Systems to compare, by display name: a :class:`BatchScorer` such as a
            :class:`crossrank.Reranker` (many queries per call, through ``score_batch``), or a
            per-query function ``(query, texts) -> scores``, e.g. ``{"crossrank": reranker}``.
        depths: Stage-1 depths to rerank, e.g. ``(100, 20)``.
        progress: Called with a system name; returns a callback ticked once per query.
        selections: Variants of the first scorer's ranking to report next to it, by display name,
            e.g. ``{"+ dedupe 0.8": SelectOptions(dedupe=0.8), "+ rrf": SelectOptions(fusion="rrf")}``:
            the same scores through :func:`crossrank.selection.select`, with stage 1's scores as the
            fusion's other side. Chunks a variant drops (dedupe) are ranked after those it keeps.

    Returns:
        An :class:`EvalReport`; stage 1 alone is always reported as the system ``"stage 1"``.
    """
    chosen = measures(dataset.relevance_level)  # first: a clear error when ir-measures is missing
    import ir_measures

    depths = sorted(set(depths), reverse=True)
    qrels = [ir_measures.Qrel(q, d, g) for q, d, g in dataset.qrels if q in dataset.candidates]

    def score_run(run: dict[str, dict[str, float]]) -> dict[str, float]:
        values = ir_measures.calc_aggregate(list(chosen.values()), qrels, run)
        return {name: float(values[measure]) for name, measure in chosen.items()}

    all_scores: dict[str, dict[str, list[float]]] = {}
    timings = {}
    for name, scorer in scorers.items():
        tick = progress(name) if progress is not None else None
        all_scores[name], seconds, pairs = _score_all(dataset, scorer, depths[0], tick)
        timings[name] = {
            "seconds": seconds,
            "pairs": pairs,
            "pairs_per_second": pairs / seconds if seconds else 0.0,
        }

    if selections and not scorers:
        raise InvalidArgumentError("selections need a scorer whose ranking they post-process")
    base = next(iter(scorers), None)
    metrics: dict[int, dict[str, dict[str, float]]] = {}
    for depth in depths:
        runs = {
            "stage 1": {
                qid: {c.docid: c.score for c in candidates[:depth]}
                for qid, candidates in dataset.candidates.items()
            }
        }
        for name, scores in all_scores.items():
            runs[name] = {
                qid: {c.docid: s for c, s in zip(candidates[:depth], scores[qid][:depth], strict=True)}
                for qid, candidates in dataset.candidates.items()
            }
        for name, options in (selections or {}).items():
            started = time.perf_counter()
            runs[name] = {
                qid: _selected_run(candidates[:depth], all_scores[base][qid][:depth], options)  # type: ignore[index]
                for qid, candidates in dataset.candidates.items()
            }
            seconds = time.perf_counter() - started
            if depth == depths[-1]:  # the cost at the depth RAG reranks (the shallowest asked)
                rerank_s = timings[base]["seconds"] * depth / depths[0]  # type: ignore[index]
                timings[name] = {
                    "seconds": seconds,
                    "ms_per_query": 1000 * seconds / max(len(dataset.candidates), 1),
                    "share_of_rerank": seconds / rerank_s if rerank_s else 0.0,
                }
        metrics[depth] = {name: score_run(run) | _novelty(dataset, run) for name, run in runs.items()}
    return EvalReport(dataset.name, dataset.stage1, len(dataset.candidates), metrics, timings)


def _selected_run(
    candidates: list[Candidate], scores: list[float], options: SelectOptions
) -> dict[str, float]:
    """A query's run for a selection variant: what it keeps, in its order, then what it dropped."""
    texts = [c.text for c in candidates]
    kept = [hit.index for hit in select(texts, scores, options, first_stage=[c.score for c in candidates])]
    chosen = set(kept)
    rest = sorted((i for i in range(len(texts)) if i not in chosen), key=lambda i: -scores[i])
    order = kept + rest
    return {candidates[i].docid: float(len(order) - position) for position, i in enumerate(order)}


def _novelty(dataset: EvalDataset, run: dict[str, dict[str, float]]) -> dict[str, float]:
    """``dup@3`` and ``distinct rel@3`` of a run (see :class:`EvalReport`)."""
    near = similarity("jaccard")
    relevant = {(q, d) for q, d, grade in dataset.qrels if grade >= dataset.relevance_level}
    with_duplicates, distinct = 0, 0
    for qid, scored in run.items():
        texts = {c.docid: c.text for c in dataset.candidates[qid]}
        top = sorted(scored, key=lambda docid: -scored[docid])[:3]
        repeats = [
            any(near(texts[top[j]], texts[top[i]]) >= NEAR_DUPLICATE for j in range(i))
            for i in range(len(top))
        ]
        with_duplicates += any(repeats)
        distinct += sum(
            (qid, docid) in relevant and not repeat for docid, repeat in zip(top, repeats, strict=True)
        )
    queries = max(len(run), 1)
    return {"dup@3": with_duplicates / queries, "distinct rel@3": distinct / queries}
