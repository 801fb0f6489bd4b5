"""Ready ONNX files: which one to run when crossrank can't (or needn't) export one itself.

Two kinds of folder carry them, and both load with ONNX Runtime alone, no torch:

* a folder made by ``crossrank export`` (:func:`crossrank.export.export_model`): its manifest
  (:data:`EXPORT_MANIFEST`) names the file of each ``quantize`` value, built with crossrank's own
  recipes (first-token last layer, fused, int8 per channel);
* a hub repository laid out as sentence-transformers' cross-encoders are (``onnx/model.onnx`` and
  optimum's dynamic int8 files ``onnx/model_qint8_avx512_vnni.onnx``, ``_qint8_avx512``,
  ``_quint8_avx2``, ``_qint8_arm64``). fp32 runs ``onnx/model.onnx``; ``quantize="int8"`` runs the
  file made for this CPU (:func:`pick_int8_file`).

The rule, in one sentence: an exported folder's own files always win; otherwise crossrank exports
its own file where torch is installed and the model has weights, and runs the model's ready ONNX
file where not.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from crossrank.cpus import cpu_features

__all__ = [
    "EXPORTED_FILES",
    "EXPORT_MANIFEST",
    "FP32_FILES",
    "INT8_FILES",
    "WEIGHT_FILES",
    "ReadyFile",
    "can_export",
    "check_reranker_files",
    "exported_family",
    "exported_files",
    "has_ready_files",
    "has_weights",
    "hub_patterns",
    "num_labels",
    "pick_int8_file",
    "ready_file",
    "tokenizer_settings",
    "transformers_tokenizer",
]

#: The manifest ``crossrank export`` writes at the top of its folder.
EXPORT_MANIFEST = "crossrank-export.json"
#: The files ``crossrank export`` writes, by ``quantize`` value (``"fp32"`` for None); the fp32 one
#: where hub repositories keep theirs, so any ONNX tool finds it.
EXPORTED_FILES: dict[str, str] = {
    "fp32": "onnx/model.onnx",
    "int8": "onnx/model_qint8_crossrank.onnx",
    "int8-static": "onnx/model_qint8_static_crossrank.onnx",
}
#: The torch weight files crossrank exports from.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Where hub repositories keep their fp32 ONNX file, in the order looked for.
FP32_FILES = ("onnx/model.onnx", "model.onnx")
#: optimum's CPU-specific dynamic int8 files, best first, each with the CPU flags it needs.
INT8_FILES: tuple[tuple[str, frozenset[str]], ...] = (
    ("onnx/model_qint8_avx512_vnni.onnx", frozenset({"avx512f", "avx512_vnni"})),
    ("onnx/model_qint8_avx512.onnx", frozenset({"avx512f"})),
    ("onnx/model_quint8_avx2.onnx", frozenset({"avx2"})),
    ("onnx/model_qint8_arm64.onnx", frozenset({"arm64"})),
)


@dataclass(frozen=True)
class ReadyFile:
    """A ready ONNX file and what is known of it.

    Attributes:
        path: The file.
        per_batch_scales: Whether it quantises activations per batch (dynamic int8): its rows then
            depend on their batch-mates, and requests must not share batches.
        why: How it was chosen, for the log line that says so.
    """

    path: Path
    per_batch_scales: bool
    why: str


def has_weights(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds torch weights (what an export starts from)."""
    return any((model_dir / name).is_file() for name in WEIGHT_FILES)


