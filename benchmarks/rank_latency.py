"""Latency of ``Reranker.rank`` on 20 DL19 passages, side by side with sentence-transformers.

For each of the 43 TREC DL 2019 queries, the BM25 top-20 passages are ranked by crossrank
(``Reranker.rank``) and scored by ``CrossEncoder.predict`` on the same model, alternating which
goes first, for ``--rounds`` rounds. Prints median / p95 per query, the ratio, and the largest
score difference between the two (parity).

    python benchmarks/rank_latency.py --model ../shared/models/crossrank-fixture-minilm-l6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"))
    parser.add_argument("--depth", type=int, default=20, help="passages per query")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 43 queries")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from crossrank import Reranker

    console = Console()
    with open(args.data, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    queries = [(row["query"], [hit["text"] for hit in row["hits"][: args.depth]]) for row in rows]

    reranker = Reranker(args.model, device="cpu")
    cross_encoder = CrossEncoder(args.model, device="cpu", activation_fn=torch.nn.Identity())

    def run_crossrank(query: str, texts: list[str]) -> np.ndarray:
        ranking = reranker.rank(query, texts, top_n=None)
        scores = np.empty(len(texts))
        scores[[hit.index for hit in ranking]] = [hit.score for hit in ranking]
        return scores

    def run_st(query: str, texts: list[str]) -> np.ndarray:
        return cross_encoder.predict([(query, text) for text in texts])

    systems = {"sentence-transformers CrossEncoder.predict": run_st, "crossrank Reranker.rank": run_crossrank}
    for query, texts in queries[:3]:  # warm-up: first calls allocate and pick kernels
        for run in systems.values():
            run(query, texts)

    times: dict[str, list[float]] = {name: [] for name in systems}
    worst_diff = 0.0
    for round_ in track(range(args.rounds), description="rounds", console=console):
        for i, (query, texts) in enumerate(queries):
            order = list(systems.items())
            if (i + round_) % 2:
                order.reverse()  # alternate who goes first, so neither always gets a warmer cache
            outputs = {}
            for name, run in order:
                started = time.perf_counter()
                outputs[name] = run(query, texts)
                times[name].append((time.perf_counter() - started) * 1000)
            worst_diff = max(worst_diff, float(np.max(np.abs(np.subtract(*outputs.values())))))

    reference = statistics.median(times["sentence-transformers CrossEncoder.predict"])
    table = Table(
        title=f"{len(queries)} DL19 queries x {args.depth} BM25 passages x {args.rounds} rounds, "
        f"torch threads={torch.get_num_threads()}, model={Path(args.model).name}",
        title_justify="left",
    )
    for column in ("system", "median ms", "p95 ms", "docs/s", "speed-up vs ST"):
        table.add_column(column, justify="left" if column == "system" else "right")
    figures = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        p95 = float(np.percentile(samples, 95))
        figures[name] = {"median_ms": median, "p95_ms": p95, "runs": len(samples)}
        table.add_row(
            name,
            f"{median:.1f}",
            f"{p95:.1f}",
            f"{args.depth / median * 1000:.0f}",
            f"{reference / median:.2f}x",
        )
    console.print(table)
    console.print(f"parity: max |crossrank - CrossEncoder.predict| over all pairs = {worst_diff:.2e}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"systems": figures, "max_abs_diff": worst_diff}, indent=2))


if __name__ == "__main__":
    main()
