"""crossrank.adapters: the rules both framework adapters share (model source, rank options, items)."""

from __future__ import annotations

import dataclasses
import doctest
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, model_validator

import crossrank.adapter_cases as adapter_cases
import crossrank.adapters as adapters
from crossrank import DEFAULT_MODEL, DocumentTypeError, InvalidArgumentError, Reranker, RerankerConfig
from crossrank.adapter_cases import AdapterKit
from crossrank.adapters import (
    LOADER_OPTIONS,
    RANK_OPTIONS,
    check_items,
    check_min_score,
    check_normalize,
    check_rank_options,
    check_top_n,
    rank_options,
    resolve_reranker,
)
from crossrank.config import OPTION_GROUPS, PER_CALL_OPTIONS

SOURCES = "the model comes from exactly one of `model=` (with `device=`), `reranker=` or `config=`; "


def test_docstring_examples_run() -> None:
    """The adapters' rules and the checks they re-export (owned by crossrank.validation and
    crossrank.rank_options) run their examples."""
    from crossrank import rank_options, validation

    for module in (adapters, validation, rank_options):
        outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
        assert outcome.attempted >= 3 and outcome.failed == 0, module.__name__


def test_imports_no_framework() -> None:
    code = (
        "import sys, crossrank.adapters, crossrank.adapter_cases; "
        "print([m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'llama_index')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_option_names_come_from_the_config() -> None:
    assert RANK_OPTIONS == OPTION_GROUPS["ranking"] == PER_CALL_OPTIONS
    assert RANK_OPTIONS == ("top_n", "normalize", "min_score", "dedupe", "max_tokens", "fusion")
    assert set(LOADER_OPTIONS) <= set(RerankerConfig.model_fields)


# ------------------------------------------------------------------ the option checks


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (3, 3), (np.int64(2), 2), (np.uint8(7), 7), (None, None)],
)
def test_check_top_n_accepts_positive_integers(value: object, expected: int | None) -> None:
    checked = check_top_n(value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize("value", [0, -1, True, False, np.bool_(True), 2.0, "3", np.int64(0), [3]])
def test_check_top_n_refuses_the_rest_as_the_core_does(value: object) -> None:
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"top_n must be a positive int or None, got {value!r}")
    ):
        check_top_n(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, 0.5),
        (-2, -2.0),
        (np.float32(0.5), 0.5),
        (np.int64(3), 3.0),
        (-math.inf, -math.inf),
        (None, None),
    ],
)
def test_check_min_score_accepts_real_numbers(value: object, expected: float | None) -> None:
    checked = check_min_score(value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize("value", [math.nan, np.float32("nan"), True, np.bool_(False), "0.5", [0.5]])
def test_check_min_score_refuses_nan_bools_and_non_numbers(value: object) -> None:
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"min_score must be a number (not NaN) or None, got {value!r}")
    ):
        check_min_score(value)


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (np.bool_(True), True)])
def test_check_normalize_accepts_bools(value: object, expected: bool) -> None:
    assert check_normalize(value) is expected


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_check_normalize_refuses_the_rest(value: object) -> None:
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"normalize must be True or False, got {value!r}")
    ):
        check_normalize(value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"top_n": True}, "top_n must be"),
        ({"normalize": 1}, "normalize must be"),
        ({"min_score": math.nan}, "min_score must be"),
    ],
)
def test_option_checks_agree_with_reranker_rank(
    tiny_reranker: Reranker, options: dict, fragment: str
) -> None:
    """What the adapters refuse at construction is what Reranker.rank refuses per call, word for word."""
    with pytest.raises(InvalidArgumentError, match=fragment) as at_call:
        tiny_reranker.rank("flea", ["fleas live a year"], **options)
    with pytest.raises(InvalidArgumentError, match=fragment) as at_construction:
        check_rank_options(options)
    assert str(at_construction.value) == str(at_call.value)


