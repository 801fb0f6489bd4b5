"""The rules both crossrank adapters share (crossrank.adapters), on LangChain's CrossrankRerank.

The cases are crossrank's (:mod:`crossrank.adapter_cases`), the same ones the LlamaIndex adapter
runs: both must refuse the same options at construction and the same items at call time, with the
same error type and message. They rank with crossrank's fake engine (no model file); only
``test_device_is_an_option`` loads the fixture model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_crossrank import CrossrankRerank

from crossrank.adapter_cases import CASES, AdapterKit, Case, check_device_is_an_option

QUERY = "how long does a flea live"


def good_item() -> Document:
    return Document(page_content="Adult fleas live up to a year with a host.")


KIT = AdapterKit(
    adapter=CrossrankRerank,
    good_item=good_item,
    wrong_item=lambda: (good_item(), 0.8),  # what vectorstore.similarity_search_with_score returns
    wrong_name="tuple",
    call=lambda adapter, items: list(adapter.compress_documents(items, QUERY)),
    acall=lambda adapter, items: list(asyncio.run(adapter.acompress_documents(items, QUERY))),
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_shared_rule(case: Case) -> None:
    case.run(KIT)  # with crossrank.testing.FakeEngine: no model file


@pytest.mark.real_model
def test_device_is_an_option(fixture_model_dir: Path) -> None:
    check_device_is_an_option(KIT, fixture_model_dir)
