"""The rules both crossrank adapters share (crossrank.adapters), on LangChain's CrossrankRerank.

The cases between the "shared cases" markers are word for word those of
``llama-index-postprocessor-crossrank/tests/test_llamaindex_shared_rules.py``: both adapters must
refuse the same options at construction and the same items at call time, with the same error type
and message (``tests/test_adapters.py`` at the repository root checks the two blocks are identical).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_crossrank import CrossrankRerank
from pydantic import ValidationError

from crossrank import DocumentTypeError, InvalidArgumentError, Reranker, RerankerConfig

pytestmark = pytest.mark.real_model

QUERY = "how long does a flea live"
Adapter = CrossrankRerank


def good_item() -> Document:
    return Document(page_content="Adult fleas live up to a year with a host.")


def wrong_item() -> object:
    return (good_item(), 0.8)  # what vectorstore.similarity_search_with_score returns


WRONG_NAME = "tuple"


def call(adapter: CrossrankRerank, items: Any) -> list:
    return list(adapter.compress_documents(items, QUERY))


def acall(adapter: CrossrankRerank, items: Any) -> list:
    return list(asyncio.run(adapter.acompress_documents(items, QUERY)))


# --- shared cases: begin
SHARED_RERANKER = "<the session's Reranker>"
MISSING_CONFIG = "<a RerankerConfig naming a model that doesn't exist>"
SOURCES = "the model comes from exactly one of `model=` (with `device=`), `reranker=` or `config=`; "

BAD_OPTIONS = [
    pytest.param(
        {"min_score": math.nan}, "min_score must be a number (not NaN) or None, got nan", id="min_score=nan"
    ),
    pytest.param(
        {"min_score": "0.5"}, "min_score must be a number (not NaN) or None, got '0.5'", id="min_score=str"
    ),
    pytest.param(
        {"min_score": True}, "min_score must be a number (not NaN) or None, got True", id="min_score=True"
    ),
    pytest.param({"top_n": 0}, "top_n must be a positive int or None, got 0", id="top_n=0"),
    pytest.param({"top_n": -3}, "top_n must be a positive int or None, got -3", id="top_n=-3"),
    pytest.param({"top_n": True}, "top_n must be a positive int or None, got True", id="top_n=True"),
    pytest.param({"top_n": 2.0}, "top_n must be a positive int or None, got 2.0", id="top_n=2.0"),
    pytest.param({"normalize": "yes"}, "normalize must be True or False, got 'yes'", id="normalize=str"),
    pytest.param({"normalize": 1}, "normalize must be True or False, got 1", id="normalize=1"),
]
CLASHING_SOURCES = [
    pytest.param({"model": "other/model"}, SOURCES + "got `model` and `reranker`", id="model+reranker"),
    pytest.param({"device": "cpu"}, SOURCES + "got `device` and `reranker`", id="device+reranker"),
    pytest.param(
        {"model": "m", "device": "cpu"},
        SOURCES + "got `model`, `device` and `reranker`",
        id="model+device+reranker",
    ),
    pytest.param({"config": MISSING_CONFIG}, SOURCES + "got `reranker` and `config`", id="reranker+config"),
]
CLASHING_WITH_CONFIG = [
    pytest.param({"model": "other/model"}, SOURCES + "got `model` and `config`", id="model+config"),
    pytest.param({"device": "cpu"}, SOURCES + "got `device` and `config`", id="device+config"),
]
ACCEPTED_OPTIONS = [
    pytest.param({"top_n": np.int64(2)}, {"top_n": 2}, id="top_n=np.int64"),
    pytest.param({"top_n": None}, {"top_n": None}, id="top_n=None"),
    pytest.param(
        {"min_score": np.float32(0.5), "normalize": True}, {"min_score": 0.5}, id="min_score=np.float32"
    ),
    pytest.param({"min_score": np.int64(-2)}, {"min_score": -2.0}, id="min_score=np.int64"),
    pytest.param({"normalize": np.bool_(True)}, {"normalize": True}, id="normalize=np.bool_"),
]
BAD_ITEMS = [
    pytest.param(lambda: [good_item(), None], "[1] is NoneType, expected a ", id="holding-None"),
    pytest.param(lambda: [good_item(), "plain text"], "[1] is str, expected a ", id="holding-a-str"),
    pytest.param(
        lambda: [good_item(), wrong_item()], f"[1] is {WRONG_NAME}, expected a ", id="holding-wrong-type"
    ),
    pytest.param(lambda: [{"text": "fleas"}], "[0] is dict, expected a ", id="holding-a-dict"),
    pytest.param(lambda: good_item(), "; wrap it in a list", id="one-item-not-in-a-list"),
    pytest.param(lambda: "fleas", " must be a list of ", id="a-str"),
    pytest.param(lambda: None, ", got NoneType", id="None"),
]


def resolve(kwargs: dict[str, Any], reranker: Reranker) -> dict[str, Any]:
    placeholders = {SHARED_RERANKER: reranker, MISSING_CONFIG: RerankerConfig(model="/no/such/model")}
    return {
        name: placeholders.get(value, value) if isinstance(value, str) else value
        for name, value in kwargs.items()
    }


def raises_option_error(fragment: str) -> Any:
    """Options are refused at construction: pydantic's ValidationError (a ValueError) over crossrank's
    InvalidArgumentError, with crossrank's message."""
    return pytest.raises(ValidationError, match=re.escape(fragment))