def test_check_rank_options_checks_only_the_rank_options_present() -> None:
    assert check_rank_options({"model": object(), "device": 7, "keep_retrieval_score": 1}) == {}
    assert check_rank_options({"top_n": np.int64(2), "normalize": np.bool_(False), "min_score": None}) == {
        "top_n": 2,
        "normalize": False,
        "min_score": None,
    }


OFF = {"dedupe": None, "max_tokens": None, "fusion": None}


def test_rank_options_fills_what_was_not_given_from_the_reranker() -> None:
    shared = SimpleNamespace(
        top_n=5, normalize=True, min_score=0.25, dedupe=0.8, max_tokens=None, fusion="rrf"
    )
    values = {"top_n": 3, "normalize": False, "min_score": None, **OFF}
    assert rank_options(shared, values, given=set()) == {
        "top_n": 5,
        "normalize": True,
        "min_score": 0.25,
        "dedupe": 0.8,
        "max_tokens": None,
        "fusion": "rrf",
    }
    assert rank_options(shared, values, given={"top_n", "min_score", "dedupe"}) == {
        "top_n": 3,
        "normalize": True,
        "min_score": None,  # an explicit None wins over the reranker's 0.25
        "dedupe": None,
        "max_tokens": None,
        "fusion": "rrf",
    }
    # numpy values given become Python values
    options = rank_options(
        shared,
        {"top_n": np.int64(2), "min_score": np.float32(0.5), "max_tokens": np.int32(300)},
        given={"top_n", "min_score", "max_tokens"},
    )
    assert options == {
        "top_n": 2,
        "normalize": True,
        "min_score": 0.5,
        "dedupe": 0.8,
        "max_tokens": 300,
        "fusion": "rrf",
    }
    assert type(options["top_n"]) is int and type(options["min_score"]) is float
    assert type(options["max_tokens"]) is int


def test_rank_options_checks_only_what_was_given() -> None:
    shared = SimpleNamespace(top_n=5, normalize=True, min_score=None, **OFF)
    # a bad value that was not given (the adapter's default slot) is not looked at
    assert rank_options(shared, {"top_n": 0}, given=set())["top_n"] == 5
    with pytest.raises(InvalidArgumentError, match="top_n must be a positive int or None, got 0"):
        rank_options(shared, {"top_n": 0}, given={"top_n"})


# ------------------------------------------------------------------ the model source


class FakeReranker(Reranker):
    """Records how it was made instead of loading a model."""

    def __init__(self, model: object = DEFAULT_MODEL, **options: Any) -> None:
        self.made = ("model", model, options)

    @classmethod
    def from_config(cls, config: Any = None, **overrides: Any) -> FakeReranker:
        made = cls.__new__(cls)
        made.made = ("config", config, overrides)
        return made


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeReranker]:
    monkeypatch.setattr(adapters, "Reranker", FakeReranker)
    return FakeReranker


def test_model_is_loaded_with_the_loader_options(fake: type[FakeReranker]) -> None:
    made = resolve_reranker(
        model="org/model",
        reranker=None,
        config=None,
        given={"model", "device"},
        loader_options={"device": "cpu"},
    )
    assert made.made == ("model", "org/model", {"device": "cpu"})
    default = resolve_reranker(
        model=None, reranker=None, config=None, given=set(), loader_options={"device": None}
    )
    assert default.made == ("model", DEFAULT_MODEL, {"device": None})


def test_config_builds_with_from_config(fake: type[FakeReranker]) -> None:
    config = RerankerConfig(model="/no/such/model")
    made = resolve_reranker(
        model=DEFAULT_MODEL, reranker=None, config=config, given={"config"}, loader_options={"device": None}
    )
    assert made.made == ("config", config, {})


