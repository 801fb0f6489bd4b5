"""Every check of what a caller hands crossrank: queries, documents, requests, per-call options, engines.

One owner per rule: :class:`crossrank.Reranker`, the rerank server, Ray and the framework adapters
all check through these functions, so they accept and refuse the same things with the same
messages, in the caller's frame, before any work. Options declared in
:class:`~crossrank.RerankerConfig` are checked against that declaration
(:func:`crossrank.config.check_option`); the functions here add what a declaration can't say
(numpy scalars, bools posing as numbers, a token count of zero).

Example:
    >>> check_top_n(2), check_min_score(-1)
    (2, -1.0)
    >>> check_documents("one text")
    Traceback (most recent call last):
    ...
    crossrank.errors.DocumentTypeError: documents must be a list of str, got a single str; wrap it in a list
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any

import numpy as np

from crossrank.errors import DocumentTypeError, EmptyQueryError, InvalidArgumentError
from crossrank.selection import check_first_stage

__all__ = [
    "ENGINE_ATTRIBUTES",
    "CheckedRequest",
    "as_list",
    "check_documents",
    "check_engine",
    "check_min_score",
    "check_normalize",
    "check_pairs",
    "check_query",
    "check_requests",
    "check_top_n",
]

#: A checked request: the query and a new list of the caller's ``str`` objects.
CheckedRequest = tuple[str, list[str]]

#: What an engine must have to score for a Reranker (:class:`crossrank.backends.Backend`).
ENGINE_ATTRIBUTES = (
    "name",
    "device",
    "tokenizer",
    "max_positions",
    "pad_token_id",
    "uses_token_type_ids",
    "batch_overhead_tokens",
    "default_batch_size",
    "batch_invariant",
    "logits",
)


def check_top_n(top_n: object) -> int | None:
    """``top_n`` as a Python ``int``, or None: an integral number >= 1 (numpy's too), not a bool.

    Raises:
        InvalidArgumentError: ``top_n`` is not a positive integer or None.

    Example:
        >>> import numpy as np
        >>> check_top_n(np.int64(2)), check_top_n(None)
        (2, None)
        >>> check_top_n(True)
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: top_n must be a positive int or None, got True
    """
    if top_n is None:
        return None
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, numbers.Integral) or top_n < 1:
        raise InvalidArgumentError(f"top_n must be a positive int or None, got {top_n!r}")
    return int(top_n)


def check_min_score(min_score: object) -> float | None:
    """``min_score`` as a Python ``float``, or None: a real number (numpy's too), not NaN, not a bool.

    Infinities pass: ``-inf`` keeps everything, ``inf`` nothing.

    Raises:
        InvalidArgumentError: ``min_score`` is not a number, is NaN, or is a bool.

    Example:
        >>> import numpy as np
        >>> check_min_score(np.float32(0.5)), check_min_score(-2)
        (0.5, -2.0)
        >>> check_min_score(float("nan"))
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: min_score must be a number (not NaN) or None, got nan
    """
    if min_score is None:
        return None
    if (
        isinstance(min_score, (bool, np.bool_))
        or not isinstance(min_score, numbers.Real)
        or math.isnan(min_score)
    ):
        raise InvalidArgumentError(f"min_score must be a number (not NaN) or None, got {min_score!r}")
    return float(min_score)


def check_normalize(normalize: object) -> bool:
    """``normalize`` as a Python ``bool``: ``True``/``False`` or numpy's bools, nothing else.

    Raises:
        InvalidArgumentError: ``normalize`` is anything else (``1``, ``"yes"``, ``None``).

    Example:
        >>> import numpy as np
        >>> check_normalize(np.bool_(True))
        True
        >>> check_normalize(1)
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: normalize must be True or False, got 1
    """
    if not isinstance(normalize, (bool, np.bool_)):
        raise InvalidArgumentError(f"normalize must be True or False, got {normalize!r}")
    return bool(normalize)


def check_query(query: object, count_tokens: Callable[[str], int], *, where: str = "query") -> str:
    """Return ``query`` if a model can rank against it: a ``str`` with at least one token.

    Args:
        query: What the caller passed.
        count_tokens: The model's token counter (``Reranker.count_tokens``).
        where: The name messages give the query (``"requests[2]: query"``).

    Raises:
        DocumentTypeError: ``query`` is not a ``str``.
        EmptyQueryError: It has no tokens: empty, whitespace, or only control or zero-width
            characters (which pass ``str.strip()`` but give the model nothing to read).

    Example:
        >>> check_query("\\u200b", lambda text: 0)
        Traceback (most recent call last):
        ...
        crossrank.errors.EmptyQueryError: query has no tokens the model can read ...
    """
    if not isinstance(query, str):
        raise DocumentTypeError(f"{where} must be a str, got {type(query).__name__}")
    if not query.strip() or count_tokens(query) == 0:
        raise EmptyQueryError(
            f"{where} has no tokens the model can read (empty, whitespace, or only control or "
            f"zero-width characters: {query[:20]!r}); there is nothing to rank documents against"
        )
    return query


def check_documents(documents: object, *, where: str = "documents") -> list[str]:
    """``documents`` as a new list of the caller's ``str`` objects, in order.

    Raises:
        DocumentTypeError: A single ``str``, an unordered collection (a set, a dict), something not
            iterable, or an item that is not a ``str`` (the message names its index).

    Example:
        >>> check_documents(("a", "b"))
        ['a', 'b']
        >>> check_documents(["a", 3])
        Traceback (most recent call last):
        ...
        crossrank.errors.DocumentTypeError: documents[1] is int, expected str ...
    """
    if isinstance(documents, (str, bytes)):
        raise DocumentTypeError(
            f"{where} must be a list of str, got a single {type(documents).__name__}; wrap it in a list"
        )
    if isinstance(documents, (Set, Mapping)):
        raise DocumentTypeError(
            f"{where} must be ordered (a list or tuple), got a {type(documents).__name__}: results "
            "carry each document's index, which an unordered collection doesn't have"
        )
    if not isinstance(documents, Iterable):
        raise DocumentTypeError(f"{where} must be a list of str, got {type(documents).__name__}")
    texts = list(documents)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DocumentTypeError(
                f"{where}[{i}] is {type(text).__name__}, expected str "
                "(pass the text of your objects, e.g. doc.page_content or node.get_content())"
            )
    return texts


def check_requests(
    requests: object, count_tokens: Callable[[str], int]
) -> tuple[list[CheckedRequest], list[list[float] | None]]:
    """Every request of a batch checked, and each one's stage-1 scores (None where not given).

    Raises:
        DocumentTypeError, EmptyQueryError, InvalidArgumentError: A bad request; the message
            names it (``requests[3]: documents[2] is int``). Nothing is scored if one is bad.

    Example:
        >>> check_requests([("q", ["a"]), ("q", ["b", "c"], [2, 1])], len)
        ([('q', ['a']), ('q', ['b', 'c'])], [None, [2.0, 1.0]])
    """
    if isinstance(requests, (str, bytes, Set, Mapping)) or not isinstance(requests, Iterable):
        raise DocumentTypeError(
            f"requests must be a list of (query, documents) pairs, got {type(requests).__name__}"
        )
    checked: list[CheckedRequest] = []
    first_stages: list[list[float] | None] = []
    for i, request in enumerate(requests):
        if not isinstance(request, tuple) or len(request) not in (2, 3):
            raise DocumentTypeError(
                f"requests[{i}] must be a (query, documents) pair or a RerankRequest, "
                f"got {type(request).__name__}"
            )
        where = f"requests[{i}]: "
        query = check_query(request[0], count_tokens, where=f"{where}query")
        texts = check_documents(request[1], where=f"{where}documents")
        checked.append((query, texts))
        first_stage = request[2] if len(request) == 3 else None
        first_stages.append(check_first_stage(first_stage, len(texts), where=f"{where}first_stage_scores"))
    return checked, first_stages


def check_pairs(
    queries: object, texts: object, count_tokens: Callable[[str], int]
) -> tuple[list[CheckedRequest], list[list[int]]]:
    """Row-aligned ``(queries[i], texts[i])`` checked and grouped by query: one request per distinct query.

    Returns:
        The requests, and for each its rows (positions in ``queries``), in the same order.

    Raises:
        InvalidArgumentError: ``queries`` and ``texts`` differ in length.
        EmptyQueryError, DocumentTypeError: A bad row (the message names it).

    Example:
        >>> check_pairs(["q", "r", "q"], ["a", "b", "c"], len)
        ([('q', ['a', 'c']), ('r', ['b'])], [[0, 2], [1]])
    """
    queries, texts = as_list(queries, "queries"), as_list(texts, "texts")
    if len(queries) != len(texts):
        raise InvalidArgumentError(
            f"queries and texts must be row-aligned; got {len(queries)} queries and {len(texts)} texts"
        )
    rows_of: dict[str, list[int]] = {}
    for row, (query, text) in enumerate(zip(queries, texts, strict=True)):
        check_query(query, count_tokens, where=f"queries[{row}]")
        if not isinstance(text, str):
            raise DocumentTypeError(f"texts[{row}] is {type(text).__name__}, expected str")
        rows_of.setdefault(query, []).append(row)
    requests = [(query, [texts[row] for row in rows]) for query, rows in rows_of.items()]
    return requests, list(rows_of.values())


def as_list(values: object, what: str) -> list[Any]:
    """``values`` as a new list: an ordered iterable that is not a ``str``, a set or a mapping.

    Example:
        >>> as_list(("a", "b"), "texts")
        ['a', 'b']
    """
    if isinstance(values, (str, bytes, Set, Mapping)) or not isinstance(values, Iterable):
        raise DocumentTypeError(f"{what} must be a list, got {type(values).__name__}")
    return list(values)


def check_engine(engine: object) -> Any:
    """``engine`` if it has every attribute of :class:`crossrank.backends.Backend`.

    Raises:
        InvalidArgumentError: It lacks some (all are named).

    Example:
        >>> check_engine(object())
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: backend must be a backend name or an engine ...
    """
    missing = [name for name in ENGINE_ATTRIBUTES if not hasattr(engine, name)]
    if missing:
        raise InvalidArgumentError(
            f"backend must be a backend name or an engine with the crossrank.backends.Backend interface; "
            f"{type(engine).__name__} lacks {', '.join(missing)}"
        )
    return engine
