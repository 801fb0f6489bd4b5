"""ONNX Runtime backend: fp32 or int8, no torch at scoring time.

On first use the model is exported to ONNX, optimised and (with ``quantize="int8"``) quantised;
the files are cached under ``CROSSRANK_CACHE`` (default ``~/.cache/crossrank``) in a folder
keyed by the model's config and weight files (see :func:`_fingerprint`), so later starts load
the ONNX file directly, without importing torch. A repo that ships ONNX files can be used as is
with ``onnx_file=`` (e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from crossrank.encoding import EncodedBatch
from crossrank.errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    ModelLoadError,
    UnsupportedModelError,
)
from crossrank.model_source import ModelSource

__all__ = ["OnnxBackend", "onnx_cache_dir"]

logger = logging.getLogger(__name__)

#: Bump when the export recipe changes, so old cached files are not reused.
EXPORT_VERSION = "4"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: ORT load-time fusions to skip: ``SkipLayerNormFusion`` would undo what
#: :func:`crossrank.backends.onnx_export.optimize_onnx` leaves unfused on purpose (its fused CPU
#: kernel is slower). Harmless on ready-made ONNX files: it removes no fusion already there.
DISABLED_ORT_FUSIONS = ["SkipLayerNormFusion"]


def onnx_cache_dir() -> Path:
    """Where exported ONNX files live: ``$CROSSRANK_CACHE/onnx`` (default ``~/.cache/crossrank/onnx``)."""
    root = os.environ.get("CROSSRANK_CACHE") or Path.home() / ".cache" / "crossrank"
    return Path(root) / "onnx"


def _model_dir(
    source: ModelSource, *, cache_folder: str | None, revision: str | None, token: Any, onnx_file: str | None
) -> Path:
    """A local folder with the model's config, tokenizer and weights (or the requested ONNX file)."""
    if Path(source.location).is_dir():
        return Path(source.location)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model"] + ([onnx_file] if onnx_file else ["model.safetensors"])
    try:
        return Path(
            snapshot_download(
                source.location,
                revision=revision,
                cache_dir=cache_folder,
                token=token,
                local_files_only=source.local_files_only,
                allow_patterns=patterns,
            )
        )
    except Exception as err:
        raise ModelLoadError(
            f"Cannot fetch the files of model {source.name!r}: {type(err).__name__}: {err}", model=source.name
        ) from err


