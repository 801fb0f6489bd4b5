"""ONNX Runtime backend: fp32 or int8, no torch at scoring time.

Which file runs (:mod:`crossrank.backends.onnx_files`): a ``crossrank export`` folder's own; else,
where torch is installed and the model has weights, crossrank's export, optimised and (with
``quantize="int8"`` or ``"int8-static"``) quantised on first use and cached under
``CROSSRANK_CACHE`` (:mod:`crossrank.backends.onnx_cache`), so later starts load it without
importing torch; else the model's ready ONNX file (``onnx/model.onnx``, or optimum's int8 file
for this CPU). ``onnx_file=`` names one to load as is (e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from crossrank.backends.onnx_cache import EXPORTED_TOKENIZER, RECIPES, cached_onnx, onnx_cache_dir
from crossrank.backends.onnx_files import (
    can_export,
    check_reranker_files,
    exported_family,
    exported_files,
    has_weights,
    hub_patterns,
    ready_file,
    tokenizer_settings,
)
from crossrank.config import Quantize
from crossrank.encoding import EncodedBatch
from crossrank.errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    ModelLoadError,
)
from crossrank.families import CROSS_ENCODER, FAMILIES, Family, detect_family
from crossrank.model_source import ModelSource

__all__ = [
    "RECIPES",
    "OnnxBackend",
    "OnnxModel",
    "find_onnx_model",
    "model_folder",
    "onnx_cache_dir",
    "open_onnx_file",
    "quantizes_per_batch",
]

logger = logging.getLogger(__name__)

#: ORT load-time fusions to skip: ``SkipLayerNormFusion`` would undo what
#: :func:`crossrank.backends.onnx_export.optimize_onnx` leaves unfused on purpose (its fused CPU
#: kernel is slower). Harmless on ready-made ONNX files: it removes no fusion already there.
DISABLED_ORT_FUSIONS = ["SkipLayerNormFusion"]


def model_folder(
    source: ModelSource,
    *,
    cache_folder: str | None,
    revision: str | None,
    token: Any,
    onnx_file: str | None,
    quantize: str | None,
    exporting: bool,
) -> Path:
    """A local folder with the model's config and tokenizer, and its weights or ONNX files.

    From the hub, only what will run is fetched: the named ``onnx_file``; else the weights when
    this install exports (and a ``crossrank export`` folder's files); else the repository's ready
    ONNX files for ``quantize`` (:func:`crossrank.backends.onnx_files.hub_patterns`).
    """
    if Path(source.location).is_dir():
        return Path(source.location)
    from huggingface_hub import snapshot_download

    def fetch(wanted: list[str]) -> Path:
        try:
            return Path(
                snapshot_download(
                    source.location,
                    revision=revision,
                    cache_dir=cache_folder,
                    token=token,
                    local_files_only=source.local_files_only,
                    allow_patterns=["*.json", "*.txt", "*.model", *wanted],
                )
            )
        except Exception as err:
            raise ModelLoadError(
                f"Cannot fetch the files of model {source.name!r}: {type(err).__name__}: {err}",
                model=source.name,
            ) from err

    if onnx_file:
        return fetch([onnx_file])
    folder = fetch(hub_patterns(quantize, exporting=exporting) + (["model.safetensors"] if exporting else []))
    exported = exported_files(folder)
    if exported:
        return fetch(list(exported.values()))
    if exporting and not has_weights(folder):  # an ONNX-only repository: its ready files, then
        folder = fetch(hub_patterns(quantize, exporting=False))
        exporting = False
    if not exporting and quantize is not None and ready_file(folder, quantize, exporting=False) is None:
        return fetch(hub_patterns(None, exporting=False))  # its fp32 file, to quantise here
    return folder


def _no_onnx_file(name: str, quantize: str | None) -> BackendUnavailableError:
    """No ready ONNX file for ``quantize``, and this install can't export one: the two ways out."""
    what = "fp32 ONNX file (onnx/model.onnx)" if quantize is None else f"ONNX file for quantize={quantize!r}"
    if quantize is not None:
        what += " nor an fp32 one to quantise"
    return BackendUnavailableError(
        f"Model {name!r} has no {what}, and crossrank can't export one here (that needs the model's "
        "torch weights, and torch, transformers and onnx: the torch extra). Either "
        "install the exporter: pip install 'crossrank[torch]'; or export the model once where torch "
        "is installed and load that folder here: crossrank export MODEL --output DIR."
    )


@dataclass(frozen=True)
class OnnxModel:
    """A model's ONNX file to run and what scoring it needs: what :func:`find_onnx_model` finds.

    Attributes:
        folder: A local folder with the model's config and tokenizer, and its weights or ONNX files.
        config: Its ``config.json``.
        family: The model's family (:mod:`crossrank.families`).
        tokenizer: The model's fast tokenizer (an LLM family's prompt template not yet applied).
        pad_token_id: Token id used for padding.
        max_positions: Longest input, in tokens, the model accepts.
        path: The ONNX file to run.
        per_batch_scales: Whether that file quantises activations per batch (dynamic int8): its
            rows then depend on their batch-mates.
        rebuild: Exports crossrank's cached file afresh, for an engine that refuses it; None for a
            file crossrank didn't make here (a ready file, ``onnx_file``), which is never touched.
    """

    folder: Path
    config: dict[str, Any]
    family: Family
    tokenizer: Tokenizer
    pad_token_id: int
    max_positions: int
    path: Path
    per_batch_scales: bool
    rebuild: Callable[[], Path] | None


def find_onnx_model(
    source: ModelSource,
    *,
    quantize: str | None,
    onnx_file: str | None,
    family: str | None,
    cache_folder: str | None,
    revision: str | None,
    token: Any,
    engine: str = "ONNX Runtime",
) -> OnnxModel:
    """The ONNX file to run for ``source`` and ``quantize``, found (or exported and cached) as the
    module docstring says: the one rule for every engine that runs crossrank's ONNX files.

    Args:
        source: Where the model is.
        quantize: None for fp32, ``"int8"`` or ``"int8-static"``.
        onnx_file: Path inside the model folder/repo of a ready ONNX file to use as is.
        family: The model's family; None detects it (an export folder's manifest says it).
        engine: The engine's name, for the log line saying which file it runs.

    Raises:
        ModelLoadError: The files can't be fetched, or ``onnx_file`` is not there.
        UnsupportedModelError: More than one output label, or no ``tokenizer.json``.
        BackendUnavailableError: No ready file, and this install can't export one.
        InvalidArgumentError: ``quantize="int8-static"`` for an LLM reranker.
    """
    exporting = can_export()
    model_dir = model_folder(
        source,
        cache_folder=cache_folder,
        revision=revision,
        token=token,
        onnx_file=onnx_file,
        quantize=quantize,
        exporting=exporting,
    )
    exporting = exporting and has_weights(model_dir)  # a folder of ONNX files alone runs them
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    chosen = detect_family(source.name, config, family or exported_family(model_dir))
    check_reranker_files(model_dir, config, source.name, one_label=chosen.prompt is None)
    if chosen.prompt is not None and quantize == "int8-static":
        raise InvalidArgumentError(
            f"quantize='int8-static' is not available for LLM rerankers ({chosen.name}): its "
            "calibration would need their prompt; use quantize='int8'"
        )
    tokenizer, pad_token_id, max_positions = tokenizer_settings(model_dir, config)
    found = functools.partial(OnnxModel, model_dir, config, chosen, tokenizer, pad_token_id, max_positions)

    if onnx_file is not None:
        path = model_dir / onnx_file
        if not path.is_file():
            raise ModelLoadError(f"Model {source.name!r} has no ONNX file {onnx_file!r}", model=source.name)
        # A file of the user's says itself whether it quantises activations per batch.
        return found(path, per_batch_scales=quantizes_per_batch(path), rebuild=None)
    ready = ready_file(model_dir, quantize, exporting=exporting)
    if ready is not None:
        logger.info("Scoring %r with %s on %s.", source.name, engine, ready.why)
        # A ready-made file also says itself whether it quantises activations per batch
        # (optimum's and ORT's dynamic int8 files do), even with no ``quantize`` given.
        return found(ready.path, per_batch_scales=ready.per_batch_scales, rebuild=None)
    # Without weights to export from, a shipped fp32 file is quantised here (ONNX Runtime's
    # quantiser: no torch): the same recipe as an export's, from its optimisation on.
    shipped = None
    if not exporting and quantize is not None:
        shipped = ready_file(model_dir, None, exporting=False)
    if not exporting and shipped is None:
        raise _no_onnx_file(source.name, quantize)
    # A local folder is named by its absolute path, so "../m" and "/abs/m" share one export.
    cache_name = str(model_dir.resolve()) if Path(source.location).is_dir() else source.name
    start = shipped.path if shipped is not None else None
    path = cached_onnx(model_dir, cache_name, config, quantize, source=start, family=chosen)
    if shipped is not None:
        logger.info(
            "Scoring %r with %s on %s, quantised here to %s.", source.name, engine, shipped.why, quantize
        )

    def rebuild() -> Path:
        return cached_onnx(model_dir, cache_name, config, quantize, source=start, family=chosen, rebuild=True)

    kept = path.with_name(EXPORTED_TOKENIZER)  # an export's: the tokenizer torch scores with
    if start is None and kept.is_file():
        tokenizer = Tokenizer.from_file(str(kept))
        found = functools.partial(
            OnnxModel, model_dir, config, chosen, tokenizer, pad_token_id, max_positions
        )
    return found(path, per_batch_scales=quantize == "int8", rebuild=rebuild)


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
        quantize: str | None = None,
        per_batch_scales: bool | None = None,
        family: Family | None = None,
        model_name: str = "",
    ) -> None:
        self._session = session
        self._inputs = [node.name for node in session.get_inputs()]
        self._lock = threading.Lock()
        #: What kind of reranker this is (:mod:`crossrank.families`), and its prompt if an LLM one.
        self.family = family or FAMILIES[CROSS_ENCODER]
        self.prompt = self.family.prompt
        self.tokenizer = self.family.pair_tokenizer(tokenizer, model_name)
        self.max_positions = max_positions
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = "token_type_ids" in self._inputs
        self.device = device
        self.path = path
        #: ONNX Runtime costs ~1-2 ms per run on CPU (10-20 tokens' worth for MiniLM-L6), so tight
        #: batches win; on CUDA, as for torch, few wide batches (not measured yet).
        self.batch_overhead_tokens = 4096 if device.startswith("cuda") else 32
        if per_batch_scales is None:
            per_batch_scales = quantize == "int8"
        # A file with per-batch scales gets int8's batches, whatever ``quantize`` named it.
        recipe = RECIPES["int8" if per_batch_scales else quantize]
        self.default_batch_size = recipe.batch_size or (128 if device.startswith("cuda") else 32)
        #: Dynamic int8 activations are quantised per batch: a row's logit moves with its batch-mates.
        self.batch_invariant = not per_batch_scales

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        quantize: str | None = None,
        onnx_file: str | None = None,
        precision: str = "auto",
        family: str | None = None,
        threads: int | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> OnnxBackend:
        """Find or build the ONNX file for ``source`` and open an ONNX Runtime session on it.

        Args:
            source: Where the model is.
            device: ``"cpu"`` (default) or ``"cuda"`` (needs ``onnxruntime-gpu``).
            quantize: None for fp32, ``"int8"`` for dynamic int8, ``"int8-static"`` for static int8.
            onnx_file: Path inside the model folder/repo of a ready ONNX file to use as is.
            precision: ``"auto"`` or ``"fp32"`` (:class:`~crossrank.backends.onnx_options.OnnxOptions`
                refuses others): the file's own precision runs.
            family: The model's family (:mod:`crossrank.families`); None detects it. An LLM
                reranker is exported as its causal LM with the yes-no row folded.
            threads: ONNX Runtime intra-op threads. Defaults to the CPUs this process may use
                (:func:`crossrank.cpus.usable_cpus`).

        Raises:
            BackendUnavailableError: onnxruntime (or, to export, onnx) is not installed.
            UnsupportedModelError: More than one output label, or no ``tokenizer.json``.
        """
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                "backend='onnx' needs onnxruntime: pip install onnxruntime"
            ) from err
        if quantize not in RECIPES:
            raise InvalidArgumentError(
                f"quantize must be None or one of {list(typing.get_args(Quantize))}, got {quantize!r}"
            )
        if model_kwargs:
            raise InvalidArgumentError("model_kwargs apply to backend='torch' only")
        model = find_onnx_model(
            source,
            quantize=quantize,
            onnx_file=onnx_file,
            family=family,
            cache_folder=cache_folder,
            revision=revision,
            token=token,
            engine="ONNX Runtime",
        )

        from crossrank.cpus import usable_cpus

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Default: the CPUs this process may really use (affinity, cgroup quota), not the machine's.
        options.intra_op_num_threads = threads if threads is not None else usable_cpus()
        # No spin-waiting: ORT's pool threads otherwise spin for work between (and after) the
        # parallel parts of a run, on cores another engine or process may need; with the cores
        # shared, int8 scoring then ran at half speed (docs/performance.md, "Sharing the cores").
        # CROSSRANK_ORT_SPIN=1 (private, for benchmarks/shared_cores.py) gives ORT's spinning back.
        spin = "1" if os.environ.get("CROSSRANK_ORT_SPIN", "0").strip() == "1" else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        use_cuda = (device or "cpu").startswith("cuda")
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        )
        session, path = open_onnx_file(
            lambda file: ort.InferenceSession(
                str(file), options, providers=providers, disabled_optimizers=DISABLED_ORT_FUSIONS
            ),
            model.path,
            model=source.name,
            rebuild=model.rebuild,
        )
        running = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        return cls(
            session,
            model.tokenizer,
            max_positions=model.max_positions,
            pad_token_id=model.pad_token_id,
            device=running,
            path=path,
            quantize=quantize,
            per_batch_scales=model.per_batch_scales,
            family=model.family,
            model_name=source.name,
        )

    @property
    def session(self) -> Any:
        """The ONNX Runtime ``InferenceSession`` (its options, providers, inputs)."""
        return self._session

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        feed = {name: value for name, value in batch.as_dict().items() if name in self._inputs}
        with self._lock:  # one run at a time: ORT already spreads one run over the cores
            (logits,) = self._session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32).reshape(-1)


