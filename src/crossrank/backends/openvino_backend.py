"""OpenVINO backend: the fp32 ONNX file ``backend="onnx"`` runs, compiled by OpenVINO for the CPU.

Which file (:func:`crossrank.backends.onnx_backend.find_onnx_model`, the one rule): a ``crossrank
export`` folder's own; else, where torch is installed and the model has weights, crossrank's
export, cached under ``CROSSRANK_CACHE`` and shared with ``backend="onnx"``; else the model's ready
``onnx/model.onnx``; or ``onnx_file=``. No torch at scoring time: ``pip install 'crossrank[openvino]'``.

What crossrank asks of OpenVINO (:func:`compile_config`), and why:

* ``PERFORMANCE_HINT="LATENCY"``: one stream, one request's batch spread over the threads; the
  batch planner and the server's batcher already make the batches.
* ``INFERENCE_NUM_THREADS``: ``threads``, default the CPUs this process may use
  (:func:`crossrank.cpus.usable_cpus`: affinity and cgroup quota), as ONNX Runtime gets.
* ``ENABLE_CPU_PINNING=False``: OpenVINO pins its threads to cores by default on Linux; two
  processes pinned alike (Ray actors, server workers) then share the same cores and each runs at
  half speed, while the others idle. The scheduler places unpinned threads.
* ``INFERENCE_PRECISION_HINT``: ``"f32"`` for ``precision="fp32"``, ``"bf16"`` for ``"bf16"``; none
  for ``"auto"``, OpenVINO's own default (bf16 on CPUs with AMX or AVX512-BF16, f16 on ARM, f32
  elsewhere). The precision that runs is read back from the compiled model (:attr:`precision`).
* ``CACHE_DIR``: compiled models are kept, so a restart skips reading and compiling the file. The
  CPU plugin keys a blob by the file's path and the CPU's name, checks the file's size and
  modification time, and applies precision and threads when it loads the blob.

OpenVINO has no property for busy-waiting (ONNX Runtime's ``allow_spinning``, which crossrank turns
off): its CPU thread pool (oneTBB in the x86 Linux wheels) has no such switch.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from tokenizers import Tokenizer

from crossrank.backends.onnx_backend import find_onnx_model, open_onnx_file
from crossrank.backends.onnx_cache import RECIPES, cache_root
from crossrank.backends.openvino_options import Precision
from crossrank.cpus import cpu_summary, usable_cpus
from crossrank.encoding import EncodedBatch
from crossrank.errors import InvalidArgumentError, ModelLoadError
from crossrank.families import CROSS_ENCODER, FAMILIES, Family
from crossrank.model_source import ModelSource

__all__ = ["OpenVinoBackend", "compile_config", "openvino_cache_dir"]

logger = logging.getLogger(__name__)

#: ``precision`` as OpenVINO's ``INFERENCE_PRECISION_HINT`` spells it ("auto": no hint).
_HINTS = {"fp32": "f32", "bf16": "bf16"}
#: OpenVINO's element types as crossrank names precisions.
_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def openvino_cache_dir() -> Path:
    """Where compiled models are kept by default: ``$CROSSRANK_CACHE/openvino`` (default
    ``~/.cache/crossrank/openvino``)."""
    return cache_root() / "openvino"


def compile_config(precision: str, threads: int, cache_dir: Path | None) -> dict[str, Any]:
    """The properties crossrank compiles a model with (the module docstring says why each).

    Example:
        >>> config = compile_config("fp32", 2, None)
        >>> config["PERFORMANCE_HINT"], config["INFERENCE_PRECISION_HINT"], config["ENABLE_CPU_PINNING"]
        ('LATENCY', 'f32', False)
        >>> "INFERENCE_PRECISION_HINT" in compile_config("auto", 2, None)  # OpenVINO's own default
        False
    """
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": False,
    }
    if precision in _HINTS:
        config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


class OpenVinoBackend:
    """Runs a cross-encoder or an LLM reranker's ONNX file with OpenVINO on the CPU. Use :meth:`load`."""

    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        compiled: Any,
        tokenizer: Tokenizer,
        *,
        max_positions: int,
        pad_token_id: int,
        path: Path,
        per_batch_scales: bool = False,
        family: Family | None = None,
        model_name: str = "",
    ) -> None:
        self._compiled = compiled
        self._inputs = {name for port in compiled.inputs for name in port.get_names()}
        self._output = compiled.output("logits")
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        #: What kind of reranker this is (:mod:`crossrank.families`), and its prompt if an LLM one.
        self.family = family or FAMILIES[CROSS_ENCODER]
        self.prompt = self.family.prompt
        self.tokenizer = self.family.pair_tokenizer(tokenizer, model_name)
        self.max_positions = max_positions
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = "token_type_ids" in self._inputs
        self.path = path
        #: The precision OpenVINO runs (``"fp32"``, ``"bf16"``, ``"fp16"``), read from the compiled model.
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = _NAMES.get(hint.get_type_name(), hint.get_type_name())
        #: The threads of one inference, as compiled.
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        #: Not measured apart from ONNX Runtime's (~1-2 ms a run on this CPU, 10-20 tokens' worth
        #: for MiniLM-L6): tight batches, as there.
        self.batch_overhead_tokens = 32
        # A file with per-batch scales gets dynamic int8's batches, as on ONNX Runtime.
        self.default_batch_size = RECIPES["int8" if per_batch_scales else None].batch_size or 32
        # fp32: a row scored alone and in padded batches of mixed lengths differs by float rounding
        # only: < 1e-7 on the tiny BERT and tiny Qwen3 reranker (tests/unit/test_openvino_backend.py),
        # < 6e-6 on the MiniLM-L6 fixture (5 DL19 queries, top 20, batches of 4 and 20; AVX2 CPU).
        # bf16 (and ARM's f16) not measured: no CPU here computes them natively, so it is declared
        # batch-variant, and the server never puts two requests' pairs in one batch.
        # A file that quantises activations per batch (a dynamic int8 onnx_file) depends on its
        # batch-mates whatever the precision.
        self.batch_invariant = self.precision == "fp32" and not per_batch_scales

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        precision: str = "auto",
        cache_dir: str | None = None,
        family: str | None = None,
        onnx_file: str | None = None,
        threads: int | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> OpenVinoBackend:
        """Find or export the fp32 ONNX file for ``source`` as ``backend="onnx"`` does, and compile it.

        Args:
            source: Where the model is.
            device: ``"cpu"`` or None: OpenVINO runs on the CPU here.
            precision: ``"auto"`` (OpenVINO's default for this CPU), ``"fp32"`` or ``"bf16"``
                (fp32 where the CPU has no native bf16; :attr:`precision` says what runs).
            cache_dir: OpenVINO's cache of compiled models; None: :func:`openvino_cache_dir`.
            family: The model's family (:mod:`crossrank.families`); None detects it.
            onnx_file: Path inside the model folder/repo of a ready ONNX file to compile as is.
            threads: Threads of one inference. Defaults to the CPUs this process may use
                (:func:`crossrank.cpus.usable_cpus`).

        Raises:
            InvalidArgumentError: A device other than the CPU, a precision OpenVINO doesn't take
                here, or ``model_kwargs``.
            ModelLoadError: OpenVINO can't compile the file.
            BackendUnavailableError: No ONNX file, and this install can't export one.
        """
        if device not in (None, "cpu"):
            raise InvalidArgumentError(
                f"backend='openvino' runs on the CPU (device='cpu'), not device={device!r}; on a GPU use "
                "backend='torch' or 'onnx'"
            )
        if precision not in typing.get_args(Precision):
            takes = ", ".join(typing.get_args(Precision))
            raise InvalidArgumentError(f"backend='openvino' takes precision {takes}; got {precision!r}")
        if model_kwargs:
            raise InvalidArgumentError("model_kwargs apply to backend='torch' only")
        model = find_onnx_model(
            source,
            quantize=None,
            onnx_file=onnx_file,
            family=family,
            cache_folder=cache_folder,
            revision=revision,
            token=token,
            engine="OpenVINO",
        )
        threads = threads if threads is not None else usable_cpus()
        config = compile_config(precision, threads, _writable(Path(cache_dir) if cache_dir else None))
        core = ov.Core()
        compiled, path = open_onnx_file(
            lambda file: _keeping_signal_stack(lambda: core.compile_model(str(file), "CPU", config)),
            model.path,
            model=source.name,
            rebuild=model.rebuild,
            engine="OpenVINO",
        )
        try:
            engine = cls(
                compiled,
                model.tokenizer,
                max_positions=model.max_positions,
                pad_token_id=model.pad_token_id,
                path=path,
                per_batch_scales=model.per_batch_scales,
                family=model.family,
                model_name=source.name,
            )
        except RuntimeError as err:  # OpenVINO's "no output named logits"
            raise ModelLoadError(
                f"OpenVINO cannot run the ONNX file {path} as a reranker: {err}", model=source.name
            ) from err
        if precision == "bf16" and engine.precision != "bf16":
            logger.warning(
                "precision='bf16' asked, but this CPU has no native bf16 (AMX or AVX512-BF16): "
                "OpenVINO runs %r in %s (%s).",
                source.name,
                engine.precision,
                cpu_summary(),
            )
        logger.info(
            "OpenVINO %s runs %r (%s, %s) in %s, %d threads, on %s.",
            ov.get_version(),
            source.name,
            path.name,
            "from its cache" if compiled.get_property("LOADED_FROM_CACHE") else "compiled",
            engine.precision,
            engine.threads,
            cpu_summary(),
        )
        return engine

    @property
    def compiled_model(self) -> Any:
        """The OpenVINO ``CompiledModel`` (its properties: ``INFERENCE_NUM_THREADS``...)."""
        return self._compiled

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        feed = {name: value for name, value in batch.as_dict().items() if name in self._inputs}
        with self._lock:  # one request at a time: one inference already spreads over the threads
            # Outputs copied out of the request (share_outputs=False), as its memory is reused.
            result = self._request.infer(feed, share_outputs=False)
            logits = np.asarray(result[self._output], dtype=np.float32)
        return logits.reshape(-1)


