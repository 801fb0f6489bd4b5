"""Turn a Hugging Face cross-encoder into ONNX files for :mod:`crossrank.backends.onnx_backend`.

Runs once per model (the results are cached on disk), and is the only part of the ONNX path that
imports torch and transformers (step 1 alone; steps 2-3 need onnxruntime and onnx, and also turn
a ready fp32 file, such as a hub repository's ``onnx/model.onnx``, into int8 without torch):

1. export with torch's TorchScript-based exporter, eager attention (its graph is the pattern
   ONNX Runtime's transformer optimizer knows how to fuse), dynamic batch and sequence axes, and
   the last layer computed for the first token only where the model allows it
   (:mod:`crossrank.backends.first_token`: the same logits, ~14% less work for MiniLM-L6);
2. optimise with ``onnxruntime.transformers.optimizer`` (fused Attention, EmbedLayerNormalization,
   BiasGelu), but leave residual + LayerNormalization unfused (see :func:`optimize_onnx`);
3. optionally quantise to int8: dynamically (``quantize_dynamic``: the MatMuls and Attention,
   activation scales computed per batch at run time) or statically (``quantize_static``: the
   MatMuls, activation scales fixed from a calibration set, so rows don't affect each other).

``optimum-onnx`` would do the same but pins ``transformers<5``, which sentence-transformers 6 can't
use; torch's exporter plus ORT's own tools need neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossrank.config import Quantize
from crossrank.errors import ModelLoadError
from crossrank.families import Family

__all__ = [
    "build_onnx",
    "export_onnx",
    "has_external_data",
    "optimize_onnx",
    "quantize_onnx_int8",
    "quantize_onnx_int8_static",
]

logger = logging.getLogger(__name__)

#: ONNX opset of the exported graph (supported by every onnxruntime >= 1.14).
OPSET = 17


def _private_folder(target: Path, what: str) -> Path:
    """A new folder next to ``target`` for this process and thread alone (the caller removes it)."""
    folder = target.with_name(f".{target.stem}_{what}_{os.getpid()}_{threading.get_ident()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    source: Path | None = None,
    family: Family | None = None,
) -> None:
    """The whole recipe, from the model in ``model_dir`` to the ONNX file ``target``.

    An LLM reranker (``family`` with a prompt) is exported with its yes-no head folded
    (:class:`crossrank.backends.yes_no.YesNoScore`) and not fused (the fusions are BERT's); its
    int8 file quantises the MatMuls of that graph dynamically.

    Export (or, with ``source``, start from that ready fp32 file, left as is), then fuse; with
    ``quantize="int8"`` or ``"int8-static"`` fuse with the approximate GELU and quantise (the fp32
    file keeps the exact GELU). The intermediate files sit in a folder next to ``target`` private to
    this process and thread, removed whatever happens. A model over 2 GB (bge-reranker-v2-m3 is
    2.3 GB in fp32) keeps an fp32 file's weights in ``<target>.data`` beside it.
    """
    if quantize is not None and quantize not in typing.get_args(Quantize):
        raise ValueError(f"no ONNX recipe for quantize={quantize!r}")
    if family is not None and family.prompt is not None:
        _build_llm_onnx(model_dir, target, quantize=quantize, source=source, family=family)
        return
    # Intermediate files in a private folder: a model over 2 GB comes out of torch as one file per
    # tensor, and its fused file keeps its weights in a ".data" file beside it.
    work = _private_folder(target, "work")
    try:
        raw = source if source is not None else work / "raw.onnx"
        if source is None:
            export_onnx(model_dir, raw, first_token_only=first_token_only)
        if quantize is not None:
            fast = work / "fastgelu.onnx"
            # Static int8 reaches attention's projections only when it is left unfused.
            optimize_onnx(raw, fast, config, approximate_gelu=True, fuse_attention=quantize == "int8")
            if quantize == "int8":
                quantize_onnx_int8(fast, target)
            else:
                quantize_onnx_int8_static(fast, target, model_dir, config, as_transformers=source is None)
        else:
            optimize_onnx(raw, target, config)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_llm_onnx(
    model_dir: Path, target: Path, *, quantize: str | None, source: Path | None, family: Family
) -> None:
    """An LLM reranker's file: exported whole (not fused), then int8 (dynamic) if asked for.

    An LLM over 2 GB (Qwen3-Reranker-0.6B is 2.4 GB in fp32) is exported by torch with its weights
    in external files, one per tensor; the export goes to a private folder, and an fp32 ``target``
    keeps its weights in one file next to it, ``<target>.data`` (ONNX Runtime finds it there).
    """
    import onnx

    if quantize == "int8-static":
        raise ValueError(f"no int8-static recipe for LLM rerankers ({family.name})")
    work = _private_folder(target, "work")
    try:
        raw = source if source is not None else work / "model.onnx"
        if source is None:
            export_onnx(model_dir, raw, family=family)
        if quantize == "int8":
            quantize_onnx_int8(raw, target)
            return
        if source is not None:  # a shipped fp32 file: run as it is
            shutil.copyfile(raw, target)
            return
        if not any(path.name != raw.name for path in work.iterdir()):  # under 2 GB: one file
            os.replace(raw, target)
            return
        # torch wrote the weights apart, one file per tensor: gather them into <target>.data.
        data = target.with_name(target.name + ".data")
        partial = _atomic_target(target)
        onnx.save_model(
            onnx.load(str(raw)),
            str(partial),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
        os.replace(partial, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export_onnx(
    model_dir: Path, target: Path, *, first_token_only: bool = True, family: Family | None = None
) -> None:
    """Export the sequence-classification model in ``model_dir`` to ``target`` (fp32 logits).

    The graph takes the inputs the model's tokenizer produces (``token_type_ids`` only where the
    model uses them). ``first_token_only=False`` keeps the full last layer, as other exporters
    (optimum) do: the benchmark gives FlashRank such a file. An LLM reranker (``family`` with a
    prompt) is exported as its causal LM's body and the folded yes-no row: one logit per row,
    read at each row's last real token (rows padded on the right).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crossrank.backends.first_token import use_first_token_last_layer

    try:  # the weights may be damaged or unreadable: a load error, as on the torch backend
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if family is not None and family.prompt is not None:
            model = _yes_no_model(model_dir, tokenizer, family)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, attn_implementation="eager"
            ).eval()
    except Exception as err:
        raise ModelLoadError(
            f"Cannot load the model in {model_dir} to export it to ONNX: {type(err).__name__}: {err}",
            model=str(model_dir),
        ) from err
    if (family is None or family.prompt is None) and first_token_only:
        swapped = use_first_token_last_layer(model)
        logger.info("ONNX export, last layer for the first token only: %s", swapped)
    takes_types = "token_type_ids" in tokenizer.model_input_names
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


