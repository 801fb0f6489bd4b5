"""Every option of a fine-tuning run, declared once: :class:`FinetuneConfig`.

:func:`crossrank.finetune.finetune` validates its keyword arguments with it, records it in
``finetune.json``, ``crossrank finetune`` builds its options from its fields, and
``benchmarks/finetune_scifact.py`` takes its defaults from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crossrank.config import refuse_bool_number_confusion, settings_from_yaml, validate_arguments

__all__ = ["FINETUNE_ENV_PREFIX", "FinetuneConfig", "Progress", "Stage1"]

#: Environment variables of the fine-tuning settings: the field name in upper case after this prefix.
FINETUNE_ENV_PREFIX = "CROSSRANK_FINETUNE_"

#: ``progress(stage, done, total)``: ``stage`` is a short description ("training", "scoring ...").
Progress = Callable[[str, int, int], None]
#: The retrievers hard negatives are mined with and held-out sets are reranked from.
Stage1 = Literal["bm25", "bi-encoder"]


class FinetuneConfig(BaseSettings):
    """The settings of a fine-tuning run (everything but the data, the base model and the output).

    Values come from, highest priority first: keyword arguments, environment variables
    (``CROSSRANK_FINETUNE_EPOCHS``, ...; ``data_dir`` is ``CROSSRANK_DATA_DIR``, as for
    ``crossrank eval``), the ``finetune`` section of a YAML file when built with :meth:`from_yaml`,
    then the defaults. :meth:`from_arguments` (what :func:`~crossrank.finetune.finetune` uses)
    reads its arguments only. An unknown key or a bad value is an error naming the field.

    Example:
        >>> FinetuneConfig.from_arguments(epochs=1, num_negatives=4).epochs
        1.0
        >>> FinetuneConfig.from_arguments(batch_size=0)
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: batch_size: Input should be greater than 0 (got 0)
    """

    model_config = SettingsConfigDict(
        env_prefix=FINETUNE_ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
        validate_by_name=True,
    )

    # ---------------------------------------------------------------- data: what to train and measure on
    eval_dataset: str | None = Field(
        None, description="Held-out set (folder or named dataset). Default: --dataset's qrels/test.tsv."
    )
    eval_split: str = Field("test", description="BEIR qrels file of the held-out set.")
    also_evaluate: tuple[str, ...] = Field(
        (), description="Also measure on this dataset before/after, e.g. trec-dl-2019; repeatable."
    )
    data_dir: Path | None = Field(
        None, validation_alias="CROSSRANK_DATA_DIR", description="Where named datasets live."
    )
    stage1: Stage1 = Field("bm25", description="Retriever to mine hard negatives and rerank from.")
    num_negatives: int = Field(8, ge=0, description="Hard negatives per training query.")

    # ---------------------------------------------------------------- training and evaluation
    epochs: float = Field(2.0, gt=0, description="Passes over the training pairs.")
    batch_size: PositiveInt = Field(16, description="Pairs per optimizer step.")
    learning_rate: float = Field(3e-5, gt=0, description="Peak learning rate.")
    max_length: int = Field(256, ge=8, description="Tokens per pair in training.")
    bf16: bool = Field(
        False,
        description="bfloat16 mixed-precision training: faster on GPUs and CPUs with AVX512-BF16 or AMX.",
    )
    max_minutes: float | None = Field(
        None, gt=0, description="Time budget of training; the model so far is kept."
    )
    max_train_queries: PositiveInt | None = Field(None, description="Train on N random queries only.")
    eval_depth: PositiveInt = Field(20, description="Stage-1 candidates reranked per query.")
    evaluate_base: bool = Field(
        True, description="Also score the base model (off saves time when it is known)."
    )
    seed: int = Field(12, description="Same seed, same data order and model.")
    device: str | None = Field(None, description="cpu, cuda... Default: CUDA when present.")

    # ---------------------------------------------------------------- the run
    resume: bool = Field(False, description="Continue an interrupted run.")
    overwrite: bool = Field(False, description="Replace an existing --output.")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: Any) -> Any:
        """``epochs=True`` would mean one epoch: a bool is not a number here either."""
        return refuse_bool_number_confusion(info.field_name, value, cls)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, section: str | None = "finetune", **overrides: Any
    ) -> FinetuneConfig:
        """Settings from a YAML file's ``section`` (default ``finetune``); env and ``overrides`` win.

        A file without that section gives the defaults (and the environment).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            pydantic.ValidationError: A value of the file or the environment is invalid.
            InvalidArgumentError: A value of ``overrides`` is invalid.

        Example:
            >>> import pathlib, tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = pathlib.Path(folder) / "app.yaml"
            ...     _ = path.write_text("finetune:\\n  epochs: 1\\n  num_negatives: 4\\n")
            ...     FinetuneConfig.from_yaml(path, epochs=3).model_dump(include={"epochs", "num_negatives"})
            {'num_negatives': 4, 'epochs': 3.0}
        """
        from_sources = settings_from_yaml(cls, path, section=section)
        if not overrides:
            return from_sources
        # Given on top of the file and the environment (merged here: data_dir's env name is an alias).
        return cls.from_arguments(**{**from_sources.model_dump(exclude_unset=True), **overrides})

    @classmethod
    def from_arguments(cls, **values: Any) -> FinetuneConfig:
        """Validate ``values`` alone, without reading the environment (what ``finetune(...)`` does).

        Raises:
            InvalidArgumentError: A value is invalid or unknown; the message names the field.
        """
        return validate_arguments(cls, **values)
