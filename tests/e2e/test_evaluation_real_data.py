"""crossrank.evaluation on the datasets in ../shared: their layouts and stage-1 scores.

The other evaluation tests, on small folders written by the tests, are in tests/unit/test_evaluation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrank.evaluation import evaluate, load_dataset


def test_scifact_bm25_stage1_matches_the_fixture_card(shared_dir: Path) -> None:
    dataset = load_dataset("beir-scifact", data_dir=shared_dir / "data", depth=20)
    assert len(dataset.queries) == 300
    report = evaluate(dataset, {}, depths=(20,))
    assert report.metrics[20]["stage 1"]["nDCG@10"] == pytest.approx(0.6617, abs=0.0005)  # FIXTURE.md


def test_dl19_layout(shared_dir: Path) -> None:
    dataset = load_dataset("trec-dl-2019", data_dir=shared_dir / "data")
    assert len(dataset.queries) == 43 and all(len(c) == 100 for c in dataset.candidates.values())
    assert evaluate(dataset, {}, depths=(100,)).metrics[100]["stage 1"]["nDCG@10"] == pytest.approx(
        0.5058, abs=1e-3
    )
