"""Could int8 requests share forward passes? Static int8 (fixed activation scales) against crossrank's
dynamic int8, in one run.

crossrank's int8 file is ``quantize_dynamic``'s: each batch's activations get one scale computed
from the whole batch tensor, so a row's score moves with its batch-mates, and
``Reranker.score_batch`` never mixes requests in a batch (the server turns its batcher off for it).
Static quantisation fixes every activation scale at build time from calibration data, so a row's
integer arithmetic can't see the other rows: requests could be mixed and length-sorted together,
as fp32's are. This builds static int8 files of the fixture and measures whether mixing them beats
dynamic int8 without mixing:

* calibration: the first ``--calibration-queries`` TREC DL 2020 queries with their BM25 top 20
  (no DL19 query), padded to 256 tokens, MinMax ranges;
* ``quantize_static``: QDQ, per-channel 7-bit int8 weights (as crossrank's dynamic file), uint8
  activations, MatMuls only, MatMul outputs left in float (so ONNX Runtime runs
  ``MatMulIntegerToFloat``, the kernel dynamic int8 runs, minus the per-batch range pass);
* two graphs: ORT's fused ``Attention`` (its Q/K/V projection can't be statically quantised, so it
  stays fp32) and unfused attention (every projection and the two attention products in int8);
* evaluation: DL19's 43 queries x BM25 top 20, nDCG@10 of each request scored alone; seconds to
  score them one request at a time ("alone") and all 43 in one ``score_batch`` ("mixed", where
  the engine allows mixing); the largest difference between a request's mixed and alone scores.
  Variants take turns, ``--repeats`` times; medians are printed.

    python benchmarks/int8_static_mixing.py               # ~8 min on 2 cores (builds ~3 min)
    python benchmarks/int8_static_mixing.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 160)


def _optimize(raw: Path, target: Path, config: dict, *, fuse_attention: bool) -> None:
    """crossrank's int8 fusions (tanh GELU, no SkipLayerNormalization), attention fused or not."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_gelu_approximation = True
    options.enable_attention = fuse_attention
    model = optimize_model(
        str(raw),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        optimization_options=options,
    )
    model.save_model_to_file(str(target))


