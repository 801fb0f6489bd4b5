"""How close each engine gets to the CPU's limit, and where the rest of the time goes.

For each engine, on the 43 DL19 queries' BM25 top 20 (the fixture MiniLM-L6):

* **MACs**: multiply-accumulates the model needs, counted from its config and the padded batches
  the engine really ran (recorded at the backend seam): per layer and token, ``4H²`` for the
  attention projections, ``2·H·I`` for the feed-forward, ``2·T·H`` for the attention scores and
  their weighted sum; the last layer runs its queries, output and feed-forward for the first token
  only (``crossrank.backends.first_token``), its keys and values for every token;
* **achieved GMAC/s** = those MACs / the time inside the engine, against the CPU's **peak** for
  the instruction set that engine's matrix products use (cores x clock x MACs per cycle per core,
  below; the clock is ``/proc/cpuinfo``'s, so turbo makes the true peak higher);
* **where the time goes**: the engine (model) vs tokenisation (``PairEncoder.encode``) vs the rest
  (Python: validation, batch planning, padding, ranking); inside ONNX Runtime, its own per-op
  profile grouped into matrix products, attention, layer norms, GELU, quantisation, the rest.

MACs per cycle per core, for the widest instruction each engine's kernels use (vendor figures):
fp32 FMA: 16 (AVX2, two 256-bit FMA units), 32 (AVX-512, two 512-bit units); int8: 64 on AVX2
(``vpmaddubsw``, two per cycle, 32 byte products each; it needs a ``vpmaddwd`` after it, so 32 to
43 in practice), 128 with AVX512-VNNI (``vpdpbusd``), 1024 with AMX-INT8; bf16: 64 with AVX512-BF16
(``vdpbf16ps``), 512 with AMX-BF16. A CPU without bf16 runs bf16 engines in fp32 (OpenVINO) or
emulates it (torch): their peak is fp32's.

    python benchmarks/limit.py                                  # onnx, int8, int8-static, torch
    python benchmarks/limit.py --engines onnx,int8,openvino --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossrank import Reranker
from crossrank.backends.onnx_backend import DISABLED_ORT_FUSIONS, OnnxBackend
from crossrank.cpus import cpu_features, cpu_summary, native_bf16, usable_cpus

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 160)

#: Reranker options per engine.
ENGINES = {
    "onnx": {"backend": "onnx"},
    "int8": {"backend": "onnx", "quantize": "int8"},
    "int8-static": {"backend": "onnx", "quantize": "int8-static"},
    "openvino": {"backend": "openvino", "precision": "fp32"},
    "openvino-bf16": {"backend": "openvino", "precision": "bf16"},
    "torch": {"backend": "torch", "precision": "fp32"},
    "torch-bf16": {"backend": "torch", "precision": "bf16"},
}
#: ONNX Runtime op types, by what they do.
OP_GROUPS = {
    "matmul": ("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul",
               "MatMulIntegerToFloat", "QLinearMatMul", "QGemm"),
    "attention": ("Attention", "QAttention", "MultiHeadAttention", "Softmax"),
    "layer norm": ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                   "QEmbedLayerNormalization", "SimplifiedLayerNormalization"),
    "gelu": ("Gelu", "FastGelu", "BiasGelu", "Erf"),
    "quantize": ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"),
}  # fmt: skip


def kind_of(engine: str) -> str:
    """Which instruction set an engine's matrix products use: int8, bf16 or fp32."""
    if "int8" in engine:
        return "int8"
    return "bf16" if engine.endswith("bf16") and native_bf16() else "fp32"


def macs_per_cycle(kind: str, flags: frozenset[str]) -> tuple[int, str]:
    """Peak MACs per cycle per core for ``kind`` on a CPU with ``flags``, and the instruction named."""
    if kind == "int8":
        if "amx_int8" in flags:
            return 1024, "AMX-INT8"
        if "avx512_vnni" in flags:
            return 128, "AVX512-VNNI"
        return 64, "AVX2 vpmaddubsw"
    if kind == "bf16":
        if "amx_bf16" in flags:
            return 512, "AMX-BF16"
        return 64, "AVX512-BF16"
    return (32, "AVX-512 FMA") if "avx512f" in flags else (16, "AVX2 FMA")


def clock_ghz() -> float:
    """The clock ``/proc/cpuinfo`` reports (the first CPU's), in GHz; 0 where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.partition(":")[2]) / 1000
    except OSError:
        pass
    return 0.0


def model_macs(config: dict, shapes: list[tuple[int, int]]) -> float:
    """MACs of the batches ``shapes`` ((rows, padded length) each) through the model of ``config``."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    total = 0.0
    for rows, length in shapes:
        full = length * (4 * hidden * hidden + 2 * hidden * inter) + 2 * length * length * hidden
        last = length * 2 * hidden * hidden + (2 * hidden * hidden + 2 * hidden * inter) + 2 * length * hidden
        total += rows * ((layers - 1) * full + last + hidden * hidden + hidden)  # + pooler and head
    return total