def _fingerprint(model_dir: Path) -> str:
    """The cache key: the export recipe, the config's bytes, and where and how big the weights are.

    Weights are identified by their resolved path, size and modification time, not by hashing
    them (hashing cost ~0.1 s per start for a 90 MB model, a tenth of a cached cold start). In
    the Hugging Face cache the resolved path is a blob named by the file's content hash, so a new
    revision gets a new key; in a plain folder, re-saving the weights changes their mtime. A copy
    of the same weights elsewhere is exported once more, which costs time, never correctness.
    """
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for name in _WEIGHT_FILES:
        path = model_dir / name
        if path.is_file():
            real = path.resolve()
            stat = real.stat()
            digest.update(f"{name}\0{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _num_labels(config: dict[str, Any]) -> int:
    if "id2label" in config:
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


class OnnxBackend:
    """Runs an exported cross-encoder with ONNX Runtime. Use :meth:`load`."""

    name = "onnx"

    def __init__(
        self,
        session: Any,
        tokenizer: Tokenizer,
        *,
        max_positions: int,
        pad_token_id: int,
        device: str,
        path: Path,
        quantized: bool = False,
    ) -> None:
        self._session = session
        self._inputs = [node.name for node in session.get_inputs()]
        self._lock = threading.Lock()
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = "token_type_ids" in self._inputs
        self.device = device
        self.path = path
        #: ONNX Runtime costs ~1-2 ms per run on CPU (10-20 tokens' worth for MiniLM-L6), so tight
        #: batches win; on CUDA, as for torch, few wide batches (not measured yet).
        self.batch_overhead_tokens = 4096 if device.startswith("cuda") else 32
        # int8 activations are quantised with one scale per batch tensor, so the batch's largest
        # activation sets every row's resolution. On DL19's BM25 top 100 (MiniLM-L6 fixture),
        # nDCG@10 was 0.5365 with batches of 32, 0.5459 with 8, 0.5460 with 4 and 0.5491 with 1
        # (fp32: 0.5495), at the same docs/s down to 4 (111 vs 106): so int8 batches hold 4 pairs.
        self.default_batch_size = 4 if quantized else (128 if device.startswith("cuda") else 32)

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        quantize: str | None = None,
        onnx_file: str | None = None,
        threads: int | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> OnnxBackend:
        """Find or build the ONNX file for ``source`` and open an ONNX Runtime session on it.

        Args:
            source: Where the model is.
            device: ``"cpu"`` (default) or ``"cuda"`` (needs ``onnxruntime-gpu``).
            quantize: None for fp32, ``"int8"`` for dynamic int8 weights.
            onnx_file: Path inside the model folder/repo of a ready ONNX file to use as is.
            threads: ONNX Runtime intra-op threads. Defaults to ORT's choice (the physical cores).

        Raises:
            BackendUnavailableError: onnxruntime (or, to export, onnx) is not installed.
            UnsupportedModelError: More than one output label, or no ``tokenizer.json``.
        """
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                "backend='onnx' needs onnxruntime: pip install 'crossrank[onnx]'"
            ) from err
        if quantize not in (None, "int8"):
            raise InvalidArgumentError(f"quantize must be None or 'int8', got {quantize!r}")
        if trust_remote_code or model_kwargs:
            raise InvalidArgumentError("trust_remote_code and model_kwargs apply to backend='torch' only")

        model_dir = _model_dir(
            source, cache_folder=cache_folder, revision=revision, token=token, onnx_file=onnx_file
        )
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if _num_labels(config) != 1:
            raise UnsupportedModelError(
                f"Model {source.name!r} has {_num_labels(config)} output labels; crossrank reranks with "
                "models that give one relevance logit per pair.",
                model=source.name,
            )
        tokenizer, pad_token_id, max_positions = _tokenizer_settings(model_dir, config, source.name)

        if onnx_file is not None:
            path = model_dir / onnx_file
            if not path.is_file():
                raise ModelLoadError(
                    f"Model {source.name!r} has no ONNX file {onnx_file!r}", model=source.name
                )
        else:
            # A local folder is named by its absolute path, so "../m" and "/abs/m" share one export.
            cache_name = str(model_dir.resolve()) if Path(source.location).is_dir() else source.name
            path = _cached_onnx(model_dir, cache_name, config, quantize)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        use_cuda = (device or "cpu").startswith("cuda")
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        )
        session = ort.InferenceSession(
            str(path), options, providers=providers, disabled_optimizers=DISABLED_ORT_FUSIONS
        )
        running = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        return cls(
            session,
            tokenizer,
            max_positions=max_positions,
            pad_token_id=pad_token_id,
            device=running,
            path=path,
            quantized=quantize == "int8",
        )

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        feed = {name: value for name, value in batch.as_dict().items() if name in self._inputs}
        with self._lock:  # one run at a time: ORT already spreads one run over the cores
            (logits,) = self._session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32).reshape(-1)


def _tokenizer_settings(model_dir: Path, config: dict[str, Any], name: str) -> tuple[Tokenizer, int, int]:
    """The fast tokenizer, the pad token id and the longest input the model accepts."""
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UnsupportedModelError(
            f"Model {name!r} has no tokenizer.json (a fast tokenizer), which backend='onnx' needs; "
            "save one with AutoTokenizer.from_pretrained(...).save_pretrained(dir) or use backend='torch'.",
            model=name,
        )
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    settings_file = model_dir / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    pad = settings.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = tokenizer.token_to_id(pad) if pad else None
    if pad_id is None:
        pad_id = int(config.get("pad_token_id") or 0)
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
        positions -= 2  # RoBERTa-style position ids start after the padding index
    declared = settings.get("model_max_length")
    if isinstance(declared, int) and 0 < declared < positions:
        positions = declared
    return tokenizer, int(pad_id), positions


def _cached_onnx(model_dir: Path, name: str, config: dict[str, Any], quantize: str | None) -> Path:
    """The optimised (and maybe quantised) ONNX file for ``model_dir``, exported on first use."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip("./")).strip("-")[-60:] or "model"
    folder = onnx_cache_dir() / f"{safe}-{_fingerprint(model_dir)}"
    fp32, int8 = folder / "model_optimized.onnx", folder / "model_optimized_qint8.onnx"
    wanted = int8 if quantize == "int8" else fp32
    if wanted.is_file():
        return wanted
    try:
        import onnx  # noqa: F401  (the optimizer and quantizer need it)
    except ImportError as err:
        raise BackendUnavailableError(
            "exporting to ONNX needs the onnx package: pip install 'crossrank[onnx]'"
        ) from err
    from crossrank.backends.onnx_export import build_onnx

    folder.mkdir(parents=True, exist_ok=True)
    logger.warning("Exporting %r to ONNX (once; cached in %s).", name, folder)
    build_onnx(model_dir, wanted, config, quantize=quantize)
    return wanted
