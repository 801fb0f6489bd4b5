"""End-to-end fixtures: the trained fixture model and the datasets in ../shared, and a live service.

Only tests under tests/e2e see these (tests/conftest.py marks every test here ``real_model`` and
fails a test elsewhere that asks for one of them). Set CROSSRANK_SHARED when shared/ is not next to
the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CROSSRANK_SHARED", REPO_ROOT.parent / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19 = SHARED / "data" / "trec-dl-2019-passage"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (data and the trained fixture model)."""
    return SHARED


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    """The trained cross-encoder in ../shared (fails loudly if shared/ is missing: never skipped)."""
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"trained fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to shared/")
    return FIXTURE_MODEL


@pytest.fixture(scope="session")
def fixture_reranker(fixture_model_dir: Path):
    from crossrank import Reranker

    # torch fp32 on every CPU: sentence-transformers' scores (FIXTURE.md's), whatever "auto" picks
    # for this CPU (ONNX fp32 on AVX2, bf16 on AMX: crossrank.backends.choice, tested in tests/unit)
    return Reranker(fixture_model_dir, backend="torch", device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def dl19_top20() -> list[dict]:
    """The 43 TREC DL 2019 queries with their BM25 top-20 passages: [{qid, query, hits: [...]}]."""
    import json

    path = DL19 / "bm25_top100.jsonl"
    if not path.is_file():
        pytest.fail(f"TREC DL 2019 data not found at {path}; set CROSSRANK_SHARED to shared/")
    with path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    for row in rows:
        row["hits"] = row["hits"][:20]
    return rows


# --------------------------------------------------------------------------- clients of the rerank service

#: The bearer token of the service the client tests talk to (what examples/apps/ configure).
SERVICE_API_KEY = "change-me"
_FLEA_CHUNKS = [
    "The Eiffel Tower is in Paris.",
    "Cats and dogs carry fleas.",
    "Adult fleas live two to three months, up to a year with a host.",
    "Bread dough rests before baking.",
    "The flea life cycle: egg, larva, pupa and adult.",
    "Tea and coffee both hold caffeine.",
    "Fleas can jump 150 times their own length.",
    "The sun is a star.",
    "A flea's lifespan depends on temperature and humidity.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="session")
def flea_query() -> str:
    return "how long does a flea live"


@pytest.fixture(scope="session")
def flea_chunks() -> list[str]:
    """Candidate chunks in a scrambled order, so that a client's index-mapping bug would show."""
    import random

    chunks = _FLEA_CHUNKS[:]
    random.Random(14).shuffle(chunks)
    return chunks


@pytest.fixture(scope="session")
def flea_top3(fixture_reranker, flea_query: str, flea_chunks: list[str]) -> list[str]:
    """What every client must end up with: ``Reranker.rank``'s top 3 texts."""
    return [hit.text for hit in fixture_reranker.rank(flea_query, flea_chunks, top_n=3)]


@pytest.fixture(scope="module")
def service(fixture_reranker, served):
    """``crossrank serve`` over the trained fixture, with the API key the example configs name."""
    from crossrank.server import ServerConfig, create_app

    with served(create_app(fixture_reranker, ServerConfig(api_key=SERVICE_API_KEY))) as running:
        running.api_key = SERVICE_API_KEY
        yield running
