"""The options the OpenVINO backend takes, declared once (importable without openvino).

Example:
    >>> OpenVinoOptions(precision="bf16").precision
    'bf16'
    >>> OpenVinoOptions(precision="fp16")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for OpenVinoOptions
    precision
      Input should be 'auto', 'fp32' or 'bf16' ...
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["OpenVinoOptions", "Precision"]

#: What ``precision`` takes with ``backend="openvino"``.
Precision = Literal["auto", "fp32", "bf16"]


class OpenVinoOptions(BaseModel):
    """``backend="openvino"``: OpenVINO on the CPU, running the fp32 ONNX file ``backend="onnx"`` runs.

    No ``quantize``: int8 runs on ``backend="onnx"`` (``quantize="int8"`` or ``"int8-static"``),
    and the config says so when ``quantize`` is given with this backend.

    Attributes:
        precision: ``"auto"``: OpenVINO's own default for the CPU (bf16 where the CPU computes it
            natively, AMX or AVX512-BF16; fp32 elsewhere on x86); ``"fp32"``; ``"bf16"`` (where the
            CPU has no native bf16, OpenVINO runs fp32, and says so in the log). The precision
            that runs is the engine's ``precision``.
        cache_dir: OpenVINO's cache of compiled models, so that a restart skips compiling; None:
            ``$CROSSRANK_CACHE/openvino`` (default ``~/.cache/crossrank/openvino``).
        onnx_file: A ready ONNX file inside the model folder or repo, compiled as is.
        family: The model's family (:data:`crossrank.families.FAMILIES`); None: detected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Precision = "auto"
    cache_dir: str | None = None
    onnx_file: str | None = None
    family: str | None = None
