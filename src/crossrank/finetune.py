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
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossrank.corpus import json_object, numbered_lines, read_corpus
from crossrank.errors import BackendUnavailableError, InputFileError, InvalidArgumentError, ModelLoadError

__all__ = [
    "FinetuneResult",
    "TrainingData",
    "TrainingQuery",
    "finetune",
    "load_training_data",
    "mine_hard_negatives",
]

logger = logging.getLogger(__name__)

#: ``progress(stage, done, total)``: ``stage`` is a short description ("training", "scoring ...").
Progress = Callable[[str, int, int], None]
Stage1 = Literal["bm25", "bi-encoder"]

#: Name of the file holding the run's numbers in the output folder.
RESULT_FILE = "finetune.json"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class TrainingQuery:
    """One training question: its text, the documents that answer it and, optionally, ones that don't.

    Attributes:
        qid: Query id (BEIR ``_id``; for JSONL input, ``"line N"``).
        query: Query text.
        positives: Texts of the relevant documents.
        positive_ids: Corpus ids of the relevant documents (empty for JSONL input).
        negatives: Texts judged not relevant (qrels grade 0, or the JSONL ``negatives``).
    """

    qid: str
    query: str
    positives: tuple[str, ...]
    positive_ids: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Training questions plus the collection hard negatives are mined from.

    Attributes:
        source: The folder or file read.
        queries: The training questions, in file order.
        corpus_ids: Ids of the documents to mine negatives from (for JSONL input, ``"pool N"``).
        corpus_texts: Their texts (for JSONL input: every distinct positive and negative text).
        dev: Judged dev queries (BEIR ``qrels/dev.tsv``), watched during training; empty without one.
    """

    source: Path
    queries: list[TrainingQuery]
    corpus_ids: list[str]
    corpus_texts: list[str]
    dev: list[TrainingQuery] = field(default_factory=list)

    @property
    def is_beir(self) -> bool:
        """Whether the data came from a BEIR folder (then held-out splits can be read from it)."""
        return self.source.is_dir()


def load_training_data(source: str | os.PathLike[str], *, split: str = "train") -> TrainingData:
    """Read training questions from a BEIR folder or a JSONL file, checking everything.

    Args:
        source: A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``, optional
            ``qrels/dev.tsv``) or a JSONL file with one ``{"query", "positives": [text],
            "negatives"?: [text]}`` object per line.
        split: The BEIR qrels file to train on.

    Raises:
        InputFileError: A file is missing or empty, a line is malformed, qrels name an unknown query
            or document, or a query has no positive; the message names the file and the line.

    Example:
        >>> import pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "train.jsonl"
        >>> _ = file.write_text('{"query": "flea lifespan", "positives": ["Fleas live a year."]}\\n')
        >>> load_training_data(file).queries[0].positives
        ('Fleas live a year.',)
    """
    path = Path(source)
    if path.is_dir():
        return _load_beir_training(path, split)
    if not path.exists():
        raise InputFileError(
            "no such file or folder (give a BEIR folder or a JSONL file of {query, positives, negatives?})",
            path=path,
        )
    return _load_jsonl_training(path)


def _numbered_lines(file: Path) -> list[tuple[int, str]]:
    lines = numbered_lines(file)
    if not lines:
        raise InputFileError("the file is empty", path=file)
    return lines


def _read_queries(file: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in _numbered_lines(file):
        record = json_object(line, file, number)
        qid, text = record.get("_id", record.get("id")), record.get("text")
        if qid is None or not isinstance(text, str) or not text.strip():
            raise InputFileError("expected {'_id': ..., 'text': non-empty string}", path=file, line=number)
        queries[str(qid)] = text
    return queries


def _read_qrels(
    file: Path, queries: Mapping[str, str], documents: Mapping[str, str]
) -> dict[str, tuple[list[str], list[str], int]]:
    """``{qid: (positive ids, negative ids, first line)}`` from a BEIR qrels TSV, every id checked."""
    judged: dict[str, tuple[list[str], list[str], int]] = {}
    rows = _numbered_lines(file)
    header = rows[0][1].split("\t")
    if [column.strip() for column in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise InputFileError(
            "expected the header 'query-id<TAB>corpus-id<TAB>score'", path=file, line=rows[0][0]
        )
    for number, line in rows[1:]:
        cells = [cell.strip() for cell in next(csv.reader([line], delimiter="\t"))]
        if len(cells) < 3:
            raise InputFileError(
                f"expected 3 tab-separated columns, found {len(cells)}", path=file, line=number
            )
        qid, docid, grade_text = cells[:3]
        try:
            grade = int(float(grade_text))
        except ValueError:
            raise InputFileError(f"score {grade_text!r} is not a number", path=file, line=number) from None
        if qid not in queries:
            raise InputFileError(f"query id {qid!r} is not in queries.jsonl", path=file, line=number)
        if docid not in documents:
            raise InputFileError(f"corpus id {docid!r} is not in corpus.jsonl", path=file, line=number)
        positives, negatives, _ = judged.setdefault(qid, ([], [], number))
        (positives if grade > 0 else negatives).append(docid)
    if not judged:
        raise InputFileError("no judgements below the header", path=file)
    for qid, (positives, _, first) in judged.items():
        if not positives:
            raise InputFileError(
                f"query {qid!r} has no positive (every judgement is 0): nothing to learn from",
                path=file,
                line=first,
            )
    return judged


def _load_beir_training(folder: Path, split: str) -> TrainingData:
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise InputFileError(
                "no such file (a BEIR training folder holds corpus.jsonl, queries.jsonl and "
                f"qrels/{split}.tsv)",
                path=folder / name,
            )
    corpus = read_corpus(folder / "corpus.jsonl")  # InputFileError for an empty or malformed corpus
    documents = {document.id: document.text for document in corpus}
    queries = _read_queries(folder / "queries.jsonl")

    def build(file: Path) -> list[TrainingQuery]:
        return [
            TrainingQuery(
                qid,
                queries[qid],
                tuple(documents[d] for d in positives),
                tuple(positives),
                tuple(documents[d] for d in negatives),
            )
            for qid, (positives, negatives, _) in _read_qrels(file, queries, documents).items()
        ]

    dev_file = folder / "qrels" / "dev.tsv"
    dev = build(dev_file) if split != "dev" and dev_file.is_file() else []
    return TrainingData(
        folder, build(folder / "qrels" / f"{split}.tsv"), list(documents), list(documents.values()), dev
    )


def _load_jsonl_training(file: Path) -> TrainingData:
    def texts(record: dict[str, Any], key: str, number: int) -> tuple[str, ...]:
        value = record.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise InputFileError(f"'{key}' must be a list of non-empty strings", path=file, line=number)
        return tuple(value)

    queries = []
    for number, line in _numbered_lines(file):
        record = json_object(line, file, number)
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InputFileError("expected a non-empty string 'query'", path=file, line=number)
        positives = texts(record, "positives", number)
        if not positives:
            raise InputFileError(
                f"query {query!r} has no positives: nothing to learn from", path=file, line=number
            )
        queries.append(
            TrainingQuery(f"line {number}", query, positives, (), texts(record, "negatives", number))
        )
    pool = list(dict.fromkeys(text for q in queries for text in (*q.positives, *q.negatives)))
    return TrainingData(file, queries, [f"pool {i}" for i in range(len(pool))], pool)


# --------------------------------------------------------------------------- hard negatives


def mine_hard_negatives(
    data: TrainingData,
    queries: Sequence[TrainingQuery] | None = None,
    *,
    num_negatives: int = 8,
    stage1: Stage1 = "bm25",
) -> dict[str, list[str]]:
    """Each query's hard negatives: its stage-1 top documents that are not judged positive.

    The documents a reranker will see in production are the ones stage 1 retrieves, so those are
    the negatives worth learning from. Judged positives are excluded by id and by text.

    Args:
        data: From :func:`load_training_data` (its corpus is searched).
        queries: The queries to mine for (default: all of ``data.queries``).
        num_negatives: Negatives per query, best-ranked first.
        stage1: ``"bm25"`` (``bm25s``) or ``"bi-encoder"`` (all-MiniLM-L6-v2).

    Returns:
        ``{qid: [negative text, ...]}``, at most ``num_negatives`` each.
    """
    if num_negatives < 0:
        raise InvalidArgumentError(f"num_negatives must be >= 0, got {num_negatives}")
    chosen = list(data.queries if queries is None else queries)
    if num_negatives == 0 or not chosen:
        return {q.qid: [] for q in chosen}
    depth = num_negatives + max(len(q.positives) for q in chosen) + 5
    texts = [q.query for q in chosen]
    if stage1 == "bm25":
        from crossrank.evaluation.stage1 import bm25_search

        results = bm25_search(data.corpus_texts, texts, k=depth)
    elif stage1 == "bi-encoder":
        from crossrank.evaluation.stage1 import bi_encoder_search

        results = bi_encoder_search(data.corpus_texts, texts, k=depth)
    else:
        raise InvalidArgumentError(f"stage1 must be 'bm25' or 'bi-encoder', got {stage1!r}")
    mined = {}
    for query, hits in zip(chosen, results, strict=True):
        excluded_ids, excluded_texts = set(query.positive_ids), set(query.positives)
        negatives = [
            data.corpus_texts[i]
            for i, _ in hits
            if data.corpus_ids[i] not in excluded_ids and data.corpus_texts[i] not in excluded_texts
        ]
        mined[query.qid] = negatives[:num_negatives]
    return mined


def _pairs(
    queries: Sequence[TrainingQuery], mined: Mapping[str, list[str]]
) -> tuple[list[str], list[str], list[float]]:
    """(query, document, label) columns: every positive, the given negatives, the mined negatives."""
    left, right, labels = [], [], []
    for query in queries:
        given = list(query.negatives)
        negatives = given + [text for text in mined.get(query.qid, []) if text not in given]
        for text, label in [(t, 1.0) for t in query.positives] + [(t, 0.0) for t in negatives]:
            left.append(query.query)
            right.append(text)
            labels.append(label)
    return left, right, labels


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


# --------------------------------------------------------------------------- result


@dataclass
class FinetuneResult:
    """What :func:`finetune` did and measured.

    Attributes:
        output: The model folder.
        base_model: The model fine-tuned.
        train_queries: Training questions used.
        train_pairs: (query, document) pairs per epoch.
        left_out: Training query ids left out because their text equals a held-out query's.
        steps: Optimizer steps taken (all runs of a resumed training together).
        epochs: Epochs completed (fractional when the time budget stopped training).
        train_seconds: Wall time of this run's training loop.
        stopped_by_budget: Whether ``max_minutes`` ended training early.
        reports: ``{dataset name: EvalReport}`` with the systems "stage 1", "base" and "fine-tuned".
        dev_metrics: The sentence-transformers reranking evaluator's metrics on ``qrels/dev.tsv``.
        settings: The training settings.
    """

    output: Path
    base_model: str
    train_queries: int
    train_pairs: int
    left_out: list[str]
    steps: int
    epochs: float
    train_seconds: float
    stopped_by_budget: bool
    reports: dict[str, Any]
    dev_metrics: dict[str, float]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``finetune.json`` and ``crossrank finetune --json`` hold)."""
        return {
            "output": str(self.output),
            "base_model": self.base_model,
            "train_queries": self.train_queries,
            "train_pairs": self.train_pairs,
            "left_out": self.left_out,
            "steps": self.steps,
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "stopped_by_budget": self.stopped_by_budget,
            "settings": self.settings,
            "dev_metrics": self.dev_metrics,
            "evaluation": {name: report.to_dict() for name, report in self.reports.items()},
        }


