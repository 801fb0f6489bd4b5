"""What every framework adapter of crossrank does the same way, in one place.

The adapters (``langchain-crossrank``, ``llama-index-postprocessor-crossrank``) are thin: they take
the model from exactly one of ``model=`` (with ``device=``), a shared ``reranker=`` or a
``config=``, keep the ranking options ``top_n``, ``normalize`` and ``min_score``, and check the
framework objects they are called with. This module holds those rules, so both adapters accept and
refuse the same things, at the same moment, with the same messages:

* at construction, :func:`resolve_reranker` (the model source) and :func:`rank_options` /
  :func:`check_rank_options` (the options; the same checks :meth:`crossrank.Reranker.rank` applies
  per call) raise :class:`~crossrank.InvalidArgumentError`;
* at call time, :func:`check_items` raises :class:`~crossrank.DocumentTypeError` naming the index
  of the first item that is not the framework's document type.

Nothing here imports a framework; a new adapter needs only these functions.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Set
from typing import Any

import numpy as np

from crossrank.config import DEFAULT_MODEL, PER_CALL_OPTIONS, check_option
from crossrank.errors import DocumentTypeError, InvalidArgumentError
from crossrank.reranker import Reranker, _check_min_score, _check_top_n

__all__ = [
    "LOADER_OPTIONS",
    "RANK_OPTIONS",
    "check_items",
    "check_min_score",
    "check_normalize",
    "check_rank_options",
    "check_top_n",
    "rank_options",
    "resolve_reranker",
    "settle",
]

#: The options an adapter keeps and passes to every ``rank`` call: ``top_n``, ``normalize``,
#: ``min_score``, ``dedupe``, ``max_tokens``, ``fusion``.
RANK_OPTIONS: tuple[str, ...] = PER_CALL_OPTIONS
#: The options, besides ``model``, that an adapter passes on when it loads the model itself; a
#: ``reranker`` or ``config`` has made these choices already.
LOADER_OPTIONS: tuple[str, ...] = ("device",)


def check_top_n(top_n: object) -> int | None:
    """``top_n`` as a Python ``int``, or None: an integral number >= 1 (numpy's too), not a bool.

    The check :meth:`Reranker.rank` applies to its ``top_n``.

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
    return _check_top_n(top_n)


def check_min_score(min_score: object) -> float | None:
    """``min_score`` as a Python ``float``, or None: a real number (numpy's too), not NaN, not a bool.

    The check :meth:`Reranker.rank` applies to its ``min_score`` (infinities pass: ``-inf`` keeps
    everything, ``inf`` nothing).

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
    return _check_min_score(min_score)


def check_normalize(normalize: object) -> bool:
    """``normalize`` as a Python ``bool``: ``True``/``False`` or numpy's bools (as :meth:`Reranker.rank`).

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


_CHECKS: dict[str, Any] = {
    "top_n": check_top_n,
    "normalize": check_normalize,
    "min_score": check_min_score,
    **{name: functools.partial(check_option, name) for name in ("dedupe", "max_tokens", "fusion")},
}


def check_rank_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ranking options present in ``values``, checked and as Python values; other keys are left out.

    What an adapter runs on its raw keyword arguments, before its framework coerces them (pydantic
    would take ``top_n=True`` as ``1``).

    Raises:
        InvalidArgumentError: One of them is invalid (the first one in ``RANK_OPTIONS`` order).

    Example:
        >>> import numpy as np
        >>> check_rank_options({"top_n": np.int64(2), "min_score": np.float32(0.5), "model": "m"})
        {'top_n': 2, 'min_score': 0.5}
        >>> check_rank_options({"top_n": 0})
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: top_n must be a positive int or None, got 0
    """
    return {name: _CHECKS[name](values[name]) for name in RANK_OPTIONS if name in values}


def rank_options(reranker: Any, values: Mapping[str, Any], given: Set[str]) -> dict[str, Any]:
    """The :data:`RANK_OPTIONS` to rank with: given ones checked, others the reranker's.

    Args:
        reranker: The :class:`~crossrank.Reranker` whose defaults fill the options not given
            (anything with the :data:`RANK_OPTIONS` as attributes).
        values: The adapter's values of the options (other keys are ignored).
        given: The names the caller passed explicitly (e.g. pydantic's ``model_fields_set``).

    Returns:
        All the options, as Python values.

    Raises:
        InvalidArgumentError: A given option is invalid; the message names it and the value.

    Example:
        >>> from types import SimpleNamespace
        >>> shared = SimpleNamespace(top_n=5, normalize=True, min_score=0.2, dedupe=None)
        >>> shared.max_tokens = shared.fusion = None
        >>> rank_options(shared, {"top_n": 3, "dedupe": 0.8}, given={"top_n", "dedupe"})
        {'top_n': 3, 'normalize': True, 'min_score': 0.2, 'dedupe': 0.8, 'max_tokens': None, 'fusion': None}
        >>> rank_options(shared, {"min_score": float("nan")}, given={"min_score"})
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: min_score must be a number (not NaN) or None, got nan
    """
    checked = check_rank_options(
        {name: values[name] for name in RANK_OPTIONS if name in given and name in values}
    )
    return {name: checked[name] if name in checked else getattr(reranker, name) for name in RANK_OPTIONS}


def resolve_reranker(
    *,
    model: str | os.PathLike[str] | None,
    reranker: Reranker | None,
    config: Any,
    given: Set[str],
    loader_options: Mapping[str, Any],
) -> Reranker:
    """The :class:`~crossrank.Reranker` an adapter ranks with, from exactly one source.

    The sources: ``model`` (loaded here with ``loader_options``, i.e. ``device``), ``reranker`` (a
    ready Reranker, used as is: one loaded model serves many adapters) or ``config`` (a
    :class:`~crossrank.RerankerConfig` or a dict of its fields, built with
    :meth:`Reranker.from_config`). ``model`` and the loader options count as passed when their name
    is in ``given`` and their value is not None (an adapter always holds a ``model`` value, its
    default); ``reranker`` and ``config`` when they are not None. The check comes before any loading.

    Args:
        model: Hub id or local directory; None means crossrank's default model.
        reranker: A ready Reranker, or None.
        config: A RerankerConfig (or a dict of its fields), or None.
        given: The names the caller passed explicitly (e.g. pydantic's ``model_fields_set``).
        loader_options: Options for ``Reranker(model, **loader_options)``, e.g. ``{"device": "cpu"}``;
            the names are those of :data:`LOADER_OPTIONS`.

    Raises:
        InvalidArgumentError: More than one source was passed (``model`` or ``device`` with
            ``reranker`` or ``config``, or both of those); the message lists them.
        ModelLoadError: ``model`` or the config's model can't be loaded.

    Example:
        >>> resolve_reranker(model="m", reranker=None, config={"model": "m"}, given={"model"},
        ...                  loader_options={"device": "cpu"})
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: the model comes from ...; got `model` and `config`. ...
    """
    loading = {"model": model, **loader_options}
    passed = [name for name, value in loading.items() if name in given and value is not None]
    passed += [name for name, value in (("reranker", reranker), ("config", config)) if value is not None]
    if len(passed) > 1 and (reranker is not None or config is not None):
        listed = [f"`{name}`" for name in passed]
        raise InvalidArgumentError(
            "the model comes from exactly one of `model=` (with `device=`), `reranker=` or `config=`; "
            f"got {', '.join(listed[:-1])} and {listed[-1]}. A reranker or config already names its "
            "model and device: pass `reranker=` to share a loaded model, `config=` to build one from "
            "settings (device included), or `model=` (and `device=`) to load one here."
        )
    if reranker is not None:
        if not isinstance(reranker, Reranker):
            raise InvalidArgumentError(
                f"reranker must be a crossrank.Reranker, got {type(reranker).__name__}"
            )
        return reranker
    if config is not None:
        return Reranker.from_config(config)
    return Reranker(DEFAULT_MODEL if model is None else model, **loader_options)


def settle(adapter: Any) -> Reranker:
    """Resolve the Reranker of a pydantic adapter and fill in what it holds; return the Reranker.

    ``adapter`` has the fields ``model``, ``device``, ``reranker``, ``config`` and
    :data:`RANK_OPTIONS`, and pydantic's ``model_fields_set`` (the names the caller passed). The
    model comes from exactly one source (:func:`resolve_reranker`); rank options not passed take the
    Reranker's defaults (:func:`rank_options`); afterwards ``model``, ``device`` and ``reranker``
    report what is in use. Both framework adapters call this from their ``after`` validator.
    """
    given = set(adapter.model_fields_set)  # the names passed (the setattr below adds to the live set)
    reranker = resolve_reranker(
        model=adapter.model,
        reranker=adapter.reranker,
        config=adapter.config,
        given=given,
        loader_options={"device": adapter.device},
    )
    for name, value in rank_options(
        reranker, {name: getattr(adapter, name) for name in RANK_OPTIONS}, given
    ).items():
        setattr(adapter, name, value)
    adapter.model, adapter.device, adapter.reranker = reranker.model_name, reranker.device, reranker
    return reranker


def check_items(
    items: object, expected_type: type | tuple[type, ...], *, name: str, type_label: str, hint: str = ""
) -> list[Any]:
    """``items`` as a new list, after checking it is an ordered collection of ``expected_type``.

    What an adapter calls on the documents or nodes it is given, before it reads their text.

    Args:
        items: What the framework passed (a list or tuple; any ordered iterable).
        expected_type: The framework's document type, e.g. LangChain's ``Document``.
        name: The argument's name in messages (``"documents"``, ``"nodes"``).
        type_label: The type as the message shows it (``"langchain_core.documents.Document"``).
        hint: How to make one, added to the message of a wrong item, e.g.
            ``"wrap text as Document(page_content=text)"``.

    Raises:
        DocumentTypeError: ``items`` is a single item, a ``str``, a set or mapping, or not
            iterable; or an item is not an ``expected_type`` (the message names its index and type).

    Example:
        >>> check_items(["a", "b"], str, name="texts", type_label="str")
        ['a', 'b']
        >>> check_items(["a", None], str, name="texts", type_label="str", hint="pass the text")
        Traceback (most recent call last):
        ...
        crossrank.errors.DocumentTypeError: texts[1] is NoneType, expected a str (pass the text)
        >>> check_items("a", str, name="texts", type_label="str")
        Traceback (most recent call last):
        ...
        crossrank.errors.DocumentTypeError: texts must be a list of str, got str; wrap it in a list
    """
    single = isinstance(items, expected_type)
    if single or isinstance(items, (str, bytes, Set, Mapping)) or not isinstance(items, Iterable):
        raise DocumentTypeError(
            f"{name} must be a list of {type_label}, got {type(items).__name__}"
            + ("; wrap it in a list" if single else "")
        )
    checked = list(items)
    for i, item in enumerate(checked):
        if not isinstance(item, expected_type):
            raise DocumentTypeError(
                f"{name}[{i}] is {type(item).__name__}, expected a {type_label}"
                + (f" ({hint})" if hint else "")
            )
    return checked
