"""PyTorch backend: the model is a sentence-transformers ``CrossEncoder``.

Loading goes through ``CrossEncoder`` so every model it supports (and its saved settings) works
the same here; scoring calls the CrossEncoder module on crossrank's own token ids, so scores
equal ``CrossEncoder.predict`` with the identity activation (raw logits).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from crossrank.encoding import EncodedBatch
from crossrank.errors import ModelLoadError, UnsupportedModelError
from crossrank.model_source import ModelSource

__all__ = ["TorchBackend"]

logger = logging.getLogger(__name__)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchBackend:
    """Runs a sentence-transformers ``CrossEncoder`` with torch.

    Use :meth:`load`; the constructor takes an already loaded ``CrossEncoder``.
    """

    name = "torch"

    def __init__(self, cross_encoder: Any, *, model_name: str) -> None:
        num_labels = cross_encoder.num_labels
        if num_labels != 1:
            labels = getattr(cross_encoder.config, "id2label", None)
            raise UnsupportedModelError(
                f"Model {model_name!r} has {num_labels} output labels ({labels}); crossrank reranks with "
                "models that give one relevance logit per pair, such as the MS MARCO cross-encoders "
                "(cross-encoder/ms-marco-MiniLM-L6-v2). NLI or multi-class classifiers can't rank.",
                model=model_name,
            )
        hf_tokenizer = cross_encoder.tokenizer
        backend_tokenizer = getattr(hf_tokenizer, "backend_tokenizer", None)
        if not isinstance(backend_tokenizer, Tokenizer):
            raise UnsupportedModelError(
                f"Model {model_name!r} has no fast (Rust `tokenizers`) tokenizer, which crossrank needs "
                "to tokenise pairs the same way on every backend. Save one with "
                "`AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir)`.",
                model=model_name,
            )
        self._model = cross_encoder.eval()
        self._lock = threading.Lock()
        self.device = str(cross_encoder.device)
        self.tokenizer = backend_tokenizer
        self.max_positions = int(cross_encoder.max_seq_length or cross_encoder.config.max_position_embeddings)
        self.pad_token_id = int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0)
        self.uses_token_type_ids = "token_type_ids" in hf_tokenizer.model_input_names

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> TorchBackend:
        """Load ``source`` as a ``CrossEncoder`` on ``device`` (default: CUDA if present, else CPU).

        Raises:
            ModelLoadError: ``CrossEncoder`` failed to load the files.
            UnsupportedModelError: The model has more than one label or no fast tokenizer.
        """
        from sentence_transformers import CrossEncoder

        try:
            cross_encoder = CrossEncoder(
                source.location,
                device=device or _default_device(),
                cache_folder=cache_folder,
                revision=revision,
                token=token,
                local_files_only=source.local_files_only,
                trust_remote_code=trust_remote_code,
                model_kwargs=model_kwargs,
                # crossrank applies its own activation (sigmoid on request); keep raw logits here.
                activation_fn=torch.nn.Identity(),
            )
        except Exception as err:
            raise ModelLoadError(
                f"Cannot load model {source.name!r} with sentence-transformers: {type(err).__name__}: {err}",
                model=source.name,
            ) from err
        return cls(cross_encoder, model_name=source.name)

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        features = {key: torch.from_numpy(value) for key, value in batch.as_dict().items()}
        # One forward at a time: the model is shared, and parallel forwards on a CPU only fight
        # over the same cores (torch already uses them all inside one call).
        with self._lock, torch.inference_mode():
            features = {key: value.to(self._model.device) for key, value in features.items()}
            scores = self._model(features)["scores"]
        return scores.float().reshape(-1).cpu().numpy()
