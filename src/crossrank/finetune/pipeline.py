"""``finetune()``: prepare → train → evaluate → publish, each step a function with one job.

1. :func:`prepare`: check ``output``, read the data, set the held-out queries aside, mine hard
   negatives; a :class:`Preparation`. Nothing is written.
2. :func:`~crossrank.finetune.train.train`: train and save the model in a work folder beside ``output``.
3. :func:`evaluate`: score the base and the fine-tuned model on the held-out set and the others named.
4. :func:`publish`: write ``finetune.json`` and the model card, then move the model into ``output``,
   so a crash or an interrupt never leaves a half-written ``output``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidArgumentError
from crossrank.finetune.config import FinetuneConfig, Progress
from crossrank.finetune.data import (
    TrainingData,
    TrainingQuery,
    load_training_data,
    mine_hard_negatives,
    training_pairs,
)
from crossrank.finetune.evaluate import evaluate_models, held_out_set, load_eval, without_held_out
from crossrank.finetune.result import RESULT_FILE, FinetuneResult, model_card
from crossrank.finetune.train import LOSS, TrainedModel, require_training_extra, train

__all__ = ["Preparation", "evaluate", "finetune", "prepare", "publish"]


def finetune(
    dataset: str | os.PathLike[str],
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: FinetuneConfig | None = None,
    *,
    reranker_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune cross-encoder ``model`` on ``dataset`` into ``output``, measuring it before and after.

    The run's settings are a :class:`~crossrank.finetune.FinetuneConfig`: ``config``, with
    ``options`` (its fields as keyword arguments) on top; the environment is not read. The main ones:

    - ``eval_dataset``: the held-out set (a BEIR or TREC DL folder, or a named dataset). Default:
      ``dataset`` itself when it is a BEIR folder with ``qrels/{eval_split}.tsv``; JSONL input
      without one is trained without a held-out measurement. The held-out split is never trained
      on: a query id in both splits of one folder is an error, and a training query with the same
      text as a held-out one is left out (and listed in :attr:`FinetuneResult.left_out`).
    - ``also_evaluate``: more datasets to measure before and after (e.g. ``"trec-dl-2019"``, the
      original domain of MS MARCO models, to see what was forgotten).
    - ``num_negatives``, ``epochs``, ``batch_size``, ``learning_rate`` (linear decay after 10%
      warm-up), ``max_length`` (tokens per pair in training; the saved model keeps the base
      model's own limit for scoring), ``bf16`` (bfloat16 mixed precision; the weights stay
      float32; faster on GPUs and on CPUs with AVX512-BF16 or AMX, slower on others).
    - ``max_minutes``: when spent, training stops at the next step and the model trained so far
      is saved and evaluated. ``max_train_queries``: a seeded random subset. ``seed`` seeds
      negative sampling, shuffling, dropout and the subset: same seed, same model.
    - ``resume``: continue from the latest checkpoint of an interrupted run into the same
      ``output``; ``overwrite``: replace an existing ``output`` (only once the new model is complete).

    Args:
        dataset: Training data, see :func:`~crossrank.finetune.load_training_data`.
        model: The base cross-encoder (hub id or folder; one output logit).
        output: The folder to create. It must not exist (or be empty) unless ``overwrite``.
        config: The settings; default: ``FinetuneConfig``'s defaults.
        reranker_options: Extra :class:`crossrank.Reranker` options for the evaluations.
        progress: ``progress(stage, done, total)`` during training and scoring.
        **options: :class:`~crossrank.finetune.FinetuneConfig` fields, overriding ``config``'s.

    Returns:
        A :class:`FinetuneResult`; the same numbers are in ``output/finetune.json`` and the model
        card ``output/README.md``.

    Raises:
        InputFileError: Bad training or evaluation data (file and line named).
        InvalidArgumentError: A bad option, ``output`` exists, or train and held-out queries overlap.
        BackendUnavailableError: The ``train`` or ``eval`` extra is missing.
        ModelLoadError: The base model can't be loaded.
    """
    require_training_extra()
    if config is None or options:
        given = config.model_dump(exclude_unset=True) if config is not None else {}
        config = FinetuneConfig.from_arguments(**{**given, **options})
    preparation = prepare(dataset, output, config, progress)
    trained = train(
        model,
        preparation.pairs,
        data=preparation.data,
        work=preparation.work,
        settings=config,
        progress=progress,
    )
    reports = evaluate(preparation, trained, config, reranker_options, progress)
    result = FinetuneResult(
        output=preparation.target,
        base_model=os.fspath(model),
        train_queries=len(preparation.queries),
        train_pairs=len(preparation.pairs[2]),
        left_out=preparation.left_out,
        steps=trained.steps,
        epochs=trained.epochs,
        train_seconds=trained.train_seconds,
        stopped_by_budget=trained.stopped_by_budget,
        reports=reports,
        dev_metrics=trained.dev_metrics,
        settings={
            "dataset": os.fspath(dataset),
            **config.model_dump(mode="json"),
            "eval_dataset": preparation.held_out.name if preparation.held_out else None,
            "device": trained.device,
            "scoring_max_length": trained.scoring_max_length,
            "loss": LOSS,
        },
    )
    publish(result, trained.staged, preparation.work)
    return result


@dataclass(frozen=True)
class Preparation:
    """What :func:`prepare` read and decided, for the steps after it.

    Attributes:
        target: The output folder.
        work: The work folder beside it (``.NAME.partial``): checkpoints and the staged model.
        data: The training data read.
        held_out: The held-out :class:`~crossrank.evaluation.EvalDataset`, or ``None``.
        also: The other evaluation sets, by the name given.
        queries: The training queries used (held-out ones and those beyond ``max_train_queries`` set aside).
        left_out: Ids of training queries left out for having a held-out query's text.
        pairs: The (query, document, label) columns trained on.
    """

    target: Path
    work: Path
    data: TrainingData
    held_out: Any
    also: dict[str, Any]
    queries: list[TrainingQuery]
    left_out: list[str]
    pairs: tuple[list[str], list[str], list[float]]


def prepare(
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: FinetuneConfig,
    progress: Progress | None = None,
) -> Preparation:
    """Check ``output``, read the training and evaluation data, set the held-out queries aside and
    mine the hard negatives. Nothing is written, so every fault here leaves no trace.

    Raises:
        InputFileError: Bad training or evaluation data.
        InvalidArgumentError: ``output`` exists, an interrupted run's work folder is in the way, train
            and held-out queries overlap, or no training query is left.
    """
    target = Path(output)
    work = target.parent / f".{target.name}.partial"
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not settings.overwrite:
        raise InvalidArgumentError(f"{target} already exists: choose a new --output, or --overwrite it")
    if work.exists() and not settings.resume:
        raise InvalidArgumentError(
            f"an interrupted run left {work}: --resume to continue it, or delete that folder to start over"
        )

    data = load_training_data(dataset)
    where = {"data_dir": settings.data_dir, "stage1": settings.stage1, "depth": settings.eval_depth}
    held_out = held_out_set(data, settings.eval_dataset, settings.eval_split, **where)
    also = {name: load_eval(name, split="test", **where) for name in settings.also_evaluate}
    queries, left_out = without_held_out(data, held_out, settings.eval_dataset, settings.eval_split)
    if settings.max_train_queries is not None and settings.max_train_queries < len(queries):
        chosen = random.Random(settings.seed).sample(queries, settings.max_train_queries)
        queries = sorted(chosen, key=queries.index)
    if not queries:
        raise InvalidArgumentError("no training queries are left once held-out queries are set aside")

    if progress:
        progress(f"mining {settings.num_negatives} hard negatives per query with {settings.stage1}", 0, 1)
    mined = mine_hard_negatives(data, queries, num_negatives=settings.num_negatives, stage1=settings.stage1)
    return Preparation(target, work, data, held_out, also, queries, left_out, training_pairs(queries, mined))


def evaluate(
    preparation: Preparation,
    trained: TrainedModel,
    settings: FinetuneConfig,
    reranker_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The fine-tuned model (and, with ``settings.evaluate_base``, the base model) scored on the
    held-out set and the other sets named: ``{dataset name: EvalReport}``, the model named by ``output``."""
    models = {"fine-tuned": str(trained.staged)}
    if settings.evaluate_base:
        models = {"base": trained.base_location, **models}
    options = {"device": trained.device, **(reranker_options or {})}
    held_out = preparation.held_out
    named = {f"{Path(held_out.name).name} ({settings.eval_split})": held_out} if held_out is not None else {}
    reports = {}
    for name, eval_data in (named | preparation.also).items():
        reports[name] = evaluate_models(name, eval_data, models, options, progress)
        reports[name].settings["model"] = reports[name].settings["systems"]["fine-tuned"] = str(
            preparation.target
        )
    return reports


def publish(result: FinetuneResult, staged: Path, work: Path) -> None:
    """Write ``finetune.json`` and the model card into the staged model, move it to ``result.output``
    (an old ``output`` is removed only after the swap), and remove the work folder."""
    (staged / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    (staged / "README.md").write_text(model_card(result), encoding="utf-8")
    target = result.output
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
