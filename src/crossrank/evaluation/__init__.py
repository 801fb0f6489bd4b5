"""Measure ranking quality: rerank TREC DL / BEIR stage-1 runs and score them with ir-measures.

from crossrank import Reranker
from crossrank.evaluation import evaluate, load_dataset

dataset = load_dataset("trec-dl-2019", data_dir=...)   # or CROSSRANK_DATA_DIR
report = evaluate(dataset, {"crossrank": Reranker(model)}, depths=(100, 20))   # via score_batch
report.metrics[100]["crossrank"]["nDCG@10"]
"""

from crossrank.evaluation.datasets import NAMED_DATASETS, Candidate, EvalDataset, load_dataset
from crossrank.evaluation.evaluate import BatchScorer, EvalReport, Scorer, evaluate, measures

__all__ = [
    "NAMED_DATASETS",
    "BatchScorer",
    "Candidate",
    "EvalDataset",
    "EvalReport",
    "Scorer",
    "evaluate",
    "load_dataset",
    "measures",
]
