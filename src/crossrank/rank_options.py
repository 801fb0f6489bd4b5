"""The options of one ranking call, resolved once: what the caller gave, checked, else the defaults.

Every face that ranks resolves its options here: :meth:`crossrank.Reranker.rank` (its keyword
arguments against the Reranker's own), the rerank server (a request body against the served
Reranker's), the framework adapters (their fields against the shared Reranker's). The result is a
frozen :class:`RankOptions`, which :func:`crossrank.scoring.rank_logits` turns scores into a
:class:`~crossrank.Ranking` with.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from crossrank.config import PER_CALL_OPTIONS, RerankerConfig, check_option
from crossrank.selection import SelectOptions
from crossrank.validation import check_min_score, check_normalize, check_top_n

__all__ = [
    "RANK_OPTIONS",
    "USE_DEFAULT",
    "RankArguments",
    "RankOptions",
    "UseDefault",
    "check_rank_options",
    "resolve_rank_options",
]

#: The options a ranking call may give (``top_n``, ``normalize``, ``min_score``, ``dedupe``,
#: ``max_tokens``, ``fusion``); the rest of the selection settings are the Reranker's.
RANK_OPTIONS: tuple[str, ...] = PER_CALL_OPTIONS


class UseDefault(enum.Enum):
    """The type of :data:`USE_DEFAULT`."""

    TOKEN = "USE_DEFAULT"

    def __repr__(self) -> str:
        return "USE_DEFAULT"


#: Marks a per-call option as "not given": the Reranker's own default applies (``None`` has a
#: meaning of its own, e.g. ``top_n=None`` returns every document).
USE_DEFAULT = UseDefault.TOKEN


class RankArguments(TypedDict, total=False):
    """The keyword options of ``rank``, ``arank``, ``rank_batch`` and ``arank_batch`` (with ``top_n``).

    Each defaults to the Reranker's own (:data:`USE_DEFAULT` says so explicitly).

    Attributes:
        normalize: 0-1 scores (``sigmoid(logit)``) instead of raw logits.
        min_score: Drop documents scoring below this, on the scale ``normalize`` selects (a logit
            like ``0.0``, or a probability like ``0.5``); the number dropped is in
            ``Ranking.num_below_min_score`` and logged at INFO.
        dedupe: Skip a document whose similarity (``dedupe_similarity``) to a better one already
            kept is at least this, in (0, 1] (e.g. ``0.9``; not a bool); counted in
            ``Ranking.num_duplicates``. None: off.
        max_tokens: Return the best documents while their tokens (counted by ``budget_tokenizer``,
            default the model's) add up to at most this; the best one is returned even if it alone
            is longer. ``top_n`` still caps the count. None: off.
        fusion: Order by the reranker's ranking fused with stage 1's: ``"rrf"`` (reciprocal rank,
            ``fusion_k``) or ``"weighted"`` (``fusion_weight``). Stage 1 is ``first_stage_scores``,
            or else the input order. None: the reranker's order.
    """

    normalize: bool | UseDefault
    min_score: float | UseDefault | None
    dedupe: float | UseDefault | None
    max_tokens: int | UseDefault | None
    fusion: Literal["rrf", "weighted"] | UseDefault | None


#: How each per-call option is checked: the three with rules of their own, the rest by their
#: declaration in :class:`~crossrank.RerankerConfig`.
_CHECKS: dict[str, Callable[[object], Any]] = {
    "top_n": check_top_n,
    "normalize": check_normalize,
    "min_score": check_min_score,
    "dedupe": lambda value: check_option("dedupe", value),
    "max_tokens": lambda value: check_option("max_tokens", value),
    "fusion": lambda value: check_option("fusion", value),
}


def check_rank_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ranking options present in ``values``, checked and as Python values; other keys are left out.

    Raises:
        InvalidArgumentError: One of them is invalid (the first one in :data:`RANK_OPTIONS` order).

    Example:
        >>> import numpy as np
        >>> check_rank_options({"top_n": np.int64(2), "min_score": np.float32(0.5), "model": "m"})
        {'top_n': 2, 'min_score': 0.5}
        >>> check_rank_options({"dedupe": True})
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: dedupe: expected a number, got True ...
    """
    return {name: _CHECKS[name](values[name]) for name in RANK_OPTIONS if name in values}


def resolve_rank_options(defaults: Any, **given: Any) -> dict[str, Any]:
    """The rule "the call's option, else the default", for :data:`RANK_OPTIONS`: each given one
    checked, the others (and those given as :data:`USE_DEFAULT`) read from ``defaults``' attributes.

    Raises:
        InvalidArgumentError: A given option is invalid.
        TypeError: A name that is not a per-call option (as for any unknown keyword argument).

    Example:
        >>> from types import SimpleNamespace
        >>> defaults = SimpleNamespace(top_n=5, normalize=False, min_score=None, dedupe=None,
        ...                            max_tokens=None, fusion=None)
        >>> resolve_rank_options(defaults, top_n=USE_DEFAULT, dedupe=0.9)["dedupe"]
        0.9
    """
    unknown = sorted(set(given) - set(RANK_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r}; per-call options: {', '.join(RANK_OPTIONS)}"
        )
    checked = check_rank_options({name: value for name, value in given.items() if value is not USE_DEFAULT})
    return {name: checked[name] if name in checked else getattr(defaults, name) for name in RANK_OPTIONS}


def _default(name: str) -> Any:
    """The default declared in :class:`~crossrank.RerankerConfig`: one source for every option."""
    return RerankerConfig.model_fields[name].default


@dataclass(frozen=True, slots=True)
class RankOptions:
    """Everything one ranking call needs: the per-call options and the Reranker's selection settings.

    Build it with :meth:`resolve`, which owns the rule "the call's option, else the default".

    Attributes:
        top_n, normalize, min_score, dedupe, max_tokens, fusion: As :meth:`crossrank.Reranker.rank`.
        dedupe_similarity, fusion_k, fusion_weight: How dedupe and fusion work (set per Reranker).
    """

    top_n: int | None = _default("top_n")
    normalize: bool = _default("normalize")
    min_score: float | None = _default("min_score")
    dedupe: float | None = _default("dedupe")
    max_tokens: int | None = _default("max_tokens")
    fusion: Literal["rrf", "weighted"] | None = _default("fusion")
    dedupe_similarity: Literal["jaccard", "ratio"] = _default("dedupe_similarity")
    fusion_k: int = _default("fusion_k")
    fusion_weight: float = _default("fusion_weight")

    @classmethod
    def resolve(cls, defaults: Any, **given: Any) -> RankOptions:
        """A call's options: each given one checked, the others (and :data:`USE_DEFAULT`) from ``defaults``.

        Args:
            defaults: Anything with the options and selection settings as attributes: a
                :class:`~crossrank.RerankerConfig` (``Reranker.to_config()``).
            **given: The call's options (names of :data:`RANK_OPTIONS`); :data:`USE_DEFAULT`
                counts as not given.

        Raises:
            InvalidArgumentError, TypeError: As :func:`resolve_rank_options`.

        Example:
            >>> from crossrank import RerankerConfig
            >>> options = RankOptions.resolve(RerankerConfig(top_n=5), min_score=0, top_n=USE_DEFAULT)
            >>> options.top_n, options.min_score, options.normalize
            (5, 0.0, False)
        """
        settings = {
            name: getattr(defaults, name) for name in ("dedupe_similarity", "fusion_k", "fusion_weight")
        }
        return cls(**resolve_rank_options(defaults, **given), **settings)

    @property
    def select_options(self) -> SelectOptions:
        """The selection part (all but ``normalize``), for :func:`crossrank.selection.select`."""
        return SelectOptions(
            top_n=self.top_n,
            min_score=self.min_score,
            dedupe=self.dedupe,
            dedupe_similarity=self.dedupe_similarity,
            max_tokens=self.max_tokens,
            fusion=self.fusion,
            fusion_k=self.fusion_k,
            fusion_weight=self.fusion_weight,
        )
