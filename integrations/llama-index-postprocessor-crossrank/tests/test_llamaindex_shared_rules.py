"""The rules both crossrank adapters share (crossrank.adapters), on LlamaIndex's CrossrankRerank.

The cases are crossrank's (:mod:`crossrank.adapter_cases`), the same ones the LangChain adapter
runs: both must refuse the same options at construction and the same items at call time, with the
same error type and message. They rank with crossrank's fake engine (no model file); only
``test_device_is_an_option`` loads the fixture model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.crossrank import CrossrankRerank

from crossrank.adapter_cases import CASES, AdapterKit, Case, check_device_is_an_option

QUERY = "how long does a flea live"


def good_item() -> NodeWithScore:
    return NodeWithScore(node=TextNode(text="Adult fleas live up to a year with a host."), score=0.5)


KIT = AdapterKit(
    adapter=CrossrankRerank,
    good_item=good_item,
    wrong_item=lambda: TextNode(text="Adult fleas live up to a year."),  # a node not wrapped in NodeWithScore
    wrong_name="TextNode",
    call=lambda adapter, items: adapter.postprocess_nodes(items, query_str=QUERY),
    acall=lambda adapter, items: asyncio.run(adapter.apostprocess_nodes(items, query_str=QUERY)),
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_shared_rule(case: Case) -> None:
    case.run(KIT)  # with crossrank.testing.FakeEngine: no model file


@pytest.mark.real_model
def test_device_is_an_option(fixture_model_dir: Path) -> None:
    check_device_is_an_option(KIT, fixture_model_dir)
