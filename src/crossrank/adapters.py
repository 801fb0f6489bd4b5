"""What every framework adapter of crossrank does the same way, in one place.

The adapters (``langchain-crossrank``, ``llama-index-postprocessor-crossrank``) are thin: they take
the model from exactly one of ``model=`` (with ``device=``), a shared ``reranker=`` or a
``config=``, keep the ranking options ``top_n``, ``normalize`` and ``min_score``, and check the
framework objects they are called with. This module holds those rules, so both adapters accept and
refuse the same things, at the same moment, with the same messages:

* at construction, :func:`resolve_reranker` (the model source) and :func:`rank_options` /
  :func:`check_rank_options` (the options; the same checks :meth:`crossrank.Reranker.rank` applies
  per call, owned by :mod:`crossrank.validation` and :mod:`crossrank.rank_options` and re-exported
  here) raise :class:`~crossrank.InvalidArgumentError`;
* at call time, :func:`check_items` raises :class:`~crossrank.DocumentTypeError` naming the index
  of the first item that is not the framework's document type.

Nothing here imports a framework; a new adapter needs only these functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Set
from typing import Any

from crossrank.config import DEFAULT_MODEL
from crossrank.errors import DocumentTypeError, InvalidArgumentError
from crossrank.rank_options import RANK_OPTIONS, check_rank_options, resolve_rank_options
from crossrank.reranker import Reranker
from crossrank.validation import check_min_score, check_normalize, check_top_n

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

#: The options, besides ``model``, that an adapter passes on when it loads the model itself; a
#: ``reranker`` or ``config`` has made these choices already.
LOADER_OPTIONS: tuple[str, ...] = ("device",)


def rank_options(reranker: Any, values: Mapping[str, Any], given: Set[str]) -> dict[str, Any]:
    """The :data:`RANK_OPTIONS` to rank with: given ones checked, others the reranker's.

    :func:`crossrank.rank_options.resolve_rank_options` applied to an adapter's fields.

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
        >>> from crossrank import RerankerConfig
        >>> shared = RerankerConfig(top_n=5, normalize=True, min_score=0.2)
        >>> rank_options(shared, {"top_n": 3, "dedupe": 0.8}, given={"top_n", "dedupe"})
        {'top_n': 3, 'normalize': True, 'min_score': 0.2, 'dedupe': 0.8, 'max_tokens': None, 'fusion': None}
        >>> rank_options(shared, {"min_score": float("nan")}, given={"min_score"})
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: min_score must be a number (not NaN) or None, got nan
    """
    passed = {name: values[name] for name in RANK_OPTIONS if name in given and name in values}
    return resolve_rank_options(reranker, **passed)


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