def _static_int8(source: Path, target: Path, model_dir: Path, pairs: list[tuple[str, str]]) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from transformers import AutoTokenizer

    inferred = source.with_name(source.stem + "_shapes.onnx")  # the quantizer needs every tensor's type
    quant_pre_process(str(source), str(inferred), skip_optimization=True, auto_merge=True)
    names = [node.name for node in onnx.load(str(inferred)).graph.input]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    class Pairs(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(pairs), 20))

        def get_next(self) -> dict | None:
            start = next(self.batches, None)
            if start is None:
                return None
            chunk = pairs[start : start + 20]
            encoded = tokenizer(
                [q for q, _ in chunk],
                [d for _, d in chunk],
                truncation="only_second",
                max_length=256,
                padding="max_length",
                return_tensors="np",
            )
            return {name: encoded[name].astype(np.int64) for name in names}

    quantize_static(
        str(inferred),
        str(target),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "crossrank-fixture-minilm-l6")
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data")
    parser.add_argument("--calibration-queries", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--static-batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import ir_measures
    from ir_measures import nDCG

    from crossrank import Reranker
    from crossrank.backends.onnx_export import export_onnx

    dl19 = args.data_dir / "trec-dl-2019-passage"
    records = [json.loads(line) for line in (dl19 / "bm25_top100.jsonl").read_text().splitlines()]
    requests = [(r["query"], [h["text"] for h in r["hits"][:20]]) for r in records]
    qrels = list(ir_measures.read_trec_qrels(str(dl19 / "qrels.txt")))
    dl20 = (args.data_dir / "trec-dl-2020-passage" / "bm25_top100.jsonl").read_text().splitlines()
    calibration = [
        (r["query"], h["text"])
        for r in map(json.loads, dl20[: args.calibration_queries])
        for h in r["hits"][:20]
    ]

    work = Path(tempfile.mkdtemp(prefix="int8-static-"))
    os.environ["CROSSRANK_CACHE"] = str(work / "cache")  # this run's exports go with its folder
    try:
        folder = work / "model"
        shutil.copytree(args.model, folder)
        (folder / "onnx").mkdir()
        config = json.loads((folder / "config.json").read_text())
        raw = work / "raw.onnx"
        with console.status("exporting, fusing and calibrating the static int8 files"):
            started = time.perf_counter()
            export_onnx(folder, raw)
            for fused in (True, False):
                graph = work / f"fused-{fused}.onnx"
                _optimize(raw, graph, config, fuse_attention=fused)
                _static_int8(graph, folder / "onnx" / f"static-fused-{fused}.onnx", folder, calibration)
            build_s = time.perf_counter() - started
        variants = {
            "fp32": Reranker(folder, backend="onnx"),
            "dynamic int8 (crossrank)": Reranker(folder, backend="onnx", quantize="int8"),
            "static int8, fused attention": Reranker(
                folder,
                backend="onnx",
                onnx_file="onnx/static-fused-True.onnx",
                batch_size=args.static_batch_size,
            ),
            "static int8, unfused attention": Reranker(
                folder,
                backend="onnx",
                onnx_file="onnx/static-fused-False.onnx",
                batch_size=args.static_batch_size,
            ),
        }
        times: dict[str, dict[str, list[float]]] = {name: {"alone": [], "mixed": []} for name in variants}
        alone_scores: dict[str, list[list[float]]] = {}
        deviation: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, reranker in variants.items():
                started = time.perf_counter()
                alone = [reranker.score(q, docs, normalize=False) for q, docs in requests]
                times[name]["alone"].append(time.perf_counter() - started)
                started = time.perf_counter()
                mixed = reranker.score_batch(requests, normalize=False)
                times[name]["mixed"].append(time.perf_counter() - started)
                alone_scores[name] = alone
                deviation[name] = max(
                    abs(a - b)
                    for xs, ys in zip(alone, mixed, strict=True)
                    for a, b in zip(xs, ys, strict=True)
                )
        results = []
        reference = statistics.median(times["dynamic int8 (crossrank)"]["alone"])
        for name, reranker in variants.items():
            run = [
                ir_measures.ScoredDoc(r["qid"], h["docid"], score)
                for r, scores in zip(records, alone_scores[name], strict=True)
                for h, score in zip(r["hits"][:20], scores, strict=True)
            ]
            alone_s, mixed_s = (statistics.median(times[name][k]) for k in ("alone", "mixed"))
            results.append(
                {
                    "variant": name,
                    "mixes_requests": bool(reranker.engine.batch_invariant),
                    "batch_size": reranker.batch_size,
                    "ndcg@10": ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10],
                    "alone_s": alone_s,
                    "mixed_s": mixed_s,
                    "mixed_speedup": alone_s / mixed_s,
                    "mixed_vs_dynamic_alone": reference / mixed_s,
                    "max_abs_mixed_minus_alone": deviation[name],
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(
        title=f"DL19 43 queries x BM25 top 20 (860 pairs); medians of {args.repeats}; static files built in "
        f"{build_s:.0f} s",
        title_justify="left",
    )
    for column in (
        "variant",
        "mixes",
        "batch",
        "nDCG@10",
        "alone s",
        "mixed s",
        "mixed/alone",
        "vs dynamic alone",
        "max |mixed-alone|",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in results:
        table.add_row(
            row["variant"],
            "yes" if row["mixes_requests"] else "no",
            str(row["batch_size"]),
            f"{row['ndcg@10']:.4f}",
            f"{row['alone_s']:.2f}",
            f"{row['mixed_s']:.2f}",
            f"{row['mixed_speedup']:.2f}x",
            f"{row['mixed_vs_dynamic_alone']:.2f}x",
            f"{row['max_abs_mixed_minus_alone']:.1e}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "build_s": build_s, "results": results},
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
