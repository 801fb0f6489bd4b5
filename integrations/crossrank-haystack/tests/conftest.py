"""Fixtures: a tiny random cross-encoder built in seconds (unit tests) and the trained one in ../shared."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.testing import SERVING_ENGINES, build_tiny_cross_encoder, engine_id

# This file is <repo>/integrations/crossrank-haystack/tests/conftest.py; shared/ sits next to <repo>.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROSSRANK_SHARED", PACKAGE_ROOT.parents[2] / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19_BM25 = SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random one-logit BERT cross-encoder (max 128 tokens)."""
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"), extra_characters=":")


@pytest.fixture(scope="session", params=SERVING_ENGINES, ids=engine_id)
def tiny_reranker(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Reranker:
    """The core Reranker over the tiny model, on each engine of ``SERVING_ENGINES``: what the
    component's results are checked against; every test that asks for it runs once per engine."""
    return Reranker(tiny_model_dir, device="cpu", backend=request.param)


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    """The trained cross-encoder in ../shared (fails loudly when shared/ is missing: never skipped)."""
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"trained fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to shared/")
    return FIXTURE_MODEL


@pytest.fixture(scope="session", params=SERVING_ENGINES, ids=engine_id)
def fixture_reranker(request: pytest.FixtureRequest, fixture_model_dir: Path) -> Reranker:
    return Reranker(fixture_model_dir, device="cpu", backend=request.param)


@pytest.fixture(scope="session")
def dl19() -> list[dict]:
    """The first 2 TREC DL 2019 queries with their BM25 top-100: [{qid, query, hits: [...]}]."""
    if not DL19_BM25.is_file():
        pytest.fail(f"TREC DL 2019 data not found at {DL19_BM25}; set CROSSRANK_SHARED to shared/")
    rows = []
    with DL19_BM25.open(encoding="utf-8") as lines:
        for line in lines:
            rows.append(json.loads(line))
            if len(rows) == 2:
                break
    return rows