def test_a_given_reranker_is_used_as_is(fake: type[FakeReranker]) -> None:
    shared = FakeReranker("shared")
    # model holds the adapter's default and device None: neither counts as passed
    assert (
        resolve_reranker(
            model=DEFAULT_MODEL,
            reranker=shared,
            config=None,
            given={"device"},
            loader_options={"device": None},
        )
        is shared
    )


def test_a_reranker_must_be_a_reranker() -> None:
    with pytest.raises(InvalidArgumentError, match=r"reranker must be a crossrank\.Reranker, got str"):
        resolve_reranker(model=None, reranker="org/model", config=None, given=set(), loader_options={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("passed", "listed"),
    [
        ({"model": "m", "reranker": True}, "`model` and `reranker`"),
        ({"device": "cpu", "reranker": True}, "`device` and `reranker`"),
        ({"model": "m", "config": True}, "`model` and `config`"),
        ({"device": "cpu", "config": True}, "`device` and `config`"),
        ({"reranker": True, "config": True}, "`reranker` and `config`"),
        ({"model": "m", "device": "cpu", "reranker": True}, "`model`, `device` and `reranker`"),
        (
            {"model": "m", "device": "cpu", "reranker": True, "config": True},
            "`model`, `device`, `reranker` and `config`",
        ),
    ],
)
def test_more_than_one_source_is_refused_before_loading(
    fake: type[FakeReranker], passed: dict, listed: str
) -> None:
    sources = {
        "reranker": FakeReranker("shared") if passed.get("reranker") else None,
        "config": RerankerConfig(model="/no/such/model") if passed.get("config") else None,
    }
    given = {name for name in ("model", "device") if name in passed} | {
        name for name in sources if passed.get(name)
    }
    with pytest.raises(InvalidArgumentError, match=re.escape(SOURCES + f"got {listed}. ")) as err:
        resolve_reranker(
            model=passed.get("model", DEFAULT_MODEL),
            given=given,
            loader_options={"device": passed.get("device")},
            **sources,
        )
    assert isinstance(err.value, ValueError)
    assert "pass `reranker=` to share a loaded model" in str(err.value)


def test_model_and_device_alone_are_one_source(fake: type[FakeReranker]) -> None:
    made = resolve_reranker(
        model="m", reranker=None, config=None, given={"model", "device"}, loader_options={"device": "cpu"}
    )
    assert made.made == ("model", "m", {"device": "cpu"})


def test_real_reranker_from_each_source(tiny_model_dir: Path, tiny_reranker: Reranker) -> None:
    loaded = resolve_reranker(
        model=tiny_model_dir,
        reranker=None,
        config=None,
        given={"model", "device"},
        loader_options={"device": "cpu"},
    )
    assert isinstance(loaded, Reranker) and (loaded.model_name, loaded.device) == (str(tiny_model_dir), "cpu")
    built = resolve_reranker(
        model=None,
        reranker=None,
        config=RerankerConfig(model=str(tiny_model_dir), device="cpu", top_n=2),
        given={"config"},
        loader_options={"device": None},
    )
    assert (built.model_name, built.device, built.top_n) == (str(tiny_model_dir), "cpu", 2)
    assert rank_options(built, {}, given=set()) == {"top_n": 2, "normalize": False, "min_score": None, **OFF}
    assert (
        resolve_reranker(model=None, reranker=tiny_reranker, config=None, given=set(), loader_options={})
        is tiny_reranker
    )


# ------------------------------------------------------------------ the items of a call


class Item:
    pass


@pytest.mark.parametrize("items", [[Item(), Item()], (Item(), Item()), iter([Item(), Item()]), []])
def test_check_items_returns_a_new_list(items: Any) -> None:
    checked = check_items(items, Item, name="things", type_label="Item")
    assert type(checked) is list and all(isinstance(item, Item) for item in checked)
    assert checked is not items


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (Item(), "things must be a list of my.Item, got Item; wrap it in a list"),
        ("text", "things must be a list of my.Item, got str"),
        (b"text", "things must be a list of my.Item, got bytes"),
        ({Item()}, "things must be a list of my.Item, got set"),
        ({"a": Item()}, "things must be a list of my.Item, got dict"),
        (None, "things must be a list of my.Item, got NoneType"),
        (3, "things must be a list of my.Item, got int"),
        ([Item(), None], "things[1] is NoneType, expected a my.Item (make one with Item())"),
        ([Item(), Item(), "text"], "things[2] is str, expected a my.Item (make one with Item())"),
        ([{"text": "x"}], "things[0] is dict, expected a my.Item (make one with Item())"),
    ],
)
def test_check_items_names_what_is_wrong(items: object, message: str) -> None:
    with pytest.raises(DocumentTypeError) as err:
        check_items(items, Item, name="things", type_label="my.Item", hint="make one with Item()")
    assert str(err.value) == message
    assert isinstance(err.value, TypeError)


