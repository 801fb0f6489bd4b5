"""The held-out measurement: which queries are held out, and the base and fine-tuned models scored on them.

The held-out split is never trained on: :func:`without_held_out` refuses a query id in both splits
of one folder and leaves out a training query with the text of a held-out one.
:func:`evaluate_models` scores the models with :func:`crossrank.evaluation.evaluate`, the code and
the report of ``crossrank eval``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crossrank.errors import InputFileError, InvalidArgumentError
from crossrank.finetune.config import Progress, Stage1
from crossrank.finetune.data import TrainingData, TrainingQuery, normalized

__all__ = ["evaluate_models", "held_out_set", "load_eval", "without_held_out"]

logger = logging.getLogger(__name__)


def load_eval(name: str | os.PathLike[str], *, data_dir: Any, stage1: Stage1, depth: int, split: str) -> Any:
    """An evaluation set (:class:`~crossrank.evaluation.EvalDataset`): a folder or a named dataset,
    its ``split`` reranked from ``stage1``'s top ``depth`` (TREC DL: from the BM25 run it ships)."""
    from crossrank.evaluation import load_dataset

    try:
        return load_dataset(name, data_dir=data_dir, stage1=stage1, depth=depth, split=split)
    except ValueError as err:
        if stage1 == "bm25" or "ships a BM25 run" not in str(err):
            raise
        return load_dataset(name, data_dir=data_dir, depth=depth)  # TREC DL: its own BM25 run


def held_out_set(
    data: TrainingData,
    eval_dataset: str | os.PathLike[str] | None,
    split: str,
    *,
    stage1: Stage1,
    depth: int,
    data_dir: Any,
) -> Any:
    """The held-out set: ``eval_dataset``, else the training folder's ``qrels/{split}.tsv``; ``None``
    (with a warning) for JSONL training data without one.

    Raises:
        InputFileError: A BEIR training folder has no ``qrels/{split}.tsv`` and no ``eval_dataset`` is given.
    """
    if eval_dataset is None:
        if not data.is_beir:
            logger.warning("no eval_dataset: %s is trained without a held-out measurement", data.source)
            return None
        if not (data.source / "qrels" / f"{split}.tsv").is_file():
            raise InputFileError(
                f"no held-out split to evaluate on (qrels/{split}.tsv); pass eval_dataset",
                path=data.source / "qrels" / f"{split}.tsv",
            )
        eval_dataset = data.source
    return load_eval(eval_dataset, data_dir=data_dir, stage1=stage1, depth=depth, split=split)


def without_held_out(
    data: TrainingData, held_out: Any, eval_dataset: Any, eval_split: str
) -> tuple[list[TrainingQuery], list[str]]:
    """The training queries that are not held-out queries, and the ids of those left out for having
    a held-out query's text.

    Raises:
        InvalidArgumentError: A query id is in both splits of one folder.
    """
    if held_out is None:
        return list(data.queries), []
    same_folder = data.is_beir and (
        eval_dataset is None or Path(eval_dataset).resolve() == data.source.resolve()
    )
    if same_folder:
        shared = sorted(set(held_out.queries) & {q.qid for q in data.queries})
        if shared:
            raise InvalidArgumentError(
                f"{len(shared)} query id(s) are both in qrels/train.tsv and in the held-out "
                f"qrels/{eval_split}.tsv of {data.source} (e.g. {', '.join(shared[:5])}): "
                "the held-out split must never be trained on"
            )
    held_texts = {normalized(text) for text in held_out.queries.values()}
    kept = [q for q in data.queries if normalized(q.query) not in held_texts]
    left_out = [q.qid for q in data.queries if normalized(q.query) in held_texts]
    if left_out:
        logger.warning(
            "%d training query(ies) have the same text as a held-out query and are left out of training: %s",
            len(left_out),
            ", ".join(left_out[:10]),
        )
    return kept, left_out


def evaluate_models(
    name: str,
    dataset: Any,
    models: Mapping[str, str],
    reranker_options: Mapping[str, Any],
    progress: Progress | None,
) -> Any:
    """Score ``models`` (``{system: folder}``) on ``dataset``; an
    :class:`~crossrank.evaluation.EvalReport` with stage 1 and each system, as ``crossrank eval`` makes it."""
    from crossrank import Reranker
    from crossrank.config import OPTION_GROUPS
    from crossrank.evaluation import evaluate

    scorers = {system: Reranker(path, **reranker_options) for system, path in models.items()}

    def ticker(system: str) -> Callable[[], None]:
        total, done = len(dataset.candidates), iter(range(1, len(dataset.candidates) + 1))
        return lambda: progress(f"scoring {name} with {system}", next(done), total) if progress else None

    depth = max(len(c) for c in dataset.candidates.values())
    report = evaluate(dataset, scorers, depths=(depth,), progress=ticker)
    # As `crossrank eval` reports it: the settings of the (last, i.e. fine-tuned) reranker scored.
    report.settings = scorers[list(scorers)[-1]].to_config().model_dump(exclude=set(OPTION_GROUPS["ranking"]))
    report.settings["systems"] = dict(models)
    return report
