"""Fixtures: a tiny random cross-encoder built in seconds (unit tests) and the trained one in ../shared."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crossrank import Reranker

# This file is <repo>/integrations/crossrank-haystack/tests/conftest.py; shared/ sits next to <repo>.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROSSRANK_SHARED", PACKAGE_ROOT.parents[2] / "shared"))
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
DL19_BM25 = SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"

_VOCABULARY_TEXT = (
    "the a an of to in is and for on with what how why when does do long flea fleas live life "
    "cycle year years host dog cat paris tower eiffel france capital city bread dough rest "
    "yeast coffee tea caffeine sun light earth minutes sky blue cross encoder query passage "
    "score rank document model search retrieval chunk token tokens long short hello world"
)
_WORDS = _VOCABULARY_TEXT.split()


def _build_tiny_model(directory: Path) -> Path:
    """A 2-layer BERT cross-encoder with random weights and a small WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,?!'-:")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), *_WORDS]
    vocab = list(dict.fromkeys(vocab))
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True, model_max_length=128
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(1234)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random one-logit BERT cross-encoder (max 128 tokens)."""
    return _build_tiny_model(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_dir: Path) -> Reranker:
    """The core Reranker over the tiny model: what the component's results are checked against."""
    return Reranker(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    """The trained cross-encoder in ../shared (fails loudly when shared/ is missing: never skipped)."""
    if not (FIXTURE_MODEL / "config.json").is_file():
        pytest.fail(f"trained fixture model not found at {FIXTURE_MODEL}; set CROSSRANK_SHARED to shared/")
    return FIXTURE_MODEL


@pytest.fixture(scope="session")
def fixture_reranker(fixture_model_dir: Path) -> Reranker:
    return Reranker(fixture_model_dir, device="cpu")


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