# --------------------------------------------------------------------------- training


def _training_imports() -> Any:
    try:
        import datasets  # noqa: F401
        from sentence_transformers.cross_encoder import CrossEncoderTrainer  # noqa: F401
    except ImportError as err:
        raise BackendUnavailableError(
            f"fine-tuning needs the train extra: pip install 'crossrank[train]' ({err})"
        ) from err


def _callbacks(max_seconds: float | None, progress: Progress | None) -> list[Any]:
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

    return [Budget()]


def _latest_checkpoint(folder: Path) -> Path | None:
    checkpoints = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _evaluate_models(
    name: str,
    dataset: Any,
    models: Mapping[str, str],
    reranker_options: Mapping[str, Any],
    progress: Progress | None,
) -> Any:
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


def finetune(
    dataset: str | os.PathLike[str],
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    eval_dataset: str | os.PathLike[str] | None = None,
    eval_split: str = "test",
    also_evaluate: Sequence[str] = (),
    data_dir: str | os.PathLike[str] | None = None,
    stage1: Stage1 = "bm25",
    num_negatives: int = 8,
    epochs: float = 2.0,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    max_length: int = 256,
    bf16: bool = False,
    max_minutes: float | None = None,
    max_train_queries: int | None = None,
    eval_depth: int = 20,
    evaluate_base: bool = True,
    seed: int = 12,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    reranker_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune cross-encoder ``model`` on ``dataset`` into ``output``, measuring it before and after.

    Args:
        dataset: Training data, see :func:`load_training_data`.
        model: The base cross-encoder (hub id or folder; one output logit).
        output: The folder to create. It must not exist (or be empty) unless ``overwrite``.
        eval_dataset: The held-out set: a BEIR folder, a TREC DL folder or a named dataset. Default:
            ``dataset`` itself when it is a BEIR folder with ``qrels/{eval_split}.tsv``; JSONL input
            without ``eval_dataset`` is trained without a held-out measurement.
        eval_split: The BEIR qrels of the held-out set (``"test"``). Never trained on: a query id in
            both splits of one folder is an error, and a training query with the same text as a
            held-out one is left out (and listed in :attr:`FinetuneResult.left_out`).
        also_evaluate: More datasets to measure before and after (e.g. ``"trec-dl-2019"``, the
            original domain of MS MARCO models, to see what was forgotten).
        data_dir: Where named datasets live (as ``crossrank eval --data-dir``).
        stage1: The retriever hard negatives are mined with and the held-out set is reranked from.
        num_negatives: Mined hard negatives per training query.
        epochs: Passes over the training pairs.
        batch_size: Pairs per optimizer step.
        learning_rate: Peak learning rate (linear decay after 10% warm-up).
        max_length: Tokens per (query, document) pair in training; the saved model keeps the base
            model's own limit for scoring.
        bf16: Train in bfloat16 mixed precision (the weights stay float32). Faster on GPUs and on
            CPUs with bfloat16 instructions (AVX512-BF16, AMX), slower on others.
        max_minutes: Time budget of the training loop; when spent, training stops at the next step
            and the model trained so far is saved and evaluated.
        max_train_queries: Train on this many queries only (a seeded random subset).
        eval_depth: Stage-1 candidates reranked per held-out query.
        evaluate_base: Also score the base model (off saves time when it is known).
        seed: Seeds negative sampling, shuffling, dropout and the subset: same seed, same model.
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when present, else the CPU.
        resume: Continue from the latest checkpoint of an interrupted run into the same ``output``.
        overwrite: Replace an existing ``output`` (only once the new model is complete).
        reranker_options: Extra :class:`crossrank.Reranker` options for the evaluations.
        progress: ``progress(stage, done, total)`` during training and scoring.

    Returns:
        A :class:`FinetuneResult`; the same numbers are in ``output/finetune.json`` and the model
        card ``output/README.md``.

    Raises:
        InputFileError: Bad training or evaluation data (file and line named).
        InvalidArgumentError: A bad option, ``output`` exists, or train and held-out queries overlap.
        BackendUnavailableError: The ``train`` or ``eval`` extra is missing.
        ModelLoadError: The base model can't be loaded.
    """
    _training_imports()
    options = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    for name, value in {**options, "max_length": max_length, "eval_depth": eval_depth}.items():
        if not value > 0:
            raise InvalidArgumentError(f"{name} must be > 0, got {value}")
    if max_minutes is not None and max_minutes <= 0:
        raise InvalidArgumentError(f"max_minutes must be > 0, got {max_minutes}")
    if max_train_queries is not None and max_train_queries < 1:
        raise InvalidArgumentError(f"max_train_queries must be >= 1, got {max_train_queries}")
    target = Path(output)
    work = target.parent / f".{target.name}.partial"
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise InvalidArgumentError(f"{target} already exists: choose a new --output, or --overwrite it")
    if work.exists() and not resume:
        raise InvalidArgumentError(
            f"an interrupted run left {work}: --resume to continue it, or delete that folder to start over"
        )

    data = load_training_data(dataset)
    held_out = _held_out(data, eval_dataset, eval_split, stage1, eval_depth, data_dir)
    extra = {
        name: _load_eval(name, data_dir=data_dir, stage1=stage1, depth=eval_depth, split="test")
        for name in also_evaluate
    }
    queries, left_out = _without_held_out(data, held_out, eval_dataset, eval_split)
    if max_train_queries is not None and max_train_queries < len(queries):
        queries = sorted(random.Random(seed).sample(queries, max_train_queries), key=queries.index)
    if not queries:
        raise InvalidArgumentError("no training queries are left once held-out queries are set aside")

    if progress:
        progress(f"mining {num_negatives} hard negatives per query with {stage1}", 0, 1)
    mined = mine_hard_negatives(data, queries, num_negatives=num_negatives, stage1=stage1)
    left, right, labels = _pairs(queries, mined)

    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    from crossrank.model_source import resolve_model_source

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    set_seed(seed)
    source = resolve_model_source(os.fspath(model), local_files_only=False)
    try:
        scoring_max_length = _scoring_max_length(source.location)
        cross_encoder = CrossEncoder(
            source.location, device=device, max_length=max_length, local_files_only=source.local_files_only
        )
    except Exception as err:
        raise ModelLoadError(f"cannot load base model {model!r}: {err}", model=os.fspath(model)) from err
    if cross_encoder.num_labels != 1:
        from crossrank.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"{model} has {cross_encoder.num_labels} output labels; "
            "fine-tuning needs a one-logit cross-encoder",
            model=os.fspath(model),
        )

    train = Dataset.from_dict({"query": left, "document": right, "label": labels})
    evaluator = _dev_evaluator(data, mined_for_dev=num_negatives, stage1=stage1) if data.dev else None
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    args = CrossEncoderTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=math.ceil(0.1 * math.ceil(steps_per_epoch * epochs)),  # an int on every transformers
        lr_scheduler_type="linear",
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        save_strategy="steps",
        save_steps=max(10, steps_per_epoch // 4),
        save_total_limit=1,
        eval_strategy="epoch" if evaluator is not None else "no",
        logging_steps=max(1, steps_per_epoch // 10),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    callbacks = _callbacks(None if max_minutes is None else max_minutes * 60, progress)
    trainer = CrossEncoderTrainer(
        model=cross_encoder,
        args=args,
        train_dataset=train,
        loss=BinaryCrossEntropyLoss(cross_encoder),
        evaluator=evaluator,
        callbacks=callbacks,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # logs go to `logging` and the progress callback, not stdout
    checkpoint = _latest_checkpoint(work / "checkpoints") if resume else None
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    dev_metrics = {k: float(v) for k, v in (evaluator(cross_encoder) if evaluator else {}).items()}

    staged = work / "model"
    if staged.exists():
        shutil.rmtree(staged)
    if hasattr(type(cross_encoder), "max_seq_length"):  # sentence-transformers >= 6 (max_length: older)
        cross_encoder.max_seq_length = scoring_max_length
    else:
        cross_encoder.max_length = scoring_max_length
    cross_encoder.save_pretrained(str(staged))

    models = {"fine-tuned": str(staged)}
    if evaluate_base:
        models = {"base": source.location, **models}
    eval_options = {"device": device, **(reranker_options or {})}
    reports = {}
    named = {f"{Path(held_out.name).name} ({eval_split})": held_out} if held_out is not None else {}
    for name, eval_data in (named | extra).items():
        reports[name] = _evaluate_models(name, eval_data, models, eval_options, progress)
        reports[name].settings["model"] = reports[name].settings["systems"]["fine-tuned"] = str(target)

    result = FinetuneResult(
        output=target,
        base_model=os.fspath(model),
        train_queries=len(queries),
        train_pairs=len(labels),
        left_out=left_out,
        steps=int(trainer.state.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        train_seconds=train_seconds,
        stopped_by_budget=callbacks[0].stopped,
        reports=reports,
        dev_metrics=dev_metrics,
        settings={
            "dataset": os.fspath(dataset),
            "eval_dataset": held_out.name if held_out else None,
            "eval_split": eval_split,
            "also_evaluate": list(also_evaluate),
            "stage1": stage1,
            "num_negatives": num_negatives,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "max_length": max_length,
            "bf16": bf16,
            "scoring_max_length": scoring_max_length,
            "max_minutes": max_minutes,
            "max_train_queries": max_train_queries,
            "eval_depth": eval_depth,
            "seed": seed,
            "device": device,
            "loss": "BinaryCrossEntropyLoss",
        },
    )
    (staged / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    (staged / "README.md").write_text(model_card(result), encoding="utf-8")
    _move_into_place(staged, target)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _scoring_max_length(location: str) -> int:
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


def _move_into_place(staged: Path, target: Path) -> None:
    """Put the finished model at ``target``; an old ``target`` is removed only after the swap."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_eval(name: str | os.PathLike[str], *, data_dir: Any, stage1: Stage1, depth: int, split: str) -> Any:
    from crossrank.evaluation import load_dataset

    try:
        return load_dataset(name, data_dir=data_dir, stage1=stage1, depth=depth, split=split)
    except ValueError as err:
        if stage1 == "bm25" or "ships a BM25 run" not in str(err):
            raise
        return load_dataset(name, data_dir=data_dir, depth=depth)  # TREC DL: its own BM25 run


def _held_out(
    data: TrainingData,
    eval_dataset: str | os.PathLike[str] | None,
    split: str,
    stage1: Stage1,
    depth: int,
    data_dir: Any,
) -> Any:
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
    return _load_eval(eval_dataset, data_dir=data_dir, stage1=stage1, depth=depth, split=split)


def _without_held_out(
    data: TrainingData, held_out: Any, eval_dataset: Any, eval_split: str
) -> tuple[list[TrainingQuery], list[str]]:
    """The training queries that are not held-out queries; a shared query id is an error."""
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
    held_texts = {_normalized(text) for text in held_out.queries.values()}
    kept = [q for q in data.queries if _normalized(q.query) not in held_texts]
    left_out = [q.qid for q in data.queries if _normalized(q.query) in held_texts]
    if left_out:
        logger.warning(
            "%d training query(ies) have the same text as a held-out query and are left out of training: %s",
            len(left_out),
            ", ".join(left_out[:10]),
        )
    return kept, left_out


def _dev_evaluator(data: TrainingData, *, mined_for_dev: int, stage1: Stage1) -> Any:
    """sentence-transformers' reranking evaluator over the dev queries' stage-1 candidates."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    candidates = mine_hard_negatives(data, data.dev, num_negatives=max(mined_for_dev, 10), stage1=stage1)
    samples = [
        {"query": q.query, "positive": list(q.positives), "documents": list(q.positives) + candidates[q.qid]}
        for q in data.dev
    ]
    return CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", write_csv=False)


# --------------------------------------------------------------------------- model card


def model_card(result: FinetuneResult) -> str:
    """The fine-tuned model's ``README.md``: base model, data, steps, time, before/after metrics."""
    s = result.settings
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, crossrank]",
        "---",
        "",
        f"# Cross-encoder fine-tuned from {result.base_model}",
        "",
        "Made by `crossrank finetune` (sentence-transformers `CrossEncoderTrainer`, binary cross-entropy on "
        'hard negatives). Load it with `crossrank.Reranker("<this folder>")` (any backend) or '
        "`sentence_transformers.CrossEncoder`.",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{result.base_model}` |",
        f"| data | `{s['dataset']}` |",
        f"| training queries | {result.train_queries} ({result.train_pairs} pairs per epoch) |",
        f"| hard negatives | {s['num_negatives']} per query from {s['stage1']}, judged positives excluded |",
        f"| steps / epochs | {result.steps} / {result.epochs:.2f}"
        + (" (stopped by the time budget)" if result.stopped_by_budget else "")
        + " |",
        f"| training time | {result.train_seconds / 60:.1f} min on {s['device']} |",
        f"| batch size, learning rate | {s['batch_size']}, {s['learning_rate']} |",
        f"| max length | {s['max_length']} tokens in training, {s['scoring_max_length']} for scoring |",
        f"| seed | {s['seed']} |",
    ]
    if result.left_out:
        lines.append(
            f"| left out | {len(result.left_out)} training queries with the text of a held-out query |"
        )
    lines += ["", "## Evaluation (stage-1 candidates reranked; the held-out split was never trained on)", ""]
    for name, report in result.reports.items():
        for depth, systems in report.metrics.items():
            metric_names = list(next(iter(systems.values())))
            lines += [
                f"**{name}** ({report.num_queries} queries, {report.stage1} top {depth})",
                "",
                "| system | " + " | ".join(metric_names) + " |",
                "|---|" + "---:|" * len(metric_names),
            ]
            for system, values in systems.items():
                label = f"stage 1 ({report.stage1})" if system == "stage 1" else system
                lines.append(f"| {label} | " + " | ".join(f"{values[m]:.4f}" for m in metric_names) + " |")
            lines.append("")
    if result.dev_metrics:
        lines += [
            "Dev split (sentence-transformers reranking evaluator): "
            + ", ".join(f"{k} {v:.4f}" for k, v in result.dev_metrics.items()),
            "",
        ]
    return "\n".join(lines) + "\n"