def _yes_no_model(model_dir: Path, tokenizer: Any, family: Family) -> Any:
    """The LLM reranker in ``model_dir`` as a traceable ``(input_ids, attention_mask) -> (rows, 1)``."""
    import torch
    from transformers import AutoModelForCausalLM

    from crossrank.backends.yes_no import YesNoScore

    assert family.prompt is not None
    true_id, false_id = family.prompt.token_ids(tokenizer.backend_tokenizer, str(model_dir))
    causal_lm = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    scorer = YesNoScore(causal_lm, true_id, false_id).eval()

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scorer = scorer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.scorer.score(input_ids, attention_mask)

    return Traced().eval()


def optimize_onnx(
    source: Path,
    target: Path,
    config: dict[str, Any],
    *,
    approximate_gelu: bool = False,
    fuse_attention: bool = True,
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

    ``fuse_attention=False`` leaves attention as plain MatMul/Softmax ops, which static
    quantisation can reach (see :func:`quantize_onnx_int8_static`).
    """
    import onnxruntime as ort
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_gelu_approximation = approximate_gelu
    options.enable_attention = fuse_attention
    # ORT's basic graph pass first, as optimize_model's default opt_level=1 runs it, but here:
    # optimize_model imports torch for it (to tell ROCm from CUDA), and this runs without torch.
    basic = target.with_name(f"{target.stem}_basic_{os.getpid()}_{threading.get_ident()}.onnx")
    large = has_external_data(source)
    try:
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session_options.optimized_model_filepath = str(basic)
        if large:  # over 2 GB: the weights can't be in the file
            session_options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", basic.name + ".data"
            )
            session_options.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
        ort.InferenceSession(
            str(source),
            session_options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=["ConstantSharing"],  # optimize_model's choice
        )
        optimized = optimize_model(
            str(basic),
            model_type="bert",  # the BERT fusions also fit RoBERTa, ELECTRA, DistilBERT-style encoders
            num_heads=int(config.get("num_attention_heads", 0)),
            hidden_size=int(config.get("hidden_size", 0)),
            optimization_options=options,
            opt_level=0,  # the fusions alone: the basic pass ran above
        )
    finally:
        basic.unlink(missing_ok=True)
        basic.with_name(basic.name + ".data").unlink(missing_ok=True)
    logger.info("ONNX fusions: %s", optimized.get_fused_operator_statistics())
    if not large:
        partial = _atomic_target(target)
        optimized.save_model_to_file(str(partial))
        os.replace(partial, target)
        return
    # Saved under its final name in a private folder (the ".data" file is named after it), then
    # the weights and the graph are moved beside ``target``, the graph last.
    staging = _private_folder(target, "save")
    try:
        optimized.save_model_to_file(str(staging / target.name), use_external_data_format=True)
        os.replace(staging / (target.name + ".data"), target.with_name(target.name + ".data"))
        os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def has_external_data(path: Path) -> bool:
    """Whether the ONNX file ``path`` keeps (some of) its weights in other files: models over 2 GB.

    Example:
        >>> import tempfile, onnx
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), f"{folder}/m.onnx")
        ...     has_external_data(Path(folder) / "m.onnx")
        False
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in graph.initializer)


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


