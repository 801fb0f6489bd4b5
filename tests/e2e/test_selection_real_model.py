"""`crossrank eval` with selection on TREC DL 2019: dedupe empties the top 3 of duplicates.

Selection's other tests (the rules, each face) are in tests/unit/test_selection.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crossrank import Reranker
from crossrank.selection import SelectOptions


@pytest.mark.real_model
def test_eval_dedupe_leaves_no_duplicate_in_the_top3_and_loses_no_distinct_relevant(
    fixture_reranker: Reranker, shared_dir: Path
) -> None:
    from crossrank.evaluation import evaluate, load_dataset

    dataset = load_dataset("trec-dl-2019", data_dir=shared_dir / "data", depth=20)
    selections = {"dedupe": SelectOptions(dedupe=0.8), "rrf": SelectOptions(fusion="rrf")}
    report = evaluate(dataset, {"crossrank": fixture_reranker}, depths=(20,), selections=selections)
    systems = report.metrics[20]
    assert systems["crossrank"]["dup@3"] > 0  # MS MARCO's candidate lists hold near-duplicates
    assert systems["dedupe"]["dup@3"] == 0
    assert systems["dedupe"]["distinct rel@3"] >= systems["crossrank"]["distinct rel@3"]
    assert (
        set(systems["rrf"]) == set(systems["crossrank"]) >= {"nDCG@3", "nDCG@10", "dup@3", "distinct rel@3"}
    )
    assert report.timings["dedupe"]["share_of_rerank"] < 0.05