def assert_wraps_invalid_argument(err: pytest.ExceptionInfo[ValidationError]) -> None:
    assert isinstance(err.value, ValueError)
    [problem] = err.value.errors()
    assert isinstance(problem["ctx"]["error"], InvalidArgumentError)


@pytest.mark.parametrize(("options", "fragment"), BAD_OPTIONS)
def test_bad_option_is_refused_at_construction(reranker: Reranker, options: dict, fragment: str) -> None:
    with raises_option_error(fragment) as err:
        Adapter(**resolve({"reranker": SHARED_RERANKER, **options}, reranker))
    assert_wraps_invalid_argument(err)


@pytest.mark.parametrize(("options", "fragment"), CLASHING_SOURCES)
def test_second_source_next_to_reranker_is_refused(reranker: Reranker, options: dict, fragment: str) -> None:
    with raises_option_error(fragment) as err:
        Adapter(**resolve({"reranker": SHARED_RERANKER, **options}, reranker))
    assert_wraps_invalid_argument(err)


@pytest.mark.parametrize(("options", "fragment"), CLASHING_WITH_CONFIG)
def test_second_source_next_to_config_is_refused(reranker: Reranker, options: dict, fragment: str) -> None:
    with raises_option_error(fragment) as err:
        Adapter(**resolve({"config": MISSING_CONFIG, **options}, reranker))
    assert_wraps_invalid_argument(err)


@pytest.mark.parametrize(("options", "expected"), ACCEPTED_OPTIONS)
def test_numpy_numbers_are_accepted_as_python_numbers(
    reranker: Reranker, options: dict, expected: dict
) -> None:
    adapter = Adapter(**resolve({"reranker": SHARED_RERANKER, **options}, reranker))
    for name, value in expected.items():
        assert getattr(adapter, name) == value and type(getattr(adapter, name)) is type(value)
    out = call(adapter, [good_item(), good_item(), good_item()])
    assert len(out) <= (adapter.top_n or 3)


@pytest.mark.parametrize(("make_items", "fragment"), BAD_ITEMS)
@pytest.mark.parametrize("run", [call, acall], ids=["sync", "async"])
def test_bad_items_are_refused_at_call_time_by_index(
    reranker: Reranker, run: Callable[[Any, Any], list], make_items: Callable[[], Any], fragment: str
) -> None:
    adapter = Adapter(reranker=reranker)  # construction is fine: items are checked per call
    with pytest.raises(DocumentTypeError, match=re.escape(fragment)) as err:
        run(adapter, make_items())
    assert isinstance(err.value, TypeError)


# --- shared cases: end


def test_device_is_an_option(fixture_model_dir: Any) -> None:
    adapter = Adapter(model=fixture_model_dir, device="cpu", top_n=1)
    assert (adapter.model, adapter.device, adapter.reranker.device) == (str(fixture_model_dir), "cpu", "cpu")
    assert len(call(adapter, [good_item(), good_item()])) == 1
