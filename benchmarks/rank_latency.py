"""Latency and quality of reranking 20 DL19 passages per query, every system side by side.

For each of the 43 TREC DL 2019 queries, the BM25 top-``depth`` passages are scored by each
system in turn (the order rotates per query, so no system always runs on a warmer cache), for
``--rounds`` passes. Reported per system: median and p95 latency per query, docs/s, nDCG@10 of
its ranking, the largest score difference to the reference, and the speed-up against the
reference, sentence-transformers' ``CrossEncoder.predict`` (torch fp32).

    python benchmarks/rank_latency.py                       # ST, crossrank torch / onnx / onnx int8
    python benchmarks/rank_latency.py --systems st,torch    # a subset
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import ir_measures
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = "sentence-transformers CrossEncoder (torch fp32)"
Scorer = Callable[[str, list[str]], np.ndarray]


def build_systems(model: str, names: list[str]) -> dict[str, Scorer]:
    """The scorers to compare, by display name; ``st`` is always first (the reference)."""
    import torch
    from sentence_transformers import CrossEncoder

    from crossrank import Reranker

    cross_encoder = CrossEncoder(model, device="cpu", activation_fn=torch.nn.Identity())
    systems: dict[str, Scorer] = {
        REFERENCE: lambda q, texts: cross_encoder.predict([(q, t) for t in texts]),
    }
    variants = {
        "torch": ("crossrank torch", {}),
        "onnx": ("crossrank onnx fp32", {"backend": "onnx"}),
        "int8": ("crossrank onnx int8", {"backend": "onnx", "quantize": "int8"}),
    }
    for key in names:
        if key == "st":
            continue
        label, options = variants[key]
        reranker = Reranker(model, device="cpu", **options)

        def rank(q: str, texts: list[str], reranker=reranker) -> np.ndarray:
            ranking = reranker.rank(q, texts, top_n=None)  # rank(), what users call, timed end to end
            scores = np.empty(len(texts))
            scores[[hit.index for hit in ranking]] = [hit.score for hit in ranking]
            return scores

        systems[label] = rank
    return systems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--depth", type=int, default=20, help="passages per query")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 43 queries")
    parser.add_argument("--systems", default="st,torch,onnx,int8", help="st, torch, onnx, int8")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()

    import torch

    console = Console()
    with open(Path(args.data) / "bm25_top100.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    qrels = list(ir_measures.read_trec_qrels(str(Path(args.data) / "qrels.txt")))
    queries = [(row["qid"], row["query"], row["hits"][: args.depth]) for row in rows]
    systems = build_systems(args.model, args.systems.split(","))

    for _, query, hits in queries[:3]:  # warm-up: first calls allocate and pick kernels
        for run in systems.values():
            run(query, [hit["text"] for hit in hits])

    names = list(systems)
    times: dict[str, list[float]] = {name: [] for name in names}
    scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
    for round_ in track(range(args.rounds), description="rounds", console=console):
        for i, (qid, query, hits) in enumerate(queries):
            texts = [hit["text"] for hit in hits]
            shift = (i + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                scores[name][qid] = systems[name](query, texts)
                times[name].append((time.perf_counter() - started) * 1000)

    reference_ms = statistics.median(times[REFERENCE])
    table = Table(
        title=f"{len(queries)} DL19 queries x BM25 top {args.depth} x {args.rounds} rounds, 2 cores, "
        f"torch threads={torch.get_num_threads()}, model={Path(args.model).name}",
        title_justify="left",
    )
    for column in ("system", "median ms", "p95 ms", "docs/s", "nDCG@10", "max |Δ| vs ref", "speed-up"):
        table.add_column(column, justify="left" if column == "system" else "right")
    figures = {}
    for name in names:
        run = {
            qid: {hit["docid"]: float(s) for hit, s in zip(hits, scores[name][qid], strict=True)}
            for qid, _, hits in queries
        }
        ndcg = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]
        diff = max(float(np.max(np.abs(scores[name][q] - scores[REFERENCE][q]))) for q in scores[name])
        median, p95 = statistics.median(times[name]), float(np.percentile(times[name], 95))
        figures[name] = {
            "median_ms": median,
            "p95_ms": p95,
            "ndcg@10": ndcg,
            "max_abs_diff": diff,
            "speedup": reference_ms / median,
            "runs": len(times[name]),
        }
        table.add_row(
            name,
            f"{median:.1f}",
            f"{p95:.1f}",
            f"{args.depth / median * 1000:.0f}",
            f"{ndcg:.4f}",
            f"{diff:.1e}",
            f"{reference_ms / median:.2f}x",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
