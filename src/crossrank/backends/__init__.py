"""The seam between crossrank's scoring path and the engine that runs the model.

A backend does one thing: given padded token ids (an :class:`~crossrank.encoding.EncodedBatch`),
return one float32 logit per row. Everything else (validation, tokenisation, batching,
normalisation, ranking, async) lives in :class:`crossrank.Reranker`, so a new engine (ONNX
Runtime, a GPU server, a Ray actor) only implements :class:`Backend` and is registered in
:func:`load_backend`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from tokenizers import Tokenizer

from crossrank.encoding import EncodedBatch
from crossrank.errors import InvalidArgumentError
from crossrank.model_source import ModelSource

__all__ = ["BACKENDS", "Backend", "BackendName", "load_backend"]

BackendName = Literal["torch", "onnx"]
#: Names accepted by ``Reranker(backend=...)``.
BACKENDS: tuple[str, ...] = ("torch", "onnx")


@runtime_checkable
class Backend(Protocol):
    """What a scoring engine provides to :class:`crossrank.Reranker`.

    Attributes:
        name: Backend name, e.g. ``"torch"``.
        device: Where the model runs, e.g. ``"cpu"`` or ``"cuda:0"``.
        tokenizer: The model's fast tokenizer (crossrank copies it; the backend may keep using its own).
        max_positions: Longest input, in tokens, the model accepts.
        pad_token_id: Token id used for padding.
        uses_token_type_ids: Whether the model takes segment ids.
        batch_overhead_tokens: What one more forward pass costs, in padded tokens; the batch
            planner (:func:`crossrank.encoding.plan_batches`) trades padding against passes with it.
        default_batch_size: Most pairs per forward pass when the user sets no ``batch_size``.
    """

    name: str
    device: str
    tokenizer: Tokenizer
    max_positions: int
    pad_token_id: int
    uses_token_type_ids: bool
    batch_overhead_tokens: int
    default_batch_size: int

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Return the raw logits of ``batch``: a float32 array of shape ``(rows,)``.

        Must be safe to call from several threads at once.
        """
        ...


def load_backend(name: str, source: ModelSource, *, device: str | None, **options: Any) -> Backend:
    """Load the model behind ``source`` with the backend called ``name``.

    Args:
        name: One of :data:`BACKENDS`.
        source: Where the model's files are (see :func:`crossrank.model_source.resolve_model_source`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` to pick the best available.
        **options: Loader options (``cache_folder``, ``revision``, ``token``, ``threads``...) and
            the backend's own (``precision`` for torch; ``quantize``, ``onnx_file`` for ONNX).

    Raises:
        InvalidArgumentError: ``name`` is not a known backend.
        ModelLoadError: The model could not be loaded.
    """
    if name == "torch":
        from crossrank.backends.torch_backend import TorchBackend

        return TorchBackend.load(source, device=device, **options)
    if name == "onnx":
        from crossrank.backends.onnx_backend import OnnxBackend

        return OnnxBackend.load(source, device=device, **options)
    raise InvalidArgumentError(f"Unsupported backend {name!r}; choose one of {', '.join(BACKENDS)}.")
