"""The training step: sentence-transformers' ``CrossEncoderTrainer`` with binary cross-entropy on
(query, document, 0/1) pairs, a time budget, checkpoints to resume from and a seed.

:func:`train` loads the base model, trains it in a work folder and saves it there; what it did is
a :class:`TrainedModel`. Nothing outside the work folder is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.errors import BackendUnavailableError, ModelLoadError, UnsupportedModelError
from crossrank.finetune.config import FinetuneConfig, Progress, Stage1
from crossrank.finetune.data import TrainingData, mine_hard_negatives

__all__ = [
    "LOSS",
    "TrainedModel",
    "latest_checkpoint",
    "require_training_extra",
    "scoring_max_length",
    "train",
]

logger = logging.getLogger(__name__)

#: The loss trained with (recorded in the run's settings).
LOSS = "BinaryCrossEntropyLoss"


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train` did.

    Attributes:
        staged: The saved model folder, inside the work folder.
        base_location: Where the base model's files are (a folder or a hub cache snapshot).
        device: The device trained on.
        scoring_max_length: The base model's own token limit, which the saved model keeps for scoring.
        steps: Optimizer steps taken (all runs of a resumed training together).
        epochs: Epochs completed (fractional when the time budget stopped training).
        train_seconds: Wall time of this run's training loop.
        stopped_by_budget: Whether ``max_minutes`` ended training early.
        dev_metrics: The reranking evaluator's metrics on the dev queries (empty without any).
    """

    staged: Path
    base_location: str
    device: str
    scoring_max_length: int
    steps: int
    epochs: float
    train_seconds: float
    stopped_by_budget: bool
    dev_metrics: dict[str, float]


def require_training_extra() -> None:
    """Raise :class:`~crossrank.errors.BackendUnavailableError` naming the extra when it is missing."""
    try:
        import datasets  # noqa: F401
        from sentence_transformers.cross_encoder import CrossEncoderTrainer  # noqa: F401
    except ImportError as err:
        raise BackendUnavailableError(
            f"fine-tuning needs the train extra: pip install 'crossrank[train]' ({err})"
        ) from err


