"""The cases every framework adapter of crossrank must pass, written once for all of them.

The rules of :mod:`crossrank.adapters` (one model source; ``top_n``, ``normalize`` and
``min_score`` checked at construction; the framework's items checked at call time, by index) hold
for every adapter with the same error types and messages. Each case here is data plus the check
that runs it; an adapter's test module describes its adapter once, as an :class:`AdapterKit`, and
runs every case of :data:`CASES` on it::

    import pytest
    from crossrank.adapter_cases import CASES, AdapterKit

    KIT = AdapterKit(adapter=MyAdapter, good_item=..., wrong_item=..., wrong_name=..., call=..., acall=...)

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_shared_rule(case):
        case.run(KIT)  # ranks with crossrank.testing.FakeEngine: no model file

:func:`check_device_is_an_option` is the one case that loads a real model (given its directory).

An adapter here is a pydantic model (as both framework adapters are): it refuses an option by
raising :class:`pydantic.ValidationError` over crossrank's :class:`~crossrank.InvalidArgumentError`.
This module imports no framework and no test runner; a failed case raises ``AssertionError``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from crossrank.config import RerankerConfig
from crossrank.errors import DocumentTypeError, InvalidArgumentError
from crossrank.reranker import Reranker

__all__ = [
    "ACCEPTED_OPTIONS",
    "BAD_ITEMS",
    "BAD_OPTIONS",
    "CASES",
    "CLASHING_SOURCES",
    "CLASHING_WITH_CONFIG",
    "MISSING_CONFIG",
    "SHARED_RERANKER",
    "SOURCES",
    "AdapterKit",
    "Case",
    "check_device_is_an_option",
    "fake_reranker",
]

#: Stands for the Reranker the cases run with (the adapter test's own, shared).
SHARED_RERANKER = "<the test's Reranker>"
#: Stands for a RerankerConfig naming a model that doesn't exist (a source check loads nothing).
MISSING_CONFIG = "<a RerankerConfig naming a model that doesn't exist>"
#: How every "more than one model source" message starts.
SOURCES = "the model comes from exactly one of `model=` (with `device=`), `reranker=` or `config=`; "


@dataclass(frozen=True)
class AdapterKit:
    """One adapter, as the cases see it.

    Attributes:
        adapter: Builds the adapter from keyword arguments (its class).
        good_item: A new framework item (a LangChain ``Document``, a LlamaIndex ``NodeWithScore``)
            holding a text.
        wrong_item: A new item of a type the adapter must refuse, one users are likely to pass (a
            ``(Document, score)`` tuple, a bare ``TextNode``).
        wrong_name: ``type(wrong_item()).__name__``, as the message names it.
        call: Ranks a list of items with the adapter, synchronously; returns the items kept.
        acall: The same through the adapter's async method (run to completion).
    """

    adapter: Callable[..., Any]
    good_item: Callable[[], Any]
    wrong_item: Callable[[], Any]
    wrong_name: str
    call: Callable[[Any, Any], list[Any]]
    acall: Callable[[Any, Any], list[Any]]


@dataclass(frozen=True)
class Case:
    """One case of a shared rule: its data and the check that runs it on an adapter.

    Attributes:
        id: A name for test reports, ``rule:variant`` (e.g. ``bad-option:top_n=0``).
        check: ``check(kit, reranker, case)``; raises ``AssertionError`` when the adapter breaks the rule.
        options: The adapter's keyword arguments (:data:`SHARED_RERANKER` and :data:`MISSING_CONFIG`
            stand for the objects they name).
        expected: What the check expects: a message fragment, or the values read back.
        items: Makes the items to call the adapter with (given the kit).
    """

    id: str
    check: Callable[[AdapterKit, Reranker, Case], None]
    options: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None
    items: Callable[[AdapterKit], Any] | None = None

    def run(self, kit: AdapterKit, reranker: Reranker | None = None) -> None:
        """Run this case on ``kit``'s adapter, ranking with ``reranker`` (default: :func:`fake_reranker`)."""
        self.check(kit, fake_reranker() if reranker is None else reranker, self)

    def kwargs(self, reranker: Reranker) -> dict[str, Any]:
        """:attr:`options` with the placeholders replaced by what they stand for."""
        placeholders = {SHARED_RERANKER: reranker, MISSING_CONFIG: RerankerConfig(model="/no/such/model")}
        return {
            name: placeholders.get(value, value) if isinstance(value, str) else value
            for name, value in self.options.items()
        }

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Case({self.id})"


