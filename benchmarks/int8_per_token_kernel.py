"""What per-token int8 costs in ONNX Runtime, built from standard ops: one FFN matrix product three ways.

int8 keeps fp32's top 3 only with an activation scale (and zero point) per token, where ONNX
Runtime's dynamic int8 gives the whole batch one (``int8_error_budget.py``). ORT has no fused
kernel for per-token scales, and ``MatMulInteger`` refuses a zero point per row, so the graph here
builds it from standard ops:

* ``ReduceMin`` / ``ReduceMax`` per row -> scale and zero point per token;
* ``QuantizeLinear`` with a scale and zero point per row (``axis=0``) -> uint8;
* ``MatMulIntegerToFloat`` (com.microsoft) with no zero point, weights 7-bit per output channel
  (AVX2's u8 x s8 instruction saturates with 8-bit weights, as ORT's ``reduce_range`` avoids);
* the zero point taken back out as a rank-1 ``Gemm`` (it carries the bias), times the row scale.

Against fp32 ``MatMul`` + bias and ORT's dynamic int8 (``quantize_dynamic``, per-channel 7-bit
weights, one activation scale per tensor), on one batch of DL19's size (2,048 tokens) with a few
outlier channels and one outlier token, as BERT's activations have. Columns: median ms, the ratio
to fp32, and the error against fp32 (largest, and the median over rows of each row's largest).

    python benchmarks/int8_per_token_kernel.py --json benchmarks/results/int8-per-token-kernel.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from rich.console import Console
from rich.table import Table

from crossrank.cpus import cpu_summary

console = Console(width=None if sys.stdout.isatty() else 150)
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]


def fp32_product(weight: np.ndarray, bias: np.ndarray, tokens: int) -> onnx.ModelProto:
    """``x @ weight + bias``."""
    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        "fp32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, n])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=OPSETS)


def per_token_product(weight: np.ndarray, bias: np.ndarray, tokens: int) -> onnx.ModelProto:
    """``x @ weight + bias`` with x rounded to uint8 per row (asymmetric) and weights to 7 bits."""
    k, n = weight.shape
    weight_scale = (np.abs(weight).max(0) / 63).astype(np.float32)
    quantised = np.clip(np.round(weight / weight_scale), -63, 63).astype(np.int8)
    column_sums = (quantised.astype(np.float64).sum(0) * weight_scale).astype(np.float32)
    node = helper.make_node
    nodes = [
        node("ReduceMin", ["x", "axis"], ["low0"], keepdims=1),
        node("Min", ["low0", "zero"], ["low"]),
        node("ReduceMax", ["x", "axis"], ["high0"], keepdims=1),
        node("Max", ["high0", "zero"], ["high"]),
        node("Sub", ["high", "low"], ["span"]),
        node("Div", ["span", "levels"], ["scale0"]),
        node("Max", ["scale0", "tiny"], ["scale"]),
        node("Div", ["low", "scale"], ["shift"]),
        node("Neg", ["shift"], ["shift_up"]),
        node("Round", ["shift_up"], ["zero_point"]),
        node("Cast", ["zero_point"], ["zero_point_u8"], to=TensorProto.UINT8),
        node("Reshape", ["zero_point_u8", "flat"], ["row_zero_points"]),
        node("Reshape", ["scale", "flat"], ["row_scales"]),
        node("QuantizeLinear", ["x", "row_scales", "row_zero_points"], ["xq"], axis=0),
        node(
            "MatMulIntegerToFloat",
            ["xq", "wq", "one", "ws", "u8_zero", "s8_zero"],
            ["acc"],
            domain="com.microsoft",
        ),
        node("Mul", ["zero_point", "scale"], ["scaled_zero_point"]),
        node("Gemm", ["scaled_zero_point", "minus_column_sums", "b"], ["correction"]),
        node("Mul", ["acc", "scale"], ["scaled"]),
        node("Add", ["scaled", "correction"], ["y"]),
    ]
    constants = {
        "axis": np.array([1], np.int64),
        "zero": np.float32(0),
        "levels": np.float32(255),
        "tiny": np.float32(1e-8),
        "flat": np.array([-1], np.int64),
        "wq": quantised,
        "one": np.float32(1),
        "ws": weight_scale,
        "u8_zero": np.uint8(0),
        "s8_zero": np.int8(0),
        "minus_column_sums": -column_sums.reshape(1, n),
        "b": bias,
    }
    graph = helper.make_graph(
        nodes,
        "per_token",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, n])],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=OPSETS)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=2048, help="rows per batch (DL19 top 20: ~2,050)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for k, n, product in ((384, 1536, "FFN input 384 -> 1536"), (1536, 384, "FFN output 1536 -> 384")):
            weight = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
            bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
            x = (rng.standard_normal((args.tokens, k)) * np.where(rng.random(k) < 0.01, 20, 1)).astype(
                np.float32
            )
            x[5] *= 30  # one outlier token
            files = {
                name: Path(folder) / f"{name}.onnx" for name in ("fp32", "ORT dynamic int8", "per-token int8")
            }
            onnx.save(fp32_product(weight, bias, args.tokens), files["fp32"])
            quantize_dynamic(
                files["fp32"],
                files["ORT dynamic int8"],
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )
            onnx.save(per_token_product(weight, bias, args.tokens), files["per-token int8"])
            sessions = {name: session(path) for name, path in files.items()}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.repeats):  # interleaved, so drift hits all three alike
                for name, running in sessions.items():
                    started = time.perf_counter()
                    running.run(None, {"x": x})
                    times[name].append((time.perf_counter() - started) * 1000)
            reference = x @ weight + bias
            for name, running in sessions.items():
                error = np.abs(running.run(None, {"x": x})[0] - reference)
                figures[f"{product}: {name}"] = {
                    "median_ms": statistics.median(times[name]),
                    "fp32_ms": statistics.median(times["fp32"]),
                    "max_error": float(error.max()),
                    "median_row_error": float(np.median(error.max(1))),
                }
    table = Table(title=f"one matrix product, {args.tokens} tokens, {cpu_summary()}", title_justify="left")
    for column in ("product: engine", "median ms", "x fp32", "max |error|", "median row max |error|"):
        table.add_column(column, justify="left" if column.startswith("product") else "right")
    for name, f in figures.items():
        table.add_row(
            name,
            f"{f['median_ms']:.2f}",
            f"{f['fp32_ms'] / f['median_ms']:.2f}x",
            f"{f['max_error']:.3f}",
            f"{f['median_row_error']:.4f}",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"cpu": cpu_summary(), "figures": figures}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
