"""``crossrank demo``: two-stage retrieval on a small corpus, a bi-encoder then the cross-encoder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crossrank.cli.console import Progress, console, emit, errors_reported, note, setup_logging, snippet
from crossrank.cli.options import JsonFlag, OutputPath, Verbose, build_reranker, reranker_options
from crossrank.config import DEFAULT_MODEL, RerankerConfig
from crossrank.errors import ModelLoadError

__all__ = ["DEFAULT_QUERY", "demo", "load_demo_reranker"]

DEFAULT_QUERY = "How does a cross-encoder compute a relevance score for a query and a passage?"


def load_demo_reranker(config: RerankerConfig, fallback: str | None) -> tuple[Any, str | None]:
    """Load the demo's reranker; when the default hub model can't be had, use the fallback model.

    Returns:
        The reranker, and a note saying why the fallback was used (``None`` when it wasn't).
    """
    try:
        return build_reranker(config), None
    except ModelLoadError as err:
        if config.model != DEFAULT_MODEL:
            raise
        if fallback is None:
            raise ModelLoadError(
                f"{err} (The demo can fall back to a local model: --fallback-model DIR or "
                "CROSSRANK_DEMO_FALLBACK_MODEL.)",
                model=config.model,
                hub_reachable=err.hub_reachable,
            ) from err
        note = (
            f"default model {config.model} can't be had here "
            f"({'hub unreachable' if not err.hub_reachable else err}); falling back to {fallback}"
        )
        return build_reranker(config.model_copy(update={"model": fallback})), note


@reranker_options("model", "engine", "ranking", "selection")
def demo(
    config: RerankerConfig,
    query: Annotated[str, typer.Option("--query", "-q", help="The question to answer.")] = DEFAULT_QUERY,
    corpus: Annotated[
        Path | None,
        typer.Option(help="BEIR-style corpus.jsonl ({_id, title, text} per line). Default: bundled corpus."),
    ] = None,
    fallback_model: Annotated[
        str | None,
        typer.Option(
            envvar="CROSSRANK_DEMO_FALLBACK_MODEL",
            help="Model to use when the default model can't be had (offline and not cached).",
        ),
    ] = None,
    candidates: Annotated[int, typer.Option("--candidates", "-k", min=1, help="Stage-1 candidates.")] = 20,
    retriever_model: Annotated[
        str, typer.Option(help="Stage-1 bi-encoder.")
    ] = "sentence-transformers/all-MiniLM-L6-v2",
    json_output: JsonFlag = False,
    output: OutputPath = None,
    verbose: Verbose = False,
) -> None:
    """Two-stage retrieval: a bi-encoder retrieves the top 20 chunks, crossrank keeps the best 3."""
    setup_logging(verbose)
    from crossrank.demo import load_corpus
    from crossrank.retrieval import BiEncoderRetriever

    with errors_reported():
        chunks = load_corpus(corpus)
        note(f"[bold]query[/]   {escape(query)}", json_output=json_output)
        where = escape(str(corpus)) if corpus else "the bundled demo corpus"
        note(f"[bold]corpus[/]  {len(chunks)} chunks from {where}", json_output=json_output)
        # The reranker loads first so a bad --model fails before the corpus is embedded.
        started = time.perf_counter()
        reranker, fallback_note = load_demo_reranker(config, fallback_model)
        load_s = time.perf_counter() - started
        if fallback_note:
            note(f"[yellow]note[/]    {escape(fallback_note)}", json_output=json_output)
        with Progress() as progress:
            task = progress.add_task("stage 1: embedding the corpus", total=len(chunks))
            retriever = BiEncoderRetriever(
                chunks,
                model=retriever_model,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        if retriever.note:
            note(f"[yellow]note[/]    {escape(retriever.note)}", json_output=json_output)
        started = time.perf_counter()
        hits = retriever.retrieve(query, k=candidates)
        stage1_ms = (time.perf_counter() - started) * 1000

        texts = [hit.chunk.text for hit in hits]
        started = time.perf_counter()
        best = reranker.rank(query, texts)
        first_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()  # again, warm: what every later question costs
        reranker.rank(query, texts)
        stage2_ms = (time.perf_counter() - started) * 1000

    note(
        f"[bold]stage 1[/] bi-encoder {escape(retriever_model)}: "
        f"top {len(hits)} of {len(chunks)} in {stage1_ms:.1f} ms "
        f"[dim](corpus embedded once in {retriever.index_seconds:.2f} s, model loaded in "
        f"{retriever.load_seconds:.2f} s)[/]",
        json_output=json_output,
    )
    note(
        f"[bold]stage 2[/] cross-encoder {escape(reranker.model_name)}: reranked {len(hits)} in "
        f"{stage2_ms:.1f} ms [dim](first call {first_ms:.0f} ms, model loaded in {load_s:.2f} s, "
        f"{reranker.device})[/]",
        json_output=json_output,
    )
    results = [
        {
            "rank": position,
            "score": result.score,
            "stage1_rank": hits[result.index].rank,
            "id": hits[result.index].chunk.id,
            "text": result.text,
        }
        for position, result in enumerate(best, start=1)
    ]
    payload = {
        "query": query,
        "model": reranker.model_name,
        "stage1_model": retriever_model,
        "num_candidates": len(hits),
        "results": results,
        "stage1_ms": stage1_ms,
        "stage2_ms": stage2_ms,
    }
    emit(payload, json_output=json_output, output=output)
    if json_output:
        return
    table = Table(title=f"Best {len(best)} of {len(hits)} for the LLM", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("stage-1 rank", justify="right")
    table.add_column("id")
    table.add_column("chunk", overflow="fold")
    for row in results:
        table.add_row(
            str(row["rank"]),
            f"{row['score']:.3f}",
            str(row["stage1_rank"]),
            escape(str(row["id"])),
            escape(snippet(row["text"])),
        )
    console.print(table)