@functools.cache
def fake_reranker() -> Reranker:
    """The Reranker the cases rank with by default: over :class:`crossrank.testing.FakeEngine` (no
    model file, no torch), made once and shared (the cases only read from it)."""
    from crossrank.testing import FakeEngine

    return Reranker.from_backend(FakeEngine())


def check_device_is_an_option(kit: AdapterKit, model_dir: str | os.PathLike[str]) -> None:
    """``model=`` and ``device=`` load the model here; afterwards the adapter reports both, and ranks.

    Args:
        kit: The adapter.
        model_dir: A local cross-encoder (loading it takes seconds).
    """
    adapter = kit.adapter(model=model_dir, device="cpu", top_n=1)
    got = (adapter.model, adapter.device, adapter.reranker.device)
    _expect(got == (os.fspath(model_dir), "cpu", "cpu"), f"model, device, reranker.device: {got}")
    _expect(len(kit.call(adapter, [kit.good_item(), kit.good_item()])) == 1, "top_n=1 not applied")


# ------------------------------------------------------------------ the checks


def _expect(condition: object, message: str) -> None:
    """``assert``, kept under ``python -O``."""
    if not condition:
        raise AssertionError(message)


def _refused_at_construction(kit: AdapterKit, reranker: Reranker, case: Case) -> None:
    """Construction raises pydantic's ValidationError (a ValueError) over crossrank's
    InvalidArgumentError, with crossrank's message."""
    try:
        kit.adapter(**case.kwargs(reranker))
    except ValidationError as err:
        _expect(isinstance(err, ValueError), f"{case.id}: a ValidationError that is not a ValueError")
        _expect(case.expected in str(err), f"{case.id}: {case.expected!r} not in {str(err)!r}")
        problems = err.errors()
        cause = problems[0].get("ctx", {}).get("error") if len(problems) == 1 else None
        _expect(
            isinstance(cause, InvalidArgumentError), f"{case.id}: not one InvalidArgumentError: {problems}"
        )
    else:
        raise AssertionError(f"{case.id}: {dict(case.options)} was accepted")


def _accepted_as_python_values(kit: AdapterKit, reranker: Reranker, case: Case) -> None:
    """numpy numbers are read back as the Python numbers they stand for, and the adapter ranks."""
    adapter = kit.adapter(**case.kwargs(reranker))
    for name, value in case.expected.items():
        got = getattr(adapter, name)
        _expect(got == value and type(got) is type(value), f"{case.id}: {name}={got!r}, expected {value!r}")
    out = kit.call(adapter, [kit.good_item(), kit.good_item(), kit.good_item()])
    _expect(len(out) <= (adapter.top_n or 3), f"{case.id}: {len(out)} items returned")


def _items_refused(call: Callable[[AdapterKit], Callable[[Any, Any], list[Any]]]) -> Callable[..., None]:
    def check(kit: AdapterKit, reranker: Reranker, case: Case) -> None:
        """Construction is fine; the call raises DocumentTypeError (a TypeError) naming the item."""
        if case.items is None:
            raise AssertionError(f"{case.id}: no items")
        adapter = kit.adapter(reranker=reranker)
        fragment = case.expected.format(wrong_name=kit.wrong_name)
        try:
            call(kit)(adapter, case.items(kit))
        except DocumentTypeError as err:
            _expect(isinstance(err, TypeError), f"{case.id}: a DocumentTypeError that is not a TypeError")
            _expect(fragment in str(err), f"{case.id}: {fragment!r} not in {str(err)!r}")
        else:
            raise AssertionError(f"{case.id}: the items were accepted")

    return check


# ------------------------------------------------------------------ the cases


def _cases(
    rule: str, check: Callable[..., None], rows: list[tuple[str, Any, Any]], **base: Any
) -> list[Case]:
    return [Case(f"{rule}:{name}", check, {**base, **options}, expected) for name, options, expected in rows]


