"""Which int8 recipe keeps fp32's top 3: dynamic int8 variants of the fixture, each measured by what
reaches the LLM (top-3 set agreement with fp32 on DL19's BM25 top 20), its largest logit error,
nDCG@10 and its speed, in one process.

The fixture's fused graph (crossrank's int8 starting point: fused attention, FastGelu) is quantised
with ONNX Runtime's ``quantize_dynamic`` and some of its matrix products left in fp32:

* ``all``: every MatMul and the fused Attention (crossrank's int8 today);
* ``no-attention``: the fused Attention ops (Q/K/V projections and scores) stay fp32;
* ``no-ffn-down``: each layer's FFN output projection (``output/dense``, the one fed by GELU,
  whose inputs have the largest outliers) stays fp32;
* ``no-ffn-up``: each FFN input projection (``intermediate/dense``) stays fp32;
* ``no-last-layer``: the first-token last layer stays fp32;
* combinations of those.

    python benchmarks/int8_recipes.py --json benchmarks/results/int8-recipes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import ir_measures
import onnx
from rich.console import Console
from rich.table import Table

from crossrank import Reranker
from crossrank.backends.onnx_export import export_onnx, optimize_onnx
from crossrank.cpus import cpu_summary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import measure

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 150)

#: Which MatMul/Attention nodes each recipe keeps in fp32, by a test on the node.
RECIPES = {
    "all": lambda node: False,
    "no-attention": lambda node: node.op_type == "Attention",
    "no-ffn-down": lambda node: "/output/dense" in node.name and "attention" not in node.name,
    "no-ffn-up": lambda node: "/intermediate/dense" in node.name,
    "no-last-layer": lambda node: "/layer.5/" in node.name,
    "no-ffn-down,no-last-layer": lambda node: (
        ("/output/dense" in node.name and "attention" not in node.name) or "/layer.5/" in node.name
    ),
    "no-attention,no-ffn-down": lambda node: (
        node.op_type == "Attention" or ("/output/dense" in node.name and "attention" not in node.name)
    ),
}


def quantise(source: Path, target: Path, keep) -> list[str]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    kept = [n.name for n in graph.node if n.op_type in ("MatMul", "Attention") and keep(n)]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        nodes_to_exclude=kept,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--work", default="/tmp/crossrank-int8-recipes")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    rows = [json.loads(line) for line in (Path(args.data) / "bm25_top100.jsonl").read_text().splitlines()]
    queries = {row["qid"]: (row["query"], row["hits"][:20]) for row in rows}
    qrels = [
        q for q in ir_measures.read_trec_qrels(str(Path(args.data) / "qrels.txt")) if q.query_id in queries
    ]
    model = Path(args.model)
    config = json.loads((model / "config.json").read_text())
    work = Path(args.work)
    (work / "onnx").mkdir(parents=True, exist_ok=True)
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        if (model / name).is_file():
            (work / name).write_bytes((model / name).read_bytes())
    fused = work / "fused.onnx"
    if not fused.is_file():
        export_onnx(model, work / "raw.onnx")
        optimize_onnx(work / "raw.onnx", fused, config, approximate_gelu=True, fuse_attention=True)

    def scores_of(reranker: Reranker) -> tuple[dict, list[float]]:
        out, times = {}, []
        for qid, (query, hits) in queries.items():
            started = time.perf_counter()
            out[qid] = reranker.score(query, [hit["text"] for hit in hits])
            times.append((time.perf_counter() - started) * 1000)
        return out, times

    reference, _ = scores_of(Reranker(model, backend="onnx", device="cpu"))  # fp32 = torch within 2e-5
    figures = {}
    for recipe in args.recipes.split(","):
        target = work / "onnx" / f"{recipe.replace(',', '+')}.onnx"
        kept = quantise(fused, target, RECIPES[recipe])
        reranker = Reranker(work, backend="onnx", onnx_file=f"onnx/{target.name}", device="cpu")
        scores_of(reranker)  # warm
        scores, times = scores_of(reranker)
        run = {
            qid: {h["docid"]: s for h, s in zip(queries[qid][1], scores[qid], strict=True)} for qid in queries
        }
        figures[recipe] = measure(scores, reference, run, qrels) | {
            "median_ms": statistics.median(times),
            "kept_fp32": len(kept),
        }
        console.print(recipe, figures[recipe])
    table = Table(title=f"int8 recipes, DL19 BM25 top 20, {cpu_summary()}", title_justify="left")
    for column in (
        "recipe",
        "fp32 nodes",
        "top-3 = fp32",
        "top-1 = fp32",
        "max |Δlogit|",
        "nDCG@10",
        "ms / query",
    ):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for recipe, f in figures.items():
        table.add_row(
            recipe,
            str(f["kept_fp32"]),
            f"{f['top3_set']}/{f['queries']}",
            f"{f['top1']}/{f['queries']}",
            f"{f['max_abs_logit_diff']:.2f}",
            f"{f['ndcg@10']:.4f}",
            f"{f['median_ms']:.0f}",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"cpu": cpu_summary(), "figures": figures}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
