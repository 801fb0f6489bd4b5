"""Does scoring long chunks by windows (MaxP) beat truncation? Two cases, quality and time.

1. **DL19, relevant text past the cut.** Each BM25 top-``depth`` passage of the 43 TREC DL 2019
   queries is turned into a long chunk: passages of *other* queries (at least ``--pad-tokens``
   tokens of them) come first, the judged passage last, so truncation at 512 tokens never sees
   it. Compared: the plain passages (the ceiling), truncate, windows of max_length, and windows of
   each ``--window-lengths`` (``window_length``); "recovered" is the share of the gap between
   truncate and the ceiling that a setting closes (nDCG@10).
2. **SciFact with a small max_length.** Abstracts (~300 tokens) scored with ``--max-length``
   (default 128): truncate keeps the first ~100 tokens of each, windows reads all of it.

nDCG@10 from ir-measures; time is the wall time of scoring every pair of the case.

    python benchmarks/long_chunks.py --model ../shared/models/crossrank-fixture-minilm-l6
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossrank import Reranker
from crossrank.evaluation import EvalDataset, evaluate, load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
console = Console()


def pad_with_other_passages(
    dataset: EvalDataset, reranker: Reranker, pad_tokens: int, seed: int
) -> EvalDataset:
    """Put at least ``pad_tokens`` tokens of other queries' passages before every candidate."""
    rng = random.Random(seed)
    tokenizer = reranker.encoder.tokenizer  # the model's own tokenizer, to size the filler exactly
    pool = {qid: [c.text for c in candidates] for qid, candidates in dataset.candidates.items()}
    padded = {}
    for qid, candidates in dataset.candidates.items():
        others = [text for other, texts in pool.items() if other != qid for text in texts]
        new = []
        for candidate in candidates:
            filler, size = [], 0
            while size < pad_tokens:
                text = rng.choice(others)
                filler.append(text)
                size += len(tokenizer.encode(text, add_special_tokens=False))
            new.append(replace(candidate, text=" ".join([*filler, candidate.text])))
        padded[qid] = new
    return replace(dataset, candidates=padded)


def run_case(title: str, datasets: dict[str, tuple[EvalDataset, Reranker]], depth: int) -> dict:
    """Evaluate each (dataset, reranker) variant; print one table; return the figures."""
    table = Table(title=title, title_justify="left")
    for column in ("system", "nDCG@10", "nDCG@3", "recovered", "seconds", "time vs truncate"):
        table.add_column(column, justify="left" if column == "system" else "right")
    figures = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        for name, (dataset, reranker) in datasets.items():
            task = bar.add_task(name, total=len(dataset.candidates))
            report = evaluate(
                dataset,
                {name: reranker.score},
                depths=(depth,),
                progress=lambda _, task=task: lambda: bar.advance(task),
            )
            figures[name] = {**report.metrics[depth][name], "seconds": report.timings[name]["seconds"]}
            stage1 = report.metrics[depth]["stage 1"]
    figures = {"stage 1 (BM25)": stage1, **figures}
    base_name = next(k for k in figures if k.startswith("truncate"))
    base = figures[base_name]["seconds"]
    ceiling = next((v["nDCG@10"] for k, v in figures.items() if "ceiling" in k), None)
    floor = figures[base_name]["nDCG@10"]
    for name, values in figures.items():
        timed = "seconds" in values
        if ceiling is not None and ceiling != floor and timed and "ceiling" not in name:
            values["recovered"] = (values["nDCG@10"] - floor) / (ceiling - floor)
        table.add_row(
            name,
            f"{values['nDCG@10']:.4f}",
            f"{values['nDCG@3']:.4f}",
            f"{values['recovered']:.0%}" if "recovered" in values else "",
            f"{values['seconds']:.1f}" if timed else "",
            f"{values['seconds'] / base:.2f}x" if timed else "",
        )
    console.print(table)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data-dir", default=str(SHARED / "data"))
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--pad-tokens", type=int, default=600, help="filler before each DL19 passage")
    parser.add_argument("--max-length", type=int, default=128, help="SciFact case")
    parser.add_argument("--scifact-queries", type=int, default=None, help="first N SciFact queries only")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--window-lengths", type=int, nargs="*", default=[256, 128], help="window_length settings (DL19 case)"
    )
    parser.add_argument("--dl19-queries", type=int, default=None, help="first N DL19 queries only")
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    results = {}
    truncate = Reranker(args.model, device="cpu")
    windows = Reranker(args.model, device="cpu", long_documents="windows")
    dl19 = load_dataset("trec-dl-2019", data_dir=args.data_dir, depth=args.depth)
    if args.dl19_queries:
        kept = list(dl19.candidates)[: args.dl19_queries]
        dl19 = replace(dl19, candidates={qid: dl19.candidates[qid] for qid in kept})
    padded = pad_with_other_passages(dl19, truncate, args.pad_tokens, args.seed)
    shorter = {
        f"windows of {length}, padded": (
            padded,
            Reranker(args.model, device="cpu", long_documents="windows", window_length=length),
        )
        for length in args.window_lengths
    }
    results["dl19_padded"] = run_case(
        f"DL19 BM25 top-{args.depth}, each passage after >= {args.pad_tokens} tokens of other passages "
        f"(max_length {truncate.max_length})",
        {
            "plain passages (ceiling)": (dl19, truncate),
            "truncate, padded": (padded, truncate),
            f"windows of {windows.max_length}, padded": (padded, windows),
            **shorter,
        },
        args.depth,
    )

    if args.skip_scifact:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        return
    short_truncate = Reranker(args.model, device="cpu", max_length=args.max_length)
    short_windows = Reranker(args.model, device="cpu", max_length=args.max_length, long_documents="windows")
    scifact = load_dataset("beir-scifact", data_dir=args.data_dir, depth=args.depth)
    if args.scifact_queries:
        kept = list(scifact.candidates)[: args.scifact_queries]
        scifact = replace(scifact, candidates={q: scifact.candidates[q] for q in kept})
    results["scifact_short"] = run_case(
        f"SciFact BM25 top-{args.depth}, max_length {args.max_length}",
        {"truncate": (scifact, short_truncate), "windows": (scifact, short_windows)},
        args.depth,
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