#: Operators of ORT's dynamic quantisation: they compute an activation scale from the whole batch
#: tensor at run time, so a row's result depends on its batch-mates.
_PER_BATCH_OPS = frozenset(
    {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM"}
)


def quantizes_per_batch(path: Path) -> bool:
    """Whether the ONNX graph at ``path`` quantises activations with a scale computed per batch.

    Such a graph (``quantize_dynamic``'s, optimum's ``model_qint8_*.onnx``) scores a row
    differently with different batch-mates, so :meth:`crossrank.Reranker.score_batch` must not mix
    requests in its batches; a graph whose scales are fixed (fp32, or static int8) may.
    """
    try:
        import onnx
    except ImportError:  # onnx is only needed to export; without it, assume the cautious answer
        logger.info("onnx is not installed, so %s can't be inspected: its requests won't be mixed.", path)
        return True
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # protobuf's DecodeError...: the engine's own load then says what is wrong
        logger.info("%s can't be read as an ONNX graph (%s): its requests won't be mixed.", path, err)
        return True
    nodes = list(graph.node)
    for node in nodes:  # ops inside control-flow subgraphs too
        for attribute in node.attribute:
            nodes += [*attribute.g.node] + [n for g in attribute.graphs for n in g.node]
    return any(node.op_type in _PER_BATCH_OPS for node in nodes)


def open_onnx_file(
    open_file: Callable[[Path], Any],
    path: Path,
    *,
    model: str,
    rebuild: Callable[[], Path] | None,
    engine: str = "ONNX Runtime",
) -> tuple[Any, Path]:
    """``open_file(path)`` (an engine's session on the file), its load errors made :class:`ModelLoadError`.

    A cached export the engine refuses is deleted and exported once more (``rebuild``, from
    :attr:`OnnxModel.rebuild`); a file of the user's (``rebuild=None``) is never touched.
    ``engine`` names the engine in the messages.
    """
    try:
        return open_file(path), path
    except Exception as err:  # engines' errors (ORT's InvalidProtobuf, Fail...) derive from Exception only
        if rebuild is None:
            raise ModelLoadError(
                f"{engine} cannot load the ONNX file {path}: {type(err).__name__}: {err}", model=model
            ) from err
        logger.warning(
            "%s cannot load the cached ONNX file %s (%s: %s); deleting it and exporting again.",
            engine,
            path,
            type(err).__name__,
            err,
        )
    path = rebuild()
    try:
        return open_file(path), path
    except Exception as err:
        raise ModelLoadError(
            f"{engine} cannot load the ONNX file {path}, even exported afresh: {type(err).__name__}: {err}",
            model=model,
        ) from err
