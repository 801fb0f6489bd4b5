"""Settings for building a :class:`crossrank.Reranker` from keyword arguments, a dict, YAML or env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

__all__ = ["DEFAULT_MODEL", "RerankerConfig"]

#: The model ``Reranker()`` loads when none is named.
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


class RerankerConfig(BaseSettings):
    """Everything needed to build a :class:`crossrank.Reranker`, validated.

    Values come from, highest priority first: keyword arguments, environment variables
    (``CROSSRANK_MODEL``, ``CROSSRANK_TOP_N``, ``CROSSRANK_NORMALIZE``, ... — the field name in
    upper case after ``CROSSRANK_``), a YAML file when built with :meth:`from_yaml`, then the
    defaults below. An invalid value raises ``pydantic.ValidationError`` naming the field; an
    unknown key is an error too, so typos don't pass silently.

    Example:
        >>> from crossrank import RerankerConfig
        >>> RerankerConfig(top_n=5, normalize=True).top_n
        5
        >>> RerankerConfig.model_validate({"model": "/models/my-ce", "min_score": 0.2}).min_score
        0.2
    """

    model_config = SettingsConfigDict(env_prefix="CROSSRANK_", extra="forbid", frozen=True)

    model: str = Field(
        DEFAULT_MODEL, description="Hugging Face hub id or local directory of a cross-encoder."
    )
    backend: Literal["torch", "onnx"] = Field("torch", description="Engine that runs the model.")
    quantize: Literal["int8"] | None = Field(None, description="backend='onnx': int8 dynamic quantisation.")
    onnx_file: str | None = Field(None, description="backend='onnx': a ready ONNX file in the model repo.")
    threads: PositiveInt | None = Field(None, description="Threads one forward pass may use (torch or ONNX).")
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1', ...; None picks CUDA if present.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="backend='torch': compute precision; 'auto' is fp16 on CUDA, fp32 on CPU."
    )
    top_n: PositiveInt | None = Field(3, description="How many documents rank() returns; None returns all.")
    max_length: PositiveInt | None = Field(
        None, description="Most tokens per (query, document) pair; None uses the model's limit."
    )
    batch_size: PositiveInt | None = Field(
        None, description="Most pairs per forward pass; None: 32 on CPU, 128 on CUDA, 4 for int8."
    )
    long_documents: Literal["truncate", "windows"] = Field(
        "truncate", description="Cut long documents at the end, or score them in overlapping windows (MaxP)."
    )
    stride: PositiveInt | None = Field(None, description="Tokens shared by consecutive windows.")
    normalize: bool = Field(False, description="Return sigmoid(logit) in 0-1 instead of raw logits.")
    min_score: float | None = Field(
        None, description="Drop documents scoring below this (on the scale chosen by `normalize`)."
    )
    local_files_only: bool = Field(
        False, description="Never contact the hub; use local files or the HF cache."
    )

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, section: str | None = None, **overrides: Any
    ) -> RerankerConfig:
        """Build a config from a YAML file; environment variables and ``overrides`` take precedence.

        Args:
            path: A YAML file whose top level (or ``section``) maps field names to values.
            section: Read the settings under this top-level key, e.g. ``"reranker"``, so one app
                config file can hold several components.
            **overrides: Field values that win over both the environment and the file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            pydantic.ValidationError: A value is invalid or a key is unknown.

        Example:
            A file ``app.yaml``::

                reranker:
                  model: cross-encoder/ms-marco-MiniLM-L6-v2
                  top_n: 5
                  normalize: true

            ``RerankerConfig.from_yaml("app.yaml", section="reranker")``.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"crossrank config file not found: {str(file)!r}")
        from_file = YamlConfigSettingsSource(cls, yaml_file=file, yaml_config_section=section)()
        from_env = EnvSettingsSource(cls)()
        return cls(**{**from_file, **from_env, **overrides})