def test_check_items_without_hint() -> None:
    with pytest.raises(DocumentTypeError) as err:
        check_items([None], Item, name="things", type_label="Item")
    assert str(err.value) == "things[0] is NoneType, expected a Item"


# ------------------------------------------------------------------ the adapters' shared cases


class MiniAdapter(BaseModel):
    """The smallest adapter: crossrank.adapters' rules on a pydantic model, over ``TextItem`` lists."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str = DEFAULT_MODEL
    device: str | None = None
    top_n: int | None = 3
    normalize: bool = False
    min_score: float | None = None
    dedupe: float | None = None
    max_tokens: int | None = None
    fusion: str | None = None
    reranker: Reranker | None = None
    config: RerankerConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_rank_options(cls, data: Any) -> Any:
        return {**data, **check_rank_options(data)} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _settle(self) -> MiniAdapter:
        adapters.settle(self)
        return self

    def rank(self, items: object) -> list[TextItem]:
        checked = check_items(items, TextItem, name="items", type_label="TextItem")
        options = {name: getattr(self, name) for name in RANK_OPTIONS}
        ranking = self.reranker.rank("how long does a flea live", [item.text for item in checked], **options)
        return [checked[hit.index] for hit in ranking]


class TextItem:
    def __init__(self, text: str) -> None:
        self.text = text


MINI_KIT = AdapterKit(
    adapter=MiniAdapter,
    good_item=lambda: TextItem("Adult fleas live up to a year with a host."),
    wrong_item=lambda: b"fleas",
    wrong_name="bytes",
    call=lambda adapter, items: adapter.rank(items),
    acall=lambda adapter, items: adapter.rank(items),  # no async method of its own
)


@pytest.mark.parametrize("case", adapter_cases.CASES, ids=str)
def test_the_shared_cases_hold_for_an_adapter_built_on_these_rules(case: adapter_cases.Case) -> None:
    """The cases both framework adapters run (crossrank.adapter_cases) pass on a framework-free one."""
    case.run(MINI_KIT)


def test_the_device_case_holds_for_an_adapter_built_on_these_rules(tiny_model_dir: Path) -> None:
    adapter_cases.check_device_is_an_option(MINI_KIT, str(tiny_model_dir))


def test_the_shared_cases_expect_this_modules_messages() -> None:
    assert adapter_cases.SOURCES == SOURCES
    assert len({case.id for case in adapter_cases.CASES}) == len(adapter_cases.CASES)


def test_a_broken_adapter_fails_the_shared_cases() -> None:
    """A case fails (AssertionError) when the adapter breaks its rule, here by accepting any top_n."""

    class Lenient(MiniAdapter):
        @model_validator(mode="before")
        @classmethod
        def _check_rank_options(cls, data: Any) -> Any:
            return data

    case = next(case for case in adapter_cases.BAD_OPTIONS if case.id == "bad-option:top_n=2.0")
    with pytest.raises(AssertionError, match="was accepted"):
        case.run(dataclasses.replace(MINI_KIT, adapter=Lenient))
