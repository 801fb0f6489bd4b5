"""The seam between crossrank's scoring path and the engine that runs the model.

A backend does one thing: given padded token ids (an :class:`~crossrank.encoding.EncodedBatch`),
return one float32 logit per row. Everything else (validation, tokenisation, batching,
normalisation, ranking, async) lives in :class:`crossrank.Reranker`, so a new engine (ONNX
Runtime, a GPU server, a Ray actor) only implements :class:`Backend`: pass an instance to
:meth:`crossrank.Reranker.from_backend`, or register a loader by name with
:func:`register_backend`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tokenizers import Tokenizer

from crossrank.encoding import EncodedBatch
from crossrank.errors import InvalidArgumentError
from crossrank.model_source import ModelSource

__all__ = ["Backend", "backend_names", "load_backend", "register_backend"]


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
        batch_invariant: True when a row's logit does not depend on its batch-mates beyond float
            rounding (fp32, fp16, ONNX int8-static). False for engines that quantise activations
            per batch (ONNX dynamic int8): crossrank then never puts pairs of different requests
            in one batch, so a request scores the same whatever it is batched with. Optional;
            defaults to True.
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


#: Registered engines by name: a loader ``(source, *, device, **options) -> Backend``, or the
#: ``"module:attribute"`` path of one (imported on first use, so torch isn't imported to run ONNX).
_LOADERS: dict[str, Callable[..., Backend] | str] = {
    "torch": "crossrank.backends.torch_backend:TorchBackend.load",
    "onnx": "crossrank.backends.onnx_backend:OnnxBackend.load",
}


def register_backend(name: str, loader: Callable[..., Backend] | str) -> None:
    """Make ``Reranker(model, backend=name)`` (and ``RerankerConfig(backend=name)``) load with ``loader``.

    Args:
        name: The backend's name, e.g. ``"openvino"``.
        loader: ``loader(source, *, device, **options) -> Backend``, where ``source`` is a
            :class:`~crossrank.model_source.ModelSource` and ``options`` are the loader options
            (``threads``, ``cache_folder``, ``revision``, ``token``, ``trust_remote_code``,
            ``model_kwargs``) and the backend-specific ones the config holds; or the
            ``"module:attribute"`` path of such a callable.

    A ready engine can also be passed as is: ``Reranker.from_backend(engine)``.

    Example:
        >>> from crossrank.backends import backend_names, register_backend
        >>> register_backend("torch-again", "crossrank.backends.torch_backend:TorchBackend.load")
        >>> "torch-again" in backend_names()
        True
    """
    if not name or not isinstance(name, str):
        raise InvalidArgumentError(f"a backend name must be a non-empty str, got {name!r}")
    _LOADERS[name] = loader


def backend_names() -> tuple[str, ...]:
    """Names accepted by ``Reranker(backend=...)``: the built-in ones and those registered."""
    return tuple(_LOADERS)


def load_backend(name: str, source: ModelSource, *, device: str | None, **options: Any) -> Backend:
    """Load the model behind ``source`` with the backend called ``name``.

    Args:
        name: One of :func:`backend_names`.
        source: Where the model's files are (see :func:`crossrank.model_source.resolve_model_source`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` to pick the best available.
        **options: Loader options (``cache_folder``, ``revision``, ``token``, ``threads``...) and
            the backend's own (``precision`` for torch; ``quantize``, ``onnx_file`` for ONNX).

    Raises:
        InvalidArgumentError: ``name`` is not a known backend.
        ModelLoadError: The model could not be loaded.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise InvalidArgumentError(f"Unsupported backend {name!r}; choose one of {', '.join(_LOADERS)}.")
    if isinstance(loader, str):
        module_name, _, attribute = loader.partition(":")
        loader = importlib.import_module(module_name)
        for part in attribute.split("."):
            loader = getattr(loader, part)
    return loader(source, device=device, **options)  # type: ignore[operator]
