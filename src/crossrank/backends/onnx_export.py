"""Turn a Hugging Face cross-encoder into ONNX files for :mod:`crossrank.backends.onnx_backend`.

Runs once per model (the results are cached on disk), and is the only part of the ONNX path that
imports torch and transformers:

1. export with torch's TorchScript-based exporter, eager attention (its graph is the pattern
   ONNX Runtime's transformer optimizer knows how to fuse), dynamic batch and sequence axes, and
   the last layer computed for the first token only where the model allows it
   (:mod:`crossrank.backends.first_token`: the same logits, ~14% less work for MiniLM-L6);
2. optimise with ``onnxruntime.transformers.optimizer`` (fused Attention, EmbedLayerNormalization,
   BiasGelu), but leave residual + LayerNormalization unfused (see :func:`optimize_onnx`);
3. optionally quantise the weights of the MatMuls and Attention to int8 (``quantize_dynamic``).

``optimum-onnx`` would do the same but pins ``transformers<5``, which sentence-transformers 6 can't
use; torch's exporter plus ORT's own tools need neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["build_onnx", "export_onnx", "optimize_onnx", "quantize_onnx_int8"]

logger = logging.getLogger(__name__)

#: ONNX opset of the exported graph (supported by every onnxruntime >= 1.14).
OPSET = 17


def _atomic_target(path: Path) -> Path:
    """A temporary file next to ``path``; the caller moves it into place when complete, so a
    crash or a concurrent export never leaves a half-written file under the final name."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    os.chmod(name, 0o644)  # mkstemp makes it private; the cache is meant to be shared like HF's
    return Path(name)


def build_onnx(
    model_dir: Path,
    target: Path,
    config: dict[str, Any],
    *,
    quantize: str | None = None,
    first_token_only: bool = True,
) -> None:
    """The whole recipe, from the model in ``model_dir`` to the ONNX file ``target``.

    Export, then fuse; with ``quantize="int8"`` fuse with the approximate GELU and quantise (the
    fp32 file keeps the exact GELU). The intermediate files sit next to ``target`` under names
    private to this process and thread, and are removed whatever happens.
    """
    raw = target.with_name(f"{target.stem}_raw_{os.getpid()}_{threading.get_ident()}.onnx")
    try:
        export_onnx(model_dir, raw, first_token_only=first_token_only)
        if quantize == "int8":
            fast = raw.with_name(raw.stem + "_fastgelu.onnx")
            try:
                optimize_onnx(raw, fast, config, approximate_gelu=True)
                quantize_onnx_int8(fast, target)
            finally:
                fast.unlink(missing_ok=True)
        else:
            optimize_onnx(raw, target, config)
    finally:
        raw.unlink(missing_ok=True)


def export_onnx(model_dir: Path, target: Path, *, first_token_only: bool = True) -> None:
    """Export the sequence-classification model in ``model_dir`` to ``target`` (fp32 logits).

    The graph takes the inputs the model's tokenizer produces (``token_type_ids`` only where the
    model uses them). ``first_token_only=False`` keeps the full last layer, as other exporters
    (optimum) do: the benchmark gives FlashRank such a file.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crossrank.backends.first_token import use_first_token_last_layer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    if first_token_only:
        swapped = use_first_token_last_layer(model)
        logger.info("ONNX export, last layer for the first token only: %s", swapped)
    takes_types = "token_type_ids" in AutoTokenizer.from_pretrained(model_dir).model_input_names
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_types else [])
    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    partial = _atomic_target(target)
    with warnings.catch_warnings(), torch.inference_mode():
        # Tracing warns about shape-dependent Python branches of the causal-mask helpers, which an
        # encoder never takes; the result is checked against torch in the tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(partial),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(partial, target)


def optimize_onnx(
    source: Path, target: Path, config: dict[str, Any], *, approximate_gelu: bool = False
) -> None:
    """Apply ONNX Runtime's transformer fusions to ``source``, writing ``target``.

    Every fusion but one: the residual ``Add`` + ``LayerNormalization`` pairs stay apart. ORT's
    fused CPU kernel for them (SkipLayerNormalization) took 27 ms of a 200 ms int8 forward pass
    (20 x 100 tokens, MiniLM-L6, 2-core AMD EPYC, onnxruntime 1.32), the plain ``Add`` and
    ``LayerNormalization`` kernels 6 ms: 8-10% of the whole pass on fp32 and int8 alike. The
    session keeps ORT from fusing them back at load time (``onnx_backend.DISABLED_ORT_FUSIONS``).

    ``approximate_gelu`` swaps the exact (erf) GELU for its tanh approximation (FastGelu): 3%
    faster on the same machine, used for the int8 file only, whose error dwarfs it (nDCG@10 on
    DL19's BM25 top 20: 0.5639 with it, 0.5588 without); the fp32 file stays exact.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_gelu_approximation = approximate_gelu
    optimized = optimize_model(
        str(source),
        model_type="bert",  # the BERT fusions also fit RoBERTa, ELECTRA, DistilBERT-style encoders
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
        optimization_options=options,
    )
    logger.info("ONNX fusions: %s", optimized.get_fused_operator_statistics())
    partial = _atomic_target(target)
    optimized.save_model_to_file(str(partial))
    os.replace(partial, target)


def quantize_onnx_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights (activations are quantised on the fly).

    Per-channel scales with 7-bit weights (``reduce_range``): on CPUs without AVX-512 VNNI,
    ONNX Runtime's u8 x s8 kernel adds pairs of products in 16 bits, which full 8-bit weights can
    overflow. On DL19's BM25 top 20 with the trained MiniLM-L6 fixture, 8-bit per-channel lost
    0.005 nDCG@10 against fp32 (0.5541 vs 0.5591); 7-bit per-channel kept it (0.5603) at the
    same speed. Per-tensor and uint8 weights were slower.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = _atomic_target(target)
    with _without_root_warning(_PREPROCESS_ADVICE):
        quantize_dynamic(
            str(source),
            str(partial),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            # The fused ops come from ORT's own domain, which ONNX shape inference can't type.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    os.replace(partial, target)


#: ORT's quantizer logs this on the root logger for every model; its pre-processing (shape
#: inference + ORT optimisation) is what optimize_onnx already did, so users need not see it.
_PREPROCESS_ADVICE = "Please consider to run pre-processing before quantization"


@contextlib.contextmanager
def _without_root_warning(prefix: str) -> Iterator[None]:
    """Drop root-logger records starting with ``prefix`` for the duration of the block."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