def has_ready_files(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds ONNX files crossrank runs as they are (:func:`ready_file`'s).

    Example:
        >>> has_ready_files(Path("/nonexistent"))
        False
    """
    names = [*FP32_FILES, *(name for name, _ in INT8_FILES)]
    return bool(exported_files(model_dir)) or any((model_dir / name).is_file() for name in names)


def num_labels(config: dict[str, object]) -> int:
    """The model's output labels, as ``config.json`` declares them (``id2label``, else ``num_labels``).

    Example:
        >>> num_labels({"id2label": {"0": "LABEL_0"}}), num_labels({"num_labels": 3}), num_labels({})
        (1, 3, 2)
    """
    if "id2label" in config:
        return len(config["id2label"])  # type: ignore[arg-type]
    return int(config.get("num_labels", 2))  # type: ignore[call-overload]


def check_reranker_files(
    model_dir: Path, config: dict[str, object], name: str, *, one_label: bool = True
) -> None:
    """Refuse a model crossrank can't rerank with on ONNX: more than one output label (where
    ``one_label``: a cross-encoder; an LLM reranker's score is its yes-no logits), or no
    ``tokenizer.json`` (a fast tokenizer).

    Raises:
        UnsupportedModelError: The message names the model and the way out.
    """
    from crossrank.errors import UnsupportedModelError

    if one_label and num_labels(config) != 1:
        raise UnsupportedModelError(
            f"Model {name!r} has {num_labels(config)} output labels; crossrank reranks with "
            "models that give one relevance logit per pair.",
            model=name,
        )
    if not (model_dir / "tokenizer.json").is_file():
        raise UnsupportedModelError(
            f"Model {name!r} has no tokenizer.json (a fast tokenizer), which backend='onnx' needs; "
            "save one with AutoTokenizer.from_pretrained(...).save_pretrained(dir) or use backend='torch'.",
            model=name,
        )


def can_export() -> bool:
    """Whether this install can export a model to ONNX itself (torch, transformers and onnx present).

    Example:
        >>> isinstance(can_export(), bool)
        True
    """
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "onnx"))
    except (ImportError, ValueError):
        return False


def pick_int8_file(available: Iterable[str], features: Iterable[str]) -> str | None:
    """The best of optimum's int8 files among ``available`` that this CPU (``features``) runs, or None.

    Example:
        >>> files = ["onnx/model.onnx", "onnx/model_qint8_avx512.onnx", "onnx/model_quint8_avx2.onnx"]
        >>> pick_int8_file(files, {"avx2", "avx512f", "avx512_vnni"})
        'onnx/model_qint8_avx512.onnx'
        >>> pick_int8_file(files, {"avx2"})
        'onnx/model_quint8_avx2.onnx'
        >>> pick_int8_file(files, {"sse4_2"}) is None
        True
    """
    present, have = set(available), set(features)
    return next((name for name, needs in INT8_FILES if name in present and needs <= have), None)


def exported_files(model_dir: Path) -> dict[str, str]:
    """The files of a ``crossrank export`` folder by ``quantize`` value (``"fp32"`` for None); {} for others.

    Example:
        >>> exported_files(Path("/nonexistent"))
        {}
    """
    manifest = model_dir / EXPORT_MANIFEST
    if not manifest.is_file():
        return {}
    return dict(json.loads(manifest.read_text(encoding="utf-8"))["files"])


def exported_family(model_dir: Path) -> str | None:
    """The family a ``crossrank export`` folder's manifest records (an LLM reranker's, whose
    folder name no longer says it); None for other folders and for older manifests.

    Example:
        >>> exported_family(Path("/nonexistent")) is None
        True
    """
    manifest = model_dir / EXPORT_MANIFEST
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("family")


def ready_file(model_dir: Path, quantize: str | None, *, exporting: bool) -> ReadyFile | None:
    """The ready ONNX file to run for ``quantize``, or None when crossrank should export its own.

    Args:
        model_dir: The model's folder (a local folder or a hub snapshot).
        quantize: None (fp32), ``"int8"`` or ``"int8-static"``.
        exporting: Whether crossrank will export (:func:`can_export` and the folder
            :func:`has_weights`): then only an exported folder's own files are used, as they are
            the same recipe.

    Example:
        >>> ready_file(Path("/nonexistent"), None, exporting=True) is None
        True
    """
    files = exported_files(model_dir)
    if files:
        name = files.get(quantize or "fp32")
        if name is not None and (model_dir / name).is_file():
            why = f"{name}, from the `crossrank export` folder"
            return ReadyFile(model_dir / name, per_batch_scales=quantize == "int8", why=why)
    if exporting:
        return None
    if quantize is None:
        for name in FP32_FILES:
            if (model_dir / name).is_file():
                return ReadyFile(
                    model_dir / name, per_batch_scales=False, why=f"{name} (fp32), shipped with the model"
                )
    if quantize == "int8":
        present = [name for name, _ in INT8_FILES if (model_dir / name).is_file()]
        features = cpu_features()
        name = pick_int8_file(present, features)
        if name is not None:
            shown = ", ".join(sorted(features & {"avx2", "avx512f", "avx512_vnni", "arm64"})) or "none"
            why = f"{name} (dynamic int8 for this CPU: {shown}), shipped with the model"
            return ReadyFile(model_dir / name, per_batch_scales=True, why=why)
    return None


def hub_patterns(quantize: str | None, *, exporting: bool) -> list[str]:
    """The ONNX files worth downloading from a hub repository for ``quantize``.

    Example:
        >>> hub_patterns(None, exporting=False)
        ['crossrank-export.json', 'onnx/model.onnx', 'model.onnx']
    """
    wanted = [EXPORT_MANIFEST]
    if not exporting and quantize is None:
        wanted += list(FP32_FILES)
    elif not exporting and quantize == "int8":
        features = cpu_features()
        wanted += [name for name, needs in INT8_FILES if needs <= features]
    return wanted


def tokenizer_settings(
    model_dir: Path, config: dict[str, Any], *, tokenizer: Tokenizer | None = None
) -> tuple[Tokenizer, int, int]:
    """The model's fast tokenizer (``tokenizer.json``, or ``tokenizer`` where given), its pad token
    id and the longest input the model accepts: what the ONNX backend runs with, and static int8
    calibrates with.

    Where crossrank exports the weights itself, it keeps the tokenizer transformers builds
    (:func:`transformers_tokenizer`) beside the export and runs that one, as the torch backend and
    sentence-transformers do: transformers 5 rebuilds some tokenizers (XLM-RoBERTa's, DeBERTa-v2's)
    from its own classes, and a ``tokenizer.json`` that says otherwise would tokenise runs of spaces
    or line breaks differently. ``crossrank export`` writes it as the folder's ``tokenizer.json``.
    """
    if tokenizer is None:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))  # there: check_reranker_files
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


def transformers_tokenizer(model_dir: Path) -> Tokenizer | None:
    """The fast tokenizer transformers builds for ``model_dir`` (None if it builds no fast one)."""
    from transformers import AutoTokenizer

    built = getattr(AutoTokenizer.from_pretrained(model_dir), "backend_tokenizer", None)
    return built if isinstance(built, Tokenizer) else None
