"""The options the torch backend takes, declared once (importable without torch).

Example:
    >>> TorchOptions(precision="bf16").precision
    'bf16'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["TorchOptions"]


class TorchOptions(BaseModel):
    """``backend="torch"``: sentence-transformers' ``CrossEncoder``.

    Attributes:
        precision: ``"auto"`` (fp16 autocast on CUDA, bf16 weights on CPUs with native bf16, fp32
            elsewhere), ``"fp32"``, ``"fp16"`` (CUDA only) or ``"bf16"``.
        trust_remote_code: Allow the model repo's own Python code (custom architectures).
        family: The model's family (:data:`crossrank.families.FAMILIES`); None: detected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    trust_remote_code: bool = False
    family: str | None = None
