"""``crossrank rank``: rank the documents of a file against a query."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from crossrank.cli.console import console, emit, errors_reported, setup_logging, snippet
from crossrank.cli.options import JsonFlag, OutputPath, Verbose, build_reranker, reranker_options
from crossrank.config import RerankerConfig

__all__ = ["rank"]


@reranker_options("model", "engine", "ranking", "selection")
def rank(
    config: RerankerConfig,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="Text file, one document per line (blank lines skipped), or JSONL with "
            "a 'text' field (and optional '_id'/'id', 'title'); '-' reads stdin.",
        ),
    ],
    query: Annotated[str, typer.Option("--query", "-q", help="The query to rank against.")],
    all_documents: Annotated[
        bool, typer.Option("--all", help="Show every document, ranked (no top-n).")
    ] = False,
    json_output: JsonFlag = False,
    output: OutputPath = None,
    verbose: Verbose = False,
) -> None:
    """Rank the documents of FILE against a query with a cross-encoder."""
    setup_logging(verbose)
    from crossrank.corpus import read_documents

    with errors_reported():
        documents = read_documents(sys.stdin if str(file) == "-" else file)
        reranker = build_reranker(config)
        started = time.perf_counter()
        ranking = reranker.rank(
            query, [document.text for document in documents], None if all_documents else config.top_n
        )
        elapsed_ms = (time.perf_counter() - started) * 1000

    results = [{**hit.to_dict(), "id": documents[hit.index].id} for hit in ranking]
    payload = {
        "query": query,
        "model": reranker.model_name,
        "num_candidates": ranking.num_candidates,
        "num_below_min_score": ranking.num_below_min_score,
        "num_duplicates": ranking.num_duplicates,
        "num_tokens": ranking.num_tokens,
        "results": results,
    }
    emit(payload, json_output=json_output, output=output)
    if json_output:
        return
    table = Table(
        title=(
            f"{len(ranking)} of {ranking.num_candidates} documents, "
            f"{elapsed_ms:.0f} ms, {escape(reranker.model_name)}"
        ),
        title_justify="left",
    )
    for name, justify in (
        ("#", "right"),
        ("score", "right"),
        ("index", "right"),
        ("id", "left"),
        ("text", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for position, hit in enumerate(ranking, start=1):
        table.add_row(
            str(position),
            f"{hit.score:.4f}",
            str(hit.index),
            escape(str(documents[hit.index].id)),
            escape(snippet(hit.text)),
        )
    console.print(table)
    if ranking.num_below_min_score:
        console.print(
            f"[yellow]{ranking.num_below_min_score} document(s) scored below "
            f"--min-score {config.min_score}[/]"
        )
    if ranking.num_duplicates:
        console.print(
            f"[yellow]{ranking.num_duplicates} near-duplicate document(s) skipped "
            f"(--dedupe {config.dedupe})[/]"
        )
    if ranking.num_tokens is not None:
        console.print(f"[dim]{ranking.num_tokens} tokens of a --max-tokens {config.max_tokens} budget[/]")