#: Invalid ranking options, next to a shared reranker: refused at construction with crossrank's message.
BAD_OPTIONS = _cases(
    "bad-option",
    _refused_at_construction,
    [
        ("min_score=nan", {"min_score": math.nan}, "min_score must be a number (not NaN) or None, got nan"),
        ("min_score=str", {"min_score": "0.5"}, "min_score must be a number (not NaN) or None, got '0.5'"),
        ("min_score=True", {"min_score": True}, "min_score must be a number (not NaN) or None, got True"),
        ("top_n=0", {"top_n": 0}, "top_n must be a positive int or None, got 0"),
        ("top_n=-3", {"top_n": -3}, "top_n must be a positive int or None, got -3"),
        ("top_n=True", {"top_n": True}, "top_n must be a positive int or None, got True"),
        ("top_n=2.0", {"top_n": 2.0}, "top_n must be a positive int or None, got 2.0"),
        ("normalize=str", {"normalize": "yes"}, "normalize must be True or False, got 'yes'"),
        ("normalize=1", {"normalize": 1}, "normalize must be True or False, got 1"),
    ],
    reranker=SHARED_RERANKER,
)
#: A second model source next to ``reranker=``: refused, the message listing them.
CLASHING_SOURCES = _cases(
    "second-source-next-to-reranker",
    _refused_at_construction,
    [
        ("model", {"model": "other/model"}, SOURCES + "got `model` and `reranker`"),
        ("device", {"device": "cpu"}, SOURCES + "got `device` and `reranker`"),
        ("model+device", {"model": "m", "device": "cpu"}, SOURCES + "got `model`, `device` and `reranker`"),
        ("config", {"config": MISSING_CONFIG}, SOURCES + "got `reranker` and `config`"),
    ],
    reranker=SHARED_RERANKER,
)
#: A second model source next to ``config=``: refused before anything is loaded.
CLASHING_WITH_CONFIG = _cases(
    "second-source-next-to-config",
    _refused_at_construction,
    [
        ("model", {"model": "other/model"}, SOURCES + "got `model` and `config`"),
        ("device", {"device": "cpu"}, SOURCES + "got `device` and `config`"),
    ],
    config=MISSING_CONFIG,
)
#: numpy numbers (as retrievers and vector stores hand them out) accepted as Python numbers.
ACCEPTED_OPTIONS = _cases(
    "numpy-number-accepted",
    _accepted_as_python_values,
    [
        ("top_n=np.int64", {"top_n": np.int64(2)}, {"top_n": 2}),
        ("top_n=None", {"top_n": None}, {"top_n": None}),
        ("min_score=np.float32", {"min_score": np.float32(0.5), "normalize": True}, {"min_score": 0.5}),
        ("min_score=np.int64", {"min_score": np.int64(-2)}, {"min_score": -2.0}),
        ("normalize=np.bool_", {"normalize": np.bool_(True)}, {"normalize": True}),
    ],
    reranker=SHARED_RERANKER,
)

#: What to call the adapter with, and a fragment of the message (``{wrong_name}``: the kit's).
_BAD_ITEMS: list[tuple[str, Callable[[AdapterKit], Any], str]] = [
    ("holding-None", lambda kit: [kit.good_item(), None], "[1] is NoneType, expected a "),
    ("holding-a-str", lambda kit: [kit.good_item(), "plain text"], "[1] is str, expected a "),
    (
        "holding-wrong-type",
        lambda kit: [kit.good_item(), kit.wrong_item()],
        "[1] is {wrong_name}, expected a ",
    ),
    ("holding-a-dict", lambda kit: [{"text": "fleas"}], "[0] is dict, expected a "),
    ("one-item-not-in-a-list", lambda kit: kit.good_item(), "; wrap it in a list"),
    ("a-str", lambda kit: "fleas", " must be a list of "),
    ("None", lambda kit: None, ", got NoneType"),
]
#: Items of the wrong kind, sync and async: refused at call time, the message naming the index.
BAD_ITEMS = [
    Case(f"bad-items-{mode}:{name}", _items_refused(call), expected=fragment, items=items)
    for mode, call in (("sync", lambda kit: kit.call), ("async", lambda kit: kit.acall))
    for name, items, fragment in _BAD_ITEMS
]

#: Every shared case.
CASES: list[Case] = [*BAD_OPTIONS, *CLASHING_SOURCES, *CLASHING_WITH_CONFIG, *ACCEPTED_OPTIONS, *BAD_ITEMS]
