"""Domain adaptation: fine-tune a cross-encoder on your questions and documents, measured before and after.

``crossrank finetune`` (and :func:`finetune`) turns a corpus plus a few hundred questions with known
answers into a reranker for that corpus, with sentence-transformers' own training stack
(``CrossEncoderTrainer``, ``BinaryCrossEntropyLoss``, ``CrossEncoderRerankingEvaluator``):

1. **Data** (:func:`load_training_data`): a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
   ``qrels/train.tsv``, optional ``qrels/dev.tsv``) or a JSONL file of
   ``{"query", "positives": [text], "negatives"?: [text]}``. Every fault is an
   :class:`~crossrank.errors.InputFileError` naming the file and the line.
2. **Hard negatives** (:func:`mine_hard_negatives`): each query's stage-1 top documents (BM25 via
   ``bm25s``, or the bi-encoder), judged positives excluded.
3. **Training**: binary cross-entropy on (query, document, 0/1) pairs, with a time budget
   (``max_minutes``), checkpoints (``resume=True`` continues an interrupted run) and a seed.
4. **Evaluation**: the base and the fine-tuned model side by side on the held-out split (the test
   qrels, never trained on; a query id in both is refused) with :func:`crossrank.evaluation.evaluate`,
   the code and table of ``crossrank eval``, and on any other dataset named (e.g. TREC DL 2019, to
   see what the original domain lost).
5. **Output**: a model folder :class:`crossrank.Reranker` loads on every backend, with a model card
   (``README.md``) and the numbers (``finetune.json``). Training happens in a work folder beside
   ``output`` and the model is moved into place only when everything succeeded, so a crash or an
   interrupt never leaves a half-written ``output``.

Needs the ``train`` extra (``pip install 'crossrank[train]'``: datasets, accelerate) and the
``eval`` extra for BM25 and the metrics.

Its settings are one :class:`FinetuneConfig` (the CLI's options, the function's keyword arguments,
``finetune.json``'s ``settings``). The modules: ``config`` (the settings), ``data`` (reading and
mining), ``train``, ``evaluate`` (the held-out measurement), ``result`` (the result and its model
card) and ``pipeline`` (:func:`finetune`: prepare → train → evaluate → publish).
"""

from __future__ import annotations

from crossrank.finetune.config import FinetuneConfig
from crossrank.finetune.data import TrainingData, TrainingQuery, load_training_data, mine_hard_negatives
from crossrank.finetune.pipeline import finetune
from crossrank.finetune.result import RESULT_FILE, FinetuneResult, model_card

__all__ = [
    "RESULT_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "TrainingData",
    "TrainingQuery",
    "finetune",
    "load_training_data",
    "mine_hard_negatives",
    "model_card",
]
