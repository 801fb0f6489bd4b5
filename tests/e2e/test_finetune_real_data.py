"""Fine-tuning's data on SciFact from ../shared (the benchmark's data): read whole, negatives clean.

The training run's own tests, on a tiny synthetic BEIR folder, are in tests/unit/test_finetune.py.
"""

from __future__ import annotations

from pathlib import Path

from crossrank.finetune import load_training_data, mine_hard_negatives


def test_scifact_train_reads_whole_and_mined_negatives_never_hold_a_judged_positive(shared_dir: Path) -> None:
    from crossrank.finetune.evaluate import without_held_out

    folder = shared_dir / "data" / "beir-scifact"
    data = load_training_data(folder)
    assert len(data.queries) == 809
    assert sum(len(q.positive_ids) for q in data.queries) == 919  # qrels/train.tsv: 920 lines with the header
    mined = mine_hard_negatives(data, num_negatives=4)
    for query in data.queries:
        assert len(mined[query.qid]) == 4
        assert not set(mined[query.qid]) & set(query.positives)

    from crossrank.evaluation import load_dataset

    test = load_dataset(folder, depth=20)
    kept, left_out = without_held_out(data, test, None, "test")
    assert sorted(left_out) == ["1291", "871"]  # same claim text as a test query
    assert len(kept) == 807 and not {q.qid for q in kept} & set(test.queries)