def ort_profile(path: Path, batches: list) -> dict[str, float]:
    """Per-op-group share of ONNX Runtime's kernel time, replaying ``batches`` through the file at
    ``path`` in a session set up as the ONNX backend's, with ORT's profiler on."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        options.intra_op_num_threads = usable_cpus()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_ORT_FUSIONS
        )
        names = {node.name for node in session.get_inputs()}
        for batch in batches:
            session.run(None, {key: value for key, value in batch.as_dict().items() if key in names})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values()) or 1
    groups = {group: sum(by_op[op] for op in ops) / total for group, ops in OP_GROUPS.items()}
    groups["other"] = 1 - sum(groups.values())
    return groups


def measure(name: str, model: str, queries: list, config: dict) -> dict:
    reranker = Reranker(model, device="cpu", **ENGINES[name])
    engine, batches, model_s = reranker.engine, [], []
    run = engine.logits

    def timed(batch):
        started = time.perf_counter()
        out = run(batch)
        model_s.append(time.perf_counter() - started)
        batches.append(batch)
        return out

    engine.logits = timed  # recorded at the backend seam
    for query, texts in queries[:3]:
        reranker.rank(query, texts)
    batches.clear()
    model_s.clear()
    totals, model_per_query, tokenise = [], [], []
    for query, texts in queries:
        before = len(model_s)
        started = time.perf_counter()
        reranker.rank(query, texts)
        totals.append(time.perf_counter() - started)
        model_per_query.append(sum(model_s[before:]))
        started = time.perf_counter()
        reranker.encoder.encode(query, texts)
        tokenise.append(time.perf_counter() - started)
    engine.logits = run
    shapes = [batch.input_ids.shape for batch in batches]
    macs = model_macs(config, shapes)
    kind = kind_of(name)
    per_cycle, instruction = macs_per_cycle(kind, cpu_features())
    peak = usable_cpus() * clock_ghz() * per_cycle  # GMAC/s
    achieved = macs / sum(model_s) / 1e9
    figures = {
        "ms_per_query": statistics.median(totals) * 1000,
        "model_ms": statistics.median(model_per_query) * 1000,
        "tokenise_ms": statistics.median(tokenise) * 1000,
        "padded_tokens_per_query": sum(rows * length for rows, length in shapes) / len(queries),
        "gmac_per_query": macs / len(queries) / 1e9,
        "achieved_gmac_s": achieved,
        "peak_gmac_s": peak,
        "peak_instruction": instruction,
        "share_of_peak": achieved / peak if peak else float("nan"),
    }
    figures["other_ms"] = figures["ms_per_query"] - figures["model_ms"] - figures["tokenise_ms"]
    if isinstance(engine, OnnxBackend):  # ONNX Runtime's own profiler
        figures["ort_ops"] = ort_profile(engine.path, batches)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--engines", default="onnx,int8,int8-static,torch", help=", ".join(ENGINES))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (Path(args.data) / "bm25_top100.jsonl").read_text().splitlines()]
    queries = [(row["query"], [hit["text"] for hit in row["hits"][:20]]) for row in rows]
    config = json.loads((Path(args.model) / "config.json").read_text())
    figures = {}
    for name in args.engines.split(","):
        console.print(f"measuring {name}...")
        figures[name] = measure(name, args.model, queries, config)
    table = Table(
        title=f"Limit analysis, DL19 BM25 top 20 ({len(queries)} queries), {cpu_summary()}, "
        f"clock {clock_ghz():.2f} GHz",
        title_justify="left",
    )
    columns = ["engine", "ms/query", "model ms", "tokenise ms", "other ms", "padded tokens", "GMAC/query",
               "achieved GMAC/s", "peak GMAC/s", "% of peak"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "engine" else "right")
    for name, f in figures.items():
        table.add_row(
            name,
            f"{f['ms_per_query']:.1f}",
            f"{f['model_ms']:.1f}",
            f"{f['tokenise_ms']:.1f}",
            f"{f['other_ms']:.1f}",
            f"{f['padded_tokens_per_query']:.0f}",
            f"{f['gmac_per_query']:.2f}",
            f"{f['achieved_gmac_s']:.1f}",
            f"{f['peak_gmac_s']:.0f} ({f['peak_instruction']})",
            f"{100 * f['share_of_peak']:.0f}%",
        )
    console.print(table)
    profiled = {name: f["ort_ops"] for name, f in figures.items() if "ort_ops" in f}
    if profiled:
        ops = Table(title="Inside ONNX Runtime: share of its kernel time", title_justify="left")
        ops.add_column("engine")
        for group in [*OP_GROUPS, "other"]:
            ops.add_column(group, justify="right")
        for name, groups in profiled.items():
            ops.add_row(name, *(f"{100 * share:.1f}%" for share in groups.values()))
        console.print(ops)
    if args.json_out:
        report = {"cpu": cpu_summary(), "clock_ghz": clock_ghz(), "figures": figures}
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
