"""Fixtures: the trained cross-encoder in ../shared (loaded once) and TREC DL 2019 passages."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import NodeWithScore, TextNode

from crossrank import Reranker
from crossrank.testing import SERVING_ENGINES, engine_id

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("CROSSRANK_SHARED", REPO_ROOT.parent / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19_BM25 = SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    """The trained cross-encoder in ../shared (fails loudly when shared/ is missing: never skipped)."""
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"trained fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to shared/")
    return FIXTURE_MODEL


@pytest.fixture(scope="session", params=SERVING_ENGINES, ids=engine_id)
def reranker(request: pytest.FixtureRequest, fixture_model_dir: Path) -> Reranker:
    """The Reranker of each engine of ``SERVING_ENGINES``, shared by every postprocessor that only
    reads from it; every test that asks for it runs once per engine."""
    return Reranker(fixture_model_dir, device="cpu", backend=request.param)


@pytest.fixture(scope="session")
def dl19() -> list[dict]:
    """The first 3 TREC DL 2019 queries with their BM25 top-100: [{qid, query, hits: [...]}]."""
    if not DL19_BM25.is_file():
        pytest.fail(f"TREC DL 2019 data not found at {DL19_BM25}; set CROSSRANK_SHARED to shared/")
    with DL19_BM25.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in itertools.islice(lines, 3)]


def passage_node(hit: dict) -> TextNode:
    """A node as an app would index it: the passage, its id (hidden from models) and a visible source."""
    return TextNode(
        id_=hit["docid"],
        text=hit["text"],
        metadata={"docid": hit["docid"], "collection": "MS MARCO passages"},
        excluded_embed_metadata_keys=["docid"],
        excluded_llm_metadata_keys=["docid"],
    )


@pytest.fixture
def bm25_top20(dl19: list[dict]) -> list[tuple[str, list[NodeWithScore]]]:
    """Each query with its BM25 top-20 as fresh NodeWithScore objects (BM25 score as retrieval score)."""
    return [
        (row["query"], [NodeWithScore(node=passage_node(h), score=h["bm25_score"]) for h in row["hits"][:20]])
        for row in dl19
    ]


@pytest.fixture
def retrieved(bm25_top20: list[tuple[str, list[NodeWithScore]]]) -> tuple[str, list[NodeWithScore]]:
    """The first query ("how long is life cycle of flea") and its BM25 top-20."""
    return bm25_top20[0]


@pytest.fixture(scope="session")
def corpus_nodes(dl19: list[dict]) -> list[TextNode]:
    """A small mixed corpus: the BM25 top-40 passages of each of the 3 queries, without duplicates."""
    hits = {h["docid"]: h for row in dl19 for h in row["hits"][:40]}
    return [passage_node(h) for h in hits.values()]


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it is sent."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        self.events.append(event)


@pytest.fixture
def collected_events() -> list[BaseEvent]:
    """Events reaching LlamaIndex's root dispatcher while the test runs, as an app's handler sees them."""
    root = get_dispatcher()
    handler = EventCollector()
    root.add_event_handler(handler)
    try:
        yield handler.events
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]
