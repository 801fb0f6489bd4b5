"""What reaches the LLM: from a query's scores to the chunks handed on.

A reranker's job in RAG is to fill an LLM's few context slots, not only to sort. :func:`select`
is the one place where scores become a :class:`~crossrank.Ranking`, for every face of crossrank
(``Reranker.rank``, the adapters, the CLI, the server). In order, it:

1. orders the chunks by score, or by the **fusion** of the reranker's order with the stage-1
   (retriever's) order or scores (``fusion="rrf"`` or ``"weighted"``); ties keep input order and
   blank chunks come last (:func:`~crossrank.results.rank_order`);
2. drops chunks scoring below ``min_score`` (the reranker's score, counted);
3. walks that order and skips a chunk that nearly duplicates one already kept (``dedupe``,
   counted in ``Ranking.num_duplicates``);
4. stops at ``top_n`` chunks, or before the chunk that would take the kept chunks' tokens over
   ``max_tokens`` (always keeping at least one), whichever comes first.

Example:
    >>> from crossrank.selection import SelectOptions, select
    >>> texts = ["fleas live a year", "Fleas live a year.", "Paris is in France", ""]
    >>> ranking = select(texts, [3.0, 2.9, -1.0, 5.0], SelectOptions(top_n=2, dedupe=0.8))
    >>> [(doc.index, doc.text) for doc in ranking], ranking.num_duplicates
    ([(0, 'fleas live a year'), (2, 'Paris is in France')], 1)
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from crossrank.errors import BackendUnavailableError, InvalidArgumentError, ModelLoadError
from crossrank.results import RankedDocument, Ranking, rank_order

__all__ = [
    "SIMILARITIES",
    "SelectOptions",
    "check_first_stage",
    "check_similarity",
    "fuse",
    "load_token_counter",
    "select",
    "similarity",
]

Similarity = Literal["jaccard", "ratio"]
Fusion = Literal["rrf", "weighted"]

_WORD = re.compile(r"\w+")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _jaccard(first: frozenset[str], second: frozenset[str]) -> float:
    union = len(first | second)
    return len(first & second) / union if union else 1.0


def _processed(text: str) -> str:
    from rapidfuzz import utils

    return utils.default_process(text)


def _ratio(first: str, second: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(first, second) / 100.0


#: Near-duplicate measures ``dedupe`` can use, each as (prepare one text, compare two prepared) for a
#: similarity in 0-1: ``jaccard``, the overlap of their sets of lower-cased words (catches reordered
#: and re-wrapped copies, and chunks that mostly overlap); ``ratio``, rapidfuzz's normalised Indel
#: similarity of their characters (catches copies with small edits, such as typos or changed numbers).
SIMILARITIES: dict[str, tuple[Callable[[str], Any], Callable[[Any, Any], float]]] = {
    "jaccard": (_words, _jaccard),
    "ratio": (_processed, _ratio),
}


#: The similarities that need a package the core install leaves out, as (module, extra).
NEEDS: dict[str, tuple[str, str]] = {"ratio": ("rapidfuzz", "ratio")}


def check_similarity(name: str) -> None:
    """Fail fast where the similarity ``name`` needs a package that is not installed.

    Raises:
        BackendUnavailableError: ``ratio`` without rapidfuzz (``pip install 'crossrank[ratio]'``).

    Example:
        >>> check_similarity("jaccard")  # pure Python: always there
    """
    if name not in NEEDS:
        return
    module, extra = NEEDS[name]
    try:
        __import__(module)
    except ImportError:
        raise BackendUnavailableError(
            f"dedupe_similarity={name!r} needs {module}, which is not installed: "
            f"pip install 'crossrank[{extra}]' (or use dedupe_similarity='jaccard', built in)"
        ) from None


def similarity(name: str) -> Callable[[str, str], float]:
    """The similarity function of ``name`` (one of :data:`SIMILARITIES`).

    Example:
        >>> similarity("jaccard")("a flea lives a year", "A year a flea lives!")
        1.0
        >>> round(similarity("ratio")("fleas live 100 days", "fleas live 101 days"), 3)
        0.947
    """
    prepare, compare = _measure(name)
    return lambda first, second: compare(prepare(first), prepare(second))


def _measure(name: str) -> tuple[Callable[[str], Any], Callable[[Any, Any], float]]:
    try:
        return SIMILARITIES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}"
        ) from None


@dataclass(frozen=True, slots=True)
class SelectOptions:
    """How :func:`select` turns scores into a ranking; the fields are :class:`~crossrank.RerankerConfig`'s.

    Attributes:
        top_n: Most chunks to return; None: no count limit.
        min_score: Drop chunks whose (reranker) score is below this.
        dedupe: Skip a chunk whose similarity to a chunk already kept is at least this (0-1].
        dedupe_similarity: How ``dedupe`` measures similarity (:data:`SIMILARITIES`).
        max_tokens: Keep chunks, best first, while their tokens add up to at most this.
        fusion: Combine the reranker's order with stage 1's: ``"rrf"`` or ``"weighted"``.
        fusion_k: rrf: the constant k of ``1 / (k + rank)``.
        fusion_weight: weighted: the reranker's weight; stage 1 gets ``1 - fusion_weight``.
    """

    top_n: int | None = None
    min_score: float | None = None
    dedupe: float | None = None
    dedupe_similarity: Similarity = "jaccard"
    max_tokens: int | None = None
    fusion: Fusion | None = None
    fusion_k: int = 60
    fusion_weight: float = 0.5


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``, highest first, ties in input order."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def _min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min() if len(values) else 0.0
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def fuse(
    scores: Sequence[float],
    first_stage: Sequence[float] | None,
    *,
    method: Fusion,
    k: int = 60,
    weight: float = 0.5,
) -> list[float]:
    """Fused scores of the reranker's ``scores`` and stage 1's: higher is better.

    Args:
        scores: The reranker's scores, in input order.
        first_stage: Stage 1's scores in input order (higher is better), or None when only its
            order is known: the input order is then stage 1's ranking, best first (what a
            retriever hands on).
        method: ``"rrf"``: reciprocal-rank fusion, ``1/(k + rank_reranker) + 1/(k + rank_stage1)``,
            which reads ranks only; ``"weighted"``: ``weight * s + (1 - weight) * f``, with ``s``
            and ``f`` the two systems' scores min-max scaled to 0-1 over the list (stage 1's
            order alone counts as evenly spaced scores).
        k: rrf's constant: larger flattens the difference between the top ranks.
        weight: weighted: the reranker's share, 0-1.

    Example:
        >>> [round(s, 4) for s in fuse([0.1, 0.9, 0.5], None, method="rrf", k=60)]
        [0.0323, 0.0325, 0.032]
        >>> fuse([0.1, 0.9, 0.5], [3.0, 1.0, 2.0], method="weighted", weight=0.5)
        [0.5, 0.5, 0.5]
    """
    n = len(scores)
    stage1 = (
        np.asarray(first_stage, dtype=np.float64)
        if first_stage is not None
        else np.arange(n, 0, -1, dtype=np.float64)
    )
    if method == "rrf":
        fused = 1.0 / (k + _ranks(list(scores))) + 1.0 / (k + _ranks(stage1.tolist()))
    else:
        fused = weight * _min_max(np.asarray(scores, dtype=np.float64)) + (1 - weight) * _min_max(stage1)
    return [float(value) for value in fused]


def check_first_stage(
    first_stage: object, num_texts: int, *, where: str = "first_stage_scores"
) -> list[float] | None:
    """``first_stage`` as a list of Python floats, one per text, or None.

    Raises:
        InvalidArgumentError: it is not a sequence of finite numbers of the texts' length.

    Example:
        >>> check_first_stage((2, 1.5), 2)
        [2.0, 1.5]
        >>> check_first_stage([1.0], 2)
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: first_stage_scores has 1 value(s) for 2 documents
    """
    return None if first_stage is None else check_scores(first_stage, num_texts, where=where)


def check_scores(scores: object, num_texts: int, *, where: str) -> list[float]:
    """``scores`` as a list of Python floats, one finite number per text (a caller's logits, or
    stage 1's scores).

    Raises:
        InvalidArgumentError: it is not a flat sequence of finite numbers of the texts' length.

    Example:
        >>> check_scores(np.array([0.5, 2.0]), 2, where="logits")
        [0.5, 2.0]
        >>> check_scores([1.0, float("nan")], 2, where="logits")
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: logits[1] must be a finite number, got nan
    """
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence | np.ndarray):
        raise InvalidArgumentError(f"{where} must be a list of numbers, got {type(scores).__name__}")
    values = list(scores)
    if len(values) != num_texts:
        raise InvalidArgumentError(f"{where} has {len(values)} value(s) for {num_texts} documents")
    for i, value in enumerate(values):
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            raise InvalidArgumentError(f"{where}[{i}] must be a finite number, got {value!r}")
    return [float(value) for value in values]


def select(
    texts: Sequence[str],
    scores: Sequence[float],
    options: SelectOptions,
    *,
    first_stage: Sequence[float] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Ranking:
    """The ranking of one query's chunks: what is handed on, best first (see the module's steps).

    Args:
        texts: The chunks, in input order (stage 1's order when ``first_stage`` is None).
        scores: The reranker's score of each, in input order.
        options: The selection to make.
        first_stage: Stage 1's scores, for fusion (checked by :func:`check_first_stage`).
        count_tokens: Counts a chunk's tokens; needed when ``options.max_tokens`` is set.

    Returns:
        A :class:`~crossrank.Ranking`. Each document's ``score`` is the reranker's; with fusion,
        ``fused_score`` holds the score the ranking is ordered by.
    """
    if options.max_tokens is not None and count_tokens is None:
        raise InvalidArgumentError("max_tokens needs a token counter (count_tokens)")
    fused = (
        fuse(scores, first_stage, method=options.fusion, k=options.fusion_k, weight=options.fusion_weight)
        if options.fusion is not None
        else None
    )
    order = rank_order(texts, fused if fused is not None else scores)
    if options.min_score is not None:
        passed = [i for i in order if scores[i] >= options.min_score]
        below, order = len(order) - len(passed), passed
    else:
        below = 0
    kept: list[int] = []
    prepare, compare = _measure(options.dedupe_similarity)
    prepared: dict[int, Any] = {}  # each text prepared once, when dedupe first reads it

    def duplicate(i: int) -> bool:
        """Is chunk ``i`` as similar as ``dedupe`` to a chunk already kept?"""
        if options.dedupe is None:
            return False
        for j in (i, *kept):
            if j not in prepared:
                prepared[j] = prepare(texts[j])
        return any(compare(prepared[i], prepared[j]) >= options.dedupe for j in kept)

    duplicates = 0
    tokens = 0
    for i in order:
        if options.top_n is not None and len(kept) >= options.top_n:
            break
        if duplicate(i):
            duplicates += 1
            continue
        if options.max_tokens is not None:
            cost = count_tokens(texts[i])  # type: ignore[misc]
            if kept and tokens + cost > options.max_tokens:
                break
            tokens += cost
        kept.append(i)
    return Ranking(
        [
            RankedDocument(
                index=i, score=scores[i], text=texts[i], fused_score=None if fused is None else fused[i]
            )
            for i in kept
        ],
        num_candidates=len(texts),
        num_below_min_score=below,
        num_duplicates=duplicates,
        num_tokens=tokens if options.max_tokens is not None else None,
    )


def load_token_counter(
    tokenizer: str, *, local_files_only: bool = False, cache_folder: str | None = None
) -> Callable[[str], int]:
    """A function counting a text's tokens (no special tokens) with ``tokenizer``: what ``max_tokens`` uses.

    Name the LLM's tokenizer so the budget matches what it will read: a Hugging Face hub id
    (``"Qwen/Qwen2.5-7B-Instruct"``) or a local folder with its tokenizer files.

    Raises:
        ModelLoadError: It can't be loaded (offline and not cached, unknown id, no tokenizer files);
            within seconds, with the way out.

    Example:
        >>> count = load_token_counter("cross-encoder/ms-marco-MiniLM-L6-v2")
        >>> count("how long does a flea live")
        6
    """
    from pathlib import Path

    from crossrank.model_source import resolve_model_source

    if Path(tokenizer).expanduser().is_dir():
        location, offline = str(Path(tokenizer).expanduser()), True
    else:
        try:
            source = resolve_model_source(
                tokenizer, local_files_only=local_files_only, cache_folder=cache_folder
            )
        except ModelLoadError as err:
            raise ModelLoadError(
                f"budget_tokenizer: {err}", model=tokenizer, hub_reachable=err.hub_reachable
            ) from None
        location, offline = source.location, source.local_files_only
    fast = _fast_tokenizer(location, offline=offline, cache_folder=cache_folder)
    if fast is not None:  # the tokenizers library alone: no transformers needed
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    try:  # a tokenizer with no tokenizer.json (slow only): transformers converts it
        from transformers import AutoTokenizer
    except ImportError:
        raise ModelLoadError(
            f"budget_tokenizer {tokenizer!r} has no tokenizer.json; reading its other tokenizer files "
            "needs transformers: pip install 'crossrank[torch]'",
            model=tokenizer,
        ) from None
    try:
        loaded = AutoTokenizer.from_pretrained(location, local_files_only=offline, cache_dir=cache_folder)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"budget_tokenizer {tokenizer!r} could not be loaded: {err}", model=tokenizer
        ) from None

    def count(text: str) -> int:
        return len(loaded(text, add_special_tokens=False)["input_ids"])

    return count


def _fast_tokenizer(location: str, *, offline: bool, cache_folder: str | None) -> Any:
    """The ``tokenizer.json`` of a folder or hub repository as a ``tokenizers.Tokenizer``, or None."""
    from pathlib import Path

    from tokenizers import Tokenizer

    file = Path(location) / "tokenizer.json"
    if not Path(location).is_dir():
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            file = Path(
                hf_hub_download(location, "tokenizer.json", local_files_only=offline, cache_dir=cache_folder)
            )
        except (EntryNotFoundError, LocalEntryNotFoundError):  # none in the repo: the slow path
            return None
        except Exception as err:  # the hub refused (gated, network): say so, not "no tokenizer.json"
            raise ModelLoadError(
                f"budget_tokenizer {location!r} could not be fetched: {type(err).__name__}: {err}",
                model=location,
            ) from None
    if not file.is_file():
        return None
    loaded = Tokenizer.from_file(str(file))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded
