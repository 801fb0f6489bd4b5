"""Can int8 requests share forward passes? ``quantize="int8-static"`` against dynamic int8, in one run.

crossrank's ``quantize="int8"`` file is ``quantize_dynamic``'s: each batch's activations get one
scale computed from the whole batch tensor, so a row's score moves with its batch-mates, and
``Reranker.score_batch`` never mixes requests in a batch (the server turns its batcher off for
it). ``quantize="int8-static"`` fixes every activation scale at export (calibrated on the
package's demo corpus; :func:`crossrank.backends.onnx_export.quantize_onnx_int8_static`), so a
row's arithmetic can't see the other rows and requests are mixed and length-sorted together, as
fp32's are. Measured here, on DL19's 43 queries x BM25 top 20 (860 pairs):

* fp32, dynamic int8 and int8-static, as crossrank builds them;
* int8-static on a graph with ORT's attention fusion on, built here with the same recipe (the
  shipped file leaves attention unfused, so that its Q/K/V projection and the two attention
  products are int8 too; ORT can't quantise the fused Attention op statically, so there the
  projection stays fp32);
* per variant: nDCG@10 of each request scored alone; seconds to score the requests one at a time
  ("alone") and all 43 in one ``score_batch`` ("mixed", where the engine allows mixing); the
  largest difference between a request's mixed and alone scores. Variants take turns,
  ``--repeats`` times; medians are printed.

    python benchmarks/int8_static_mixing.py               # ~5 min on 2 cores
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

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CROSSRANK_SHARED", HERE.parent.parent / "shared"))
console = Console(width=None if sys.stdout.isatty() else 160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "crossrank-fixture-minilm-l6")
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import ir_measures
    from ir_measures import nDCG

    from crossrank import Reranker
    from crossrank.backends.onnx_export import export_onnx, optimize_onnx, quantize_onnx_int8_static

    dl19 = args.data_dir / "trec-dl-2019-passage"
    records = [json.loads(line) for line in (dl19 / "bm25_top100.jsonl").read_text().splitlines()]
    requests = [(r["query"], [h["text"] for h in r["hits"][:20]]) for r in records]
    qrels = list(ir_measures.read_trec_qrels(str(dl19 / "qrels.txt")))

    work = Path(tempfile.mkdtemp(prefix="int8-static-"))
    os.environ["CROSSRANK_CACHE"] = str(work / "cache")  # this run's exports go with its folder
    try:
        folder = work / "model"
        shutil.copytree(args.model, folder)
        (folder / "onnx").mkdir()
        config = json.loads((folder / "config.json").read_text())
        with console.status("exporting, fusing and calibrating the static int8 files"):
            started = time.perf_counter()
            variants = {
                "fp32": Reranker(folder, backend="onnx"),
                "int8 (dynamic)": Reranker(folder, backend="onnx", quantize="int8"),
                "int8-static": Reranker(folder, backend="onnx", quantize="int8-static"),
            }
            raw, fused = work / "raw.onnx", work / "fused.onnx"
            export_onnx(folder, raw)
            optimize_onnx(raw, fused, config, approximate_gelu=True, fuse_attention=True)
            quantize_onnx_int8_static(fused, folder / "onnx" / "static-fused.onnx", folder, config)
            variants["int8-static, attention fused"] = Reranker(
                folder, backend="onnx", onnx_file="onnx/static-fused.onnx", batch_size=16
            )
            build_s = time.perf_counter() - started
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
        reference = statistics.median(times["int8 (dynamic)"]["alone"])
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
        title=f"DL19 43 queries x BM25 top 20 (860 pairs); medians of {args.repeats}; exports built in "
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