class _SignalStack(ctypes.Structure):
    """POSIX ``stack_t``: an alternate signal stack (``sigaltstack``)."""

    _fields_ = (("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t))


def _keeping_signal_stack(compile_model: Callable[[], Any]) -> Any:
    """``compile_model()``, with the calling thread's alternate signal stack as it was before.

    OpenVINO's CPU plugin (2026.4, Linux) leaves the calling thread an alternate signal stack of
    ~10 KB that it later frees (seen after loading a compiled model from CACHE_DIR). Python's
    handlers run on that stack (SA_ONSTACK), so the next Ctrl-C or SIGTERM killed the process with
    a segmentation fault instead of raising KeyboardInterrupt: ``crossrank serve --backend
    openvino`` couldn't be stopped cleanly. Putting the previous stack back (none, or
    faulthandler's) avoids it; elsewhere than Linux this only calls ``compile_model``.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaltstack = libc.sigaltstack
    except (OSError, AttributeError):  # no libc to ask
        return compile_model()
    before = _SignalStack()
    if sigaltstack(None, ctypes.byref(before)) != 0:
        return compile_model()
    try:
        return compile_model()
    finally:
        sigaltstack(ctypes.byref(before), None)


def _writable(folder: Path | None) -> Path | None:
    """``folder`` (default :func:`openvino_cache_dir`), made; None, with a warning, if it can't be:
    compiled models then aren't cached, and every start compiles."""
    folder = folder if folder is not None else openvino_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as err:
        logger.warning(
            "OpenVINO's cache of compiled models %s can't be made (%s: %s): every start compiles. Set "
            "CROSSRANK_CACHE, or backend_options={'cache_dir': ...}, to a writable folder.",
            folder,
            type(err).__name__,
            err,
        )
        return None
    return folder
