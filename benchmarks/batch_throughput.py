"""Many requests at once: 43 `rank` calls against one `rank_batch` call, per backend, in one run.

Inputs: the 43 TREC DL 2019 queries with their BM25 top 20 (860 pairs), scored by the trained
MiniLM-L6 fixture. For each backend (torch fp32, onnx fp32, onnx int8), in turns so that the
machine's noise falls on every system alike:

* ``rank``: one ``Reranker.rank`` call per query, 43 calls (what a server that queues whole
  requests on the model does);
* ``rank_batch``: one ``Reranker.rank_batch`` call over the 43 requests (what a server that
  merges concurrent requests at the pair level does, and ``crossrank eval`` now does).

It prints pairs/s of each (median over ``--rounds``), their ratio, and the largest difference
between a pair's score in the two modes: fp32 must stay within 1e-5; int8 batches never mix
requests, so there it must be exactly 0.

Then the batch planner alone (``plan_batches``): the exact dynamic programme as it was (every
start within ``batch_size``) against the one that tries only full batches and the starts of
runs of equal lengths, on DL19's real pair lengths tiled to 1,280 and 10,000 pairs, batch 128.

    python benchmarks/batch_throughput.py                   # ~3 minutes on 2 cores
    python benchmarks/batch_throughput.py --backends int8 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CROSSRANK_SHARED", HERE.parent.parent / "shared"))
BACKENDS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "int8": {"backend": "onnx", "quantize": "int8"},
}
console = Console(width=None if sys.stdout.isatty() else 150)


def load_requests(depth: int) -> list[tuple[str, list[str]]]:
    with (SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [(row["query"], [hit["text"] for hit in row["hits"][:depth]]) for row in rows]


def exhaustive_plan(lengths: list[int], batch_size: int, overhead: int) -> list[tuple[int, int]]:
    """The planner as it was before: every start within ``batch_size`` of each stop."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for stop in range(1, n + 1):
        for start in range(max(0, stop - batch_size), stop):
            cost = best[start] + (stop - start) * lengths[start] + overhead
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    plan, stop = [], n
    while stop > 0:
        plan.append((cut[stop], stop))
        stop = cut[stop]
    return plan[::-1]


def plan_cost(lengths: list[int], plan: list[tuple[int, int]], overhead: int) -> int:
    return sum((stop - start) * lengths[start] + overhead for start, stop in plan)


def bench_planner(reranker, requests: list[tuple[str, list[str]]], repeats: int) -> list[dict]:
    from crossrank.encoding import plan_batches

    lengths = []
    for query, texts in requests:
        lengths += [len(pair) for pair in reranker.encoder.encode(query, texts).first]
    rows = []
    for n in (1280, 10000):
        tiled = sorted((lengths * (n // len(lengths) + 1))[:n], reverse=True)
        timings: dict[str, list[float]] = {"exhaustive": [], "run starts": []}
        plans = {}
        for _ in range(repeats):
            for name, planner in (("exhaustive", exhaustive_plan), ("run starts", plan_batches)):
                started = time.perf_counter()
                plans[name] = planner(tiled, 128, 128)
                timings[name].append((time.perf_counter() - started) * 1000)
        rows.append(
            {
                "pairs": n,
                "exhaustive_ms": statistics.median(timings["exhaustive"]),
                "run_starts_ms": statistics.median(timings["run starts"]),
                "same_cost": plan_cost(tiled, plans["exhaustive"], 128)
                == plan_cost(tiled, plans["run starts"], 128),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--backends", default="torch,onnx,int8", help="comma-separated: torch, onnx, int8")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per mode (median)")
    parser.add_argument("--depth", type=int, default=20, help="candidates per query")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from crossrank import Reranker

    requests = load_requests(args.depth)
    pairs = sum(len(texts) for _, texts in requests)
    names = [name.strip() for name in args.backends.split(",")]
    rerankers = {name: Reranker(args.model, device="cpu", **BACKENDS[name]) for name in names}
    for reranker in rerankers.values():  # warm-up: first calls allocate
        reranker.rank_batch(requests[:4], top_n=None)
        reranker.rank(*requests[0], top_n=None)

    seconds: dict[str, dict[str, list[float]]] = {name: {"rank": [], "rank_batch": []} for name in names}
    results: dict[str, dict[str, list]] = {name: {} for name in names}
    for _ in range(args.rounds):
        for name, reranker in rerankers.items():
            started = time.perf_counter()
            results[name]["rank"] = [reranker.rank(query, texts, top_n=None) for query, texts in requests]
            seconds[name]["rank"].append(time.perf_counter() - started)
            started = time.perf_counter()
            results[name]["rank_batch"] = reranker.rank_batch(requests, top_n=None)
            seconds[name]["rank_batch"].append(time.perf_counter() - started)

    table = Table(
        title=f"{len(requests)} DL19 queries x BM25 top {args.depth} = {pairs} pairs, median of {args.rounds}"
    )
    for column in (
        "backend",
        "43 rank calls pairs/s",
        "1 rank_batch call pairs/s",
        "ratio",
        "max |score diff|",
    ):
        table.add_column(column, justify="left" if column == "backend" else "right")
    figures = {"pairs": pairs, "rounds": args.rounds, "backends": {}}
    for name in names:
        one = pairs / statistics.median(seconds[name]["rank"])
        batch = pairs / statistics.median(seconds[name]["rank_batch"])
        diff = max(
            abs(a.score - b.score)
            for alone, together in zip(results[name]["rank"], results[name]["rank_batch"], strict=True)
            for a, b in zip(
                sorted(alone, key=lambda hit: hit.index),
                sorted(together, key=lambda hit: hit.index),
                strict=True,
            )
        )
        figures["backends"][name] = {
            "rank_pairs_per_s": one,
            "rank_batch_pairs_per_s": batch,
            "max_diff": diff,
        }
        table.add_row(name, f"{one:.0f}", f"{batch:.0f}", f"{batch / one:.2f}x", f"{diff:.1e}")
    console.print(table)

    planner = bench_planner(next(iter(rerankers.values())), requests, repeats=5)
    table = Table(title="batch planner, batch 128, DL19 pair lengths tiled (median of 5)")
    for column in ("pairs", "every start ms", "run starts ms", "ratio", "same cost"):
        table.add_column(column, justify="right")
    for row in planner:
        table.add_row(
            str(row["pairs"]),
            f"{row['exhaustive_ms']:.1f}",
            f"{row['run_starts_ms']:.1f}",
            f"{row['exhaustive_ms'] / row['run_starts_ms']:.1f}x",
            "yes" if row["same_cost"] else "NO",
        )
    console.print(table)
    figures["planner"] = planner
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