def calibration_pairs() -> list[tuple[str, str]]:
    """The (query, passage) pairs static int8 is calibrated on: each of the package's 80 demo
    passages under its own title (a relevant pair) and under another passage's title (an irrelevant
    one), so both ends of the score range set the activation ranges."""
    from importlib import resources

    text = (resources.files("crossrank") / "data" / "demo_corpus.jsonl").read_text(encoding="utf-8")
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [
        (doc["title"], other["text"])
        for i, doc in enumerate(docs)
        for other in (doc, docs[(7 * i + 3) % len(docs)])
    ]


def quantize_onnx_int8_static(
    source: Path, target: Path, model_dir: Path, config: dict[str, Any], *, as_transformers: bool = False
) -> None:
    """Static int8: activation scales fixed from :func:`calibration_pairs` (MinMax ranges).

    The MatMuls get int8 weights (per channel, 7-bit, as :func:`quantize_onnx_int8`) and uint8
    inputs with fixed scales; their outputs stay float, so ONNX Runtime runs them as
    ``MatMulIntegerToFloat``, the kernel of dynamic int8 without its per-batch range pass.
    :func:`build_onnx` gives it a graph with attention unfused: ORT can't quantise its fused
    Attention op statically, whose Q/K/V projection would stay fp32. Since no scale depends on
    the batch, a row's logit is the same whatever its batch-mates (bit for bit on DL19 in every
    mix tried on this CPU; the float ops between the MatMuls are per row). On DL19's BM25 top 20
    with the trained MiniLM-L6 fixture: nDCG@10 0.5571 (dynamic int8 0.5612, fp32 0.5591); the 43
    requests mixed in one ``score_batch`` ran at 0.88x and 1.06x of dynamic int8's speed in two
    runs (``benchmarks/int8_static_mixing.py``). The calibration pairs are short (54-89 words):
    check long chunks on your data with ``crossrank eval``.
    """
    import numpy as np
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from crossrank.backends.onnx_files import tokenizer_settings, transformers_tokenizer

    # The run time's tokenizer (transformers' where the weights were exported here, else
    # tokenizer.json), cutting the passage only and padding each chunk of 16 pairs to its longest.
    built = transformers_tokenizer(model_dir) if as_transformers else None
    tokenizer, pad_token_id, positions = tokenizer_settings(model_dir, config, tokenizer=built)
    tokenizer.enable_truncation(max_length=min(512, positions), strategy="only_second")
    tokenizer.enable_padding(pad_id=pad_token_id)
    pairs = calibration_pairs()
    shaped = target.with_name(f"{target.stem}_shapes_{os.getpid()}_{threading.get_ident()}.onnx")
    try:
        # The quantizer needs every tensor's type; ONNX's own inference can't type ORT's fused ops.
        quant_pre_process(str(source), str(shaped), skip_optimization=True, auto_merge=True)
        names = [node.name for node in onnx.load(str(shaped), load_external_data=False).graph.input]

        class Pairs(CalibrationDataReader):
            def __init__(self) -> None:
                self.starts = iter(range(0, len(pairs), 16))

            def get_next(self) -> dict[str, Any] | None:
                start = next(self.starts, None)
                if start is None:
                    return None
                encoded = tokenizer.encode_batch(pairs[start : start + 16])
                inputs = {
                    "input_ids": [e.ids for e in encoded],
                    "attention_mask": [e.attention_mask for e in encoded],
                    "token_type_ids": [e.type_ids for e in encoded],
                }
                return {name: np.asarray(inputs[name], dtype=np.int64) for name in names}

        partial = _atomic_target(target)
        with _without_root_warning(_PREPROCESS_ADVICE), _removed_on_error(partial):
            quantize_static(
                str(shaped),
                str(partial),
                Pairs(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                    "OpTypesToExcludeOutputQuantization": ["MatMul"],
                },
            )
        os.replace(partial, target)
    finally:
        shaped.unlink(missing_ok=True)


@contextlib.contextmanager
def _removed_on_error(path: Path) -> Iterator[None]:
    """Delete ``path`` if the block raises (a half-written file must not stay behind)."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


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
