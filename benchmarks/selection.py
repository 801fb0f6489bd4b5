"""What reaches the LLM: fusion and dedupe on DL19, DL20 and SciFact, and what each option costs.

For each dataset (BM25 top ``--depth``, the fixture model), the reranker's scores are computed
once and post-processed by every selection variant through ``crossrank.evaluation.evaluate``
(the code of ``crossrank eval``): nDCG@3 and @10, ``dup@3`` (queries whose top 3 holds a
near-duplicate pair: word-set Jaccard >= 0.8) and ``distinct rel@3`` (relevant chunks per query in
the top 3 that repeat none above).

Cost: the median time of each option's post-processing of one query's ``--depth`` chunks, next
to the median time of one ``Reranker.rank`` of those chunks, measured in the same run over the
same DL19 queries (the machine is noisy: read the ratio).

    python benchmarks/selection.py --model ../shared/models/crossrank-fixture-minilm-l6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossrank import Reranker
from crossrank.evaluation import evaluate, load_dataset
from crossrank.selection import SelectOptions, select

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
console = Console()

VARIANTS = {
    "fusion rrf k=60": SelectOptions(fusion="rrf", fusion_k=60),
    "fusion rrf k=10": SelectOptions(fusion="rrf", fusion_k=10),
    "fusion weighted w=0.5": SelectOptions(fusion="weighted", fusion_weight=0.5),
    "dedupe jaccard>=0.8": SelectOptions(dedupe=0.8),
    "dedupe ratio>=0.9": SelectOptions(dedupe=0.9, dedupe_similarity="ratio"),
}


def quality(model: str, data_dir: Path, datasets: list[str], depth: int) -> dict:
    reranker = Reranker(model, device="cpu")
    results = {}
    for name in datasets:
        data = load_dataset(name, data_dir=data_dir, depth=depth)
        with console.status(f"{name}: scoring {sum(len(c[:depth]) for c in data.candidates.values())} pairs"):
            report = evaluate(data, {"reranker": reranker}, depths=(depth,), selections=VARIANTS)
        results[name] = {"num_queries": report.num_queries, "metrics": report.metrics[depth]}
        table = Table(title=f"{name}: BM25 top {depth}, {report.num_queries} queries", title_justify="left")
        for column in ("system", "nDCG@3", "nDCG@10", "dup@3 (queries)", "distinct rel@3"):
            table.add_column(column, justify="left" if column == "system" else "right")
        for system, values in report.metrics[depth].items():
            table.add_row(
                system,
                f"{values['nDCG@3']:.4f}",
                f"{values['nDCG@10']:.4f}",
                f"{round(values['dup@3'] * report.num_queries)}/{report.num_queries}",
                f"{values['distinct rel@3']:.3f}",
            )
        console.print(table)
    return results


def cost(model: str, data_dir: Path, depth: int, queries: int, repeats: int) -> dict:
    """Median ms per query of each option's post-processing and of one rerank, same run."""
    reranker = Reranker(model, device="cpu")
    data = load_dataset("trec-dl-2019", data_dir=data_dir, depth=depth)
    cases = [
        (data.queries[qid], [c.text for c in cands[:depth]], [c.score for c in cands[:depth]])
        for qid, cands in list(data.candidates.items())[:queries]
    ]
    options = {
        **VARIANTS,
        "max_tokens=300 (model tokenizer)": SelectOptions(max_tokens=300),
        "all: rrf + dedupe + max_tokens": SelectOptions(fusion="rrf", dedupe=0.8, max_tokens=300),
    }
    rerank_ms, option_ms = [], {name: [] for name in options}
    for _ in range(repeats):
        for query, texts, stage1 in cases:
            started = time.perf_counter()
            scores = reranker.score(query, texts)
            rerank_ms.append(1000 * (time.perf_counter() - started))
            for name, option in options.items():
                started = time.perf_counter()
                select(texts, scores, option, first_stage=stage1, count_tokens=reranker.budget_tokens)
                option_ms[name].append(1000 * (time.perf_counter() - started))
    rerank = statistics.median(rerank_ms)
    table = Table(
        title=f"cost per query, DL19 BM25 top {depth}: median of {len(rerank_ms)} (query, repeat)",
        title_justify="left",
    )
    for column in ("option", "ms / query", "share of one rerank"):
        table.add_column(column, justify="left" if column == "option" else "right")
    table.add_row(f"rerank {depth} chunks (score)", f"{rerank:.1f}", "100%")
    results = {"rerank_ms": rerank, "options": {}}
    for name, values in option_ms.items():
        median = statistics.median(values)
        results["options"][name] = {"ms": median, "share": median / rerank}
        table.add_row(name, f"{median:.3f}", f"{median / rerank:.2%}")
    console.print(table)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data-dir", default=str(SHARED / "data"))
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--datasets", nargs="+", default=["trec-dl-2019", "trec-dl-2020", "beir-scifact"])
    parser.add_argument("--cost-queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_out", help="write the results here")
    args = parser.parse_args()
    results = {
        "date": date.today().isoformat(),
        "model": args.model,
        "depth": args.depth,
        "cost": cost(args.model, Path(args.data_dir), args.depth, args.cost_queries, args.repeats),
        "quality": quality(args.model, Path(args.data_dir), args.datasets, args.depth),
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