def train(
    model: str | os.PathLike[str],
    pairs: tuple[list[str], list[str], list[float]],
    *,
    data: TrainingData,
    work: Path,
    settings: FinetuneConfig,
    progress: Progress | None = None,
) -> TrainedModel:
    """Train ``model`` on ``pairs`` (query, document, label columns) and save it to ``work/model``.

    Checkpoints go to ``work/checkpoints``; with ``settings.resume`` training continues from the
    latest one. ``data.dev`` queries, when there are any, are evaluated after each epoch.

    Raises:
        ModelLoadError: The base model can't be loaded.
        UnsupportedModelError: It is not a one-logit cross-encoder.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from crossrank.families import is_causal_lm
    from crossrank.model_source import resolve_model_source

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    set_seed(settings.seed)
    source = resolve_model_source(os.fspath(model), local_files_only=False)
    try:
        scoring_length = scoring_max_length(source.location)
        cross_encoder = CrossEncoder(
            source.location,
            device=device,
            max_length=settings.max_length,
            local_files_only=source.local_files_only,
        )
    except Exception as err:
        raise ModelLoadError(f"cannot load base model {model!r}: {err}", model=os.fspath(model)) from err
    if cross_encoder.num_labels != 1:
        raise UnsupportedModelError(
            f"{model} has {cross_encoder.num_labels} output labels; "
            "fine-tuning needs a one-logit cross-encoder",
            model=os.fspath(model),
        )
    if is_causal_lm(cross_encoder.config.to_dict()):
        # sentence-transformers loads a causal LM with its yes-no head (LogitScore) but trains it
        # on plain (query, document) pairs: an LLM reranker would lose its prompt.
        raise UnsupportedModelError(
            f"{model} is an LLM reranker (a causal language model); crossrank finetune trains "
            "cross-encoders (BERT, XLM-RoBERTa, ModernBERT, DeBERTa...): fine-tuning with the "
            "reranker's prompt is not supported",
            model=os.fspath(model),
        )

    left, right, labels = pairs
    evaluator = (
        _dev_evaluator(data, mined_for_dev=settings.num_negatives, stage1=settings.stage1)
        if data.dev
        else None
    )
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    args = CrossEncoderTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        # an int on every transformers
        warmup_steps=math.ceil(0.1 * math.ceil(steps_per_epoch * settings.epochs)),
        lr_scheduler_type="linear",
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=device == "cpu",
        bf16=settings.bf16,
        save_strategy="steps",
        save_steps=max(10, steps_per_epoch // 4),
        save_total_limit=1,
        eval_strategy="epoch" if evaluator is not None else "no",
        logging_steps=max(1, steps_per_epoch // 10),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    budget = _budget_callback(None if settings.max_minutes is None else settings.max_minutes * 60, progress)
    trainer = CrossEncoderTrainer(
        model=cross_encoder,
        args=args,
        train_dataset=Dataset.from_dict({"query": left, "document": right, "label": labels}),
        loss=BinaryCrossEntropyLoss(cross_encoder),
        evaluator=evaluator,
        callbacks=[budget],
    )
    trainer.remove_callback(PrinterCallback)  # logs go to `logging` and the progress callback, not stdout
    checkpoint = latest_checkpoint(work / "checkpoints") if settings.resume else None
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    dev_metrics = {k: float(v) for k, v in (evaluator(cross_encoder) if evaluator else {}).items()}

    staged = work / "model"
    if staged.exists():
        shutil.rmtree(staged)
    if hasattr(type(cross_encoder), "max_seq_length"):  # sentence-transformers >= 6 (max_length: older)
        cross_encoder.max_seq_length = scoring_length
    else:
        cross_encoder.max_length = scoring_length
    cross_encoder.save_pretrained(str(staged))
    return TrainedModel(
        staged=staged,
        base_location=source.location,
        device=device,
        scoring_max_length=scoring_length,
        steps=int(trainer.state.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        train_seconds=train_seconds,
        stopped_by_budget=budget.stopped,
        dev_metrics=dev_metrics,
    )


def scoring_max_length(location: str) -> int:
    """The base model's own token limit for scoring, which the fine-tuned model keeps."""
    config = Path(location) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    from transformers import AutoConfig, AutoTokenizer

    limit = AutoTokenizer.from_pretrained(location).model_max_length or 512
    positions = getattr(AutoConfig.from_pretrained(location), "max_position_embeddings", None) or 512
    return int(min(limit, positions))


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder in ``folder``, if any.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as root:
        ...     for step in (10, 9, 100):
        ...         (pathlib.Path(root) / f"checkpoint-{step}").mkdir()
        ...     latest_checkpoint(pathlib.Path(root)).name
        'checkpoint-100'
    """
    checkpoints = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _budget_callback(max_seconds: float | None, progress: Progress | None) -> Any:
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        """Stops training (and saves a checkpoint to resume from) once the time budget is spent."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.stopped = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logger.info("step %d/%d: %s", state.global_step, state.max_steps, logs)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress("training", state.global_step, state.max_steps)
            if max_seconds is not None and time.monotonic() - self.started >= max_seconds:
                self.stopped = state.global_step < state.max_steps
                control.should_training_stop = True
                control.should_save = True

    return Budget()


def _dev_evaluator(data: TrainingData, *, mined_for_dev: int, stage1: Stage1) -> Any:
    """sentence-transformers' reranking evaluator over the dev queries' stage-1 candidates."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    candidates = mine_hard_negatives(data, data.dev, num_negatives=max(mined_for_dev, 10), stage1=stage1)
    samples = [
        {"query": q.query, "positive": list(q.positives), "documents": list(q.positives) + candidates[q.qid]}
        for q in data.dev
    ]
    return CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", write_csv=False)
