"""The options the ONNX backend takes, declared once (importable without onnxruntime).

Example:
    >>> OnnxOptions(quantize="int8-static").quantize
    'int8-static'
    >>> OnnxOptions(precision="bf16")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for OnnxOptions
    precision
      Value error, precision='bf16' applies to backend='torch' or backend='openvino'; backend='onnx' ...
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from crossrank.config import Quantize

__all__ = ["OnnxOptions"]


class OnnxOptions(BaseModel):
    """``backend="onnx"``: ONNX Runtime on a file exported, optimised and cached on first use.

    Attributes:
        quantize: None runs fp32; ``"int8"`` dynamic int8 (activation scales per batch);
            ``"int8-static"`` int8 with scales fixed at export.
        onnx_file: A ready ONNX file inside the model folder or repo, loaded as is (not with ``quantize``).
        precision: fp32 (``"auto"`` means the same): ONNX Runtime's precision is the file's.
        family: The model's family (:data:`crossrank.families.FAMILIES`); None: detected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantize: Quantize | None = None
    onnx_file: str | None = None
    precision: str = "auto"
    family: str | None = None

    @model_validator(mode="after")
    def _file_or_quantize(self) -> OnnxOptions:
        if self.onnx_file is not None and self.quantize is not None:
            raise ValueError(
                f"onnx_file runs the file as it is, so quantize={self.quantize!r} would not apply: give "
                "one of them (a dynamic int8 file is recognised as such without quantize)"
            )
        return self

    @field_validator("precision")
    @classmethod
    def _fp32_only(cls, value: str) -> str:
        if value not in ("auto", "fp32"):
            takers = "backend='torch' or backend='openvino'" if value == "bf16" else "backend='torch'"
            raise ValueError(
                f"precision={value!r} applies to {takers}; backend='onnx' runs fp32, "
                "or int8 with quantize='int8' or 'int8-static'"
            )
        return value
