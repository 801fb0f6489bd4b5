"""Shared fixtures: the trained fixture cross-encoder from ../shared, loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.testing import SERVING_ENGINES, engine_id

# This file is <repo>/integrations/langchain-crossrank/tests/conftest.py; shared/ sits next to <repo>.
SHARED = Path(os.environ.get("CROSSRANK_SHARED", Path(__file__).resolve().parents[4] / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19 = SHARED / "data" / "trec-dl-2019-passage"


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to the shared/ folder")
    return FIXTURE_MODEL


@pytest.fixture(scope="session", params=SERVING_ENGINES, ids=engine_id)
def reranker(request: pytest.FixtureRequest, fixture_model_dir: Path) -> Reranker:
    """One loaded model per engine (loading takes seconds); compressors share it. Every test that
    asks for it runs on each engine of ``SERVING_ENGINES``."""
    return Reranker(fixture_model_dir, device="cpu", backend=request.param, local_files_only=True)


@pytest.fixture(scope="session")
def dl19_dir() -> Path:
    """TREC DL 2019 passage: queries with their BM25 top-100 passage texts (``bm25_top100.jsonl``)."""
    if not (DL19 / "bm25_top100.jsonl").is_file():
        pytest.fail(f"TREC DL 2019 data not found at {DL19}; set CROSSRANK_SHARED to the shared/ folder")
    return DL19
