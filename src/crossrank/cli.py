"""The ``crossrank`` command line: ``crossrank demo`` and ``crossrank rank``.

This is the one place in crossrank that configures logging and progress bars; the library
itself only logs through ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossrank.config import DEFAULT_MODEL
from crossrank.errors import CrossrankError, ModelLoadError

app = typer.Typer(
    help="Cross-encoder reranking for RAG: retrieve ~20 chunks fast, keep the best few.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_QUERY = "How does a cross-encoder compute a relevance score for a query and a passage?"
#: Where ``crossrank demo`` finds the trained test fixture when the default hub model can't be had.
FIXTURE_FALLBACK = Path("..") / "shared" / "models" / "crossrank-fixture-minilm-l6"


def _setup(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    # Model-loading progress bars from transformers/hub are noise on a CLI screen.
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


def _progress_bar() -> Progress:
    """A progress bar on stderr that disappears when done, so stdout stays clean for results."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False)
    return typer.Exit(code=1)


def _snippet(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _load_demo_reranker(model: str, fallback: str | None, top_n: int) -> tuple[object, str | None]:
    """Load the demo's reranker; when the default hub model can't be had, use the fallback model."""
    from crossrank import Reranker

    try:
        return Reranker(model, top_n=top_n), None
    except ModelLoadError as err:
        if model != DEFAULT_MODEL:
            raise
        candidate = fallback or (str(FIXTURE_FALLBACK) if FIXTURE_FALLBACK.is_dir() else None)
        if candidate is None:
            raise ModelLoadError(
                f"{err} (The demo can fall back to a local model: --fallback-model DIR or "
                "CROSSRANK_DEMO_FALLBACK_MODEL.)",
                model=model,
                hub_reachable=err.hub_reachable,
            ) from err
        note = (
            f"default model {model} can't be had here "
            f"({'hub unreachable' if not err.hub_reachable else err}); "
            f"falling back to {candidate}"
        )
        return Reranker(candidate, top_n=top_n), note


@app.command()
def demo(
    query: Annotated[str, typer.Option("--query", "-q", help="The question to answer.")] = DEFAULT_QUERY,
    corpus: Annotated[
        Path | None,
        typer.Option(help="BEIR-style corpus.jsonl ({_id, title, text} per line). Default: bundled corpus."),
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", "-m", envvar="CROSSRANK_MODEL", help="Cross-encoder hub id or directory."),
    ] = DEFAULT_MODEL,
    fallback_model: Annotated[
        str | None,
        typer.Option(
            envvar="CROSSRANK_DEMO_FALLBACK_MODEL",
            help=(
                "Model to use when the default model can't be had (offline and not cached). "
                f"Default: {FIXTURE_FALLBACK} if that directory exists."
            ),
        ),
    ] = None,
    candidates: Annotated[int, typer.Option("--candidates", "-k", min=1, help="Stage-1 candidates.")] = 20,
    top_n: Annotated[int, typer.Option("--top-n", "-n", min=1, help="Chunks kept for the LLM.")] = 3,
    retriever_model: Annotated[
        str, typer.Option(help="Stage-1 bi-encoder.")
    ] = "sentence-transformers/all-MiniLM-L6-v2",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Two-stage retrieval: a bi-encoder retrieves the top 20 chunks, crossrank keeps the best 3."""
    _setup(verbose)
    from crossrank.demo import BiEncoderRetriever, load_corpus

    try:
        chunks = load_corpus(corpus)
        console.print(f"[bold]query[/]   {query}")
        console.print(f"[bold]corpus[/]  {len(chunks)} chunks from {corpus or 'the bundled demo corpus'}")
        # The reranker loads first so a bad --model fails before the corpus is embedded.
        started = time.perf_counter()
        reranker, note = _load_demo_reranker(model, fallback_model, top_n)
        load_s = time.perf_counter() - started
        if note:
            console.print(f"[yellow]note[/]    {note}")
        with _progress_bar() as progress:
            task = progress.add_task("stage 1: embedding the corpus", total=len(chunks))
            retriever = BiEncoderRetriever(
                chunks,
                model=retriever_model,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        if retriever.note:
            console.print(f"[yellow]note[/]    {retriever.note}")
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
    except (CrossrankError, FileNotFoundError, ValueError) as err:
        raise _fail(err) from err

    console.print(
        f"[bold]stage 1[/] bi-encoder {retriever_model}: "
        f"top {len(hits)} of {len(chunks)} in {stage1_ms:.1f} ms "
        f"[dim](corpus embedded once in {retriever.index_seconds:.2f} s, model loaded in "
        f"{retriever.load_seconds:.2f} s)[/]"
    )
    console.print(
        f"[bold]stage 2[/] cross-encoder {reranker.model_name}: reranked {len(hits)} in {stage2_ms:.1f} ms "
        f"[dim](first call {first_ms:.0f} ms, model loaded in {load_s:.2f} s, {reranker.device})[/]"
    )
    table = Table(title=f"Best {len(best)} of {len(hits)} for the LLM", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("stage-1 rank", justify="right")
    table.add_column("id")
    table.add_column("chunk", overflow="fold")
    for position, result in enumerate(best, start=1):
        hit = hits[result.index]
        table.add_row(
            str(position), f"{result.score:.3f}", str(hit.rank), hit.chunk.id, _snippet(hit.chunk.text)
        )
    console.print(table)


def _read_documents(file: Path) -> tuple[list[str], list[str | None]]:
    """Documents and their ids from a text file (one per line) or JSONL ({"text", "_id"/"id"})."""
    raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    lines = [
        line for line in raw.splitlines() if line.strip()
    ]  # blank lines separate, they are not documents
    if lines and all(line.lstrip().startswith("{") for line in lines):
        texts, ids = [], []
        for number, line in enumerate(lines, start=1):
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{file}: record {number} has no string 'text' field")
            title = record.get("title")
            texts.append(f"{title}. {record['text']}" if title else record["text"])
            ids.append(str(record.get("_id", record.get("id", number - 1))))
        return texts, ids
    return lines, [None] * len(lines)


@app.command()
def rank(
    file: Annotated[
        Path,
        typer.Argument(
            help="Text file, one document per line (blank lines skipped), or JSONL with "
            "a 'text' field (and optional '_id'/'id', 'title'); '-' reads stdin."
        ),
    ],
    query: Annotated[str, typer.Option("--query", "-q", help="The query to rank against.")],
    model: Annotated[
        str,
        typer.Option("--model", "-m", envvar="CROSSRANK_MODEL", help="Cross-encoder hub id or directory."),
    ] = DEFAULT_MODEL,
    top_n: Annotated[int, typer.Option("--top-n", "-n", min=1, help="How many to show.")] = 3,
    all_documents: Annotated[bool, typer.Option("--all", help="Show every document, ranked.")] = False,
    normalize: Annotated[bool, typer.Option(help="0-1 scores (sigmoid) instead of logits.")] = False,
    min_score: Annotated[float | None, typer.Option(help="Drop documents scoring below this.")] = None,
    max_length: Annotated[int | None, typer.Option(min=2, help="Tokens per (query, document) pair.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Most pairs per forward pass (default: 32 CPU, 128 CUDA).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rank the documents of FILE against a query with a cross-encoder."""
    _setup(verbose)
    from crossrank import Reranker

    try:
        texts, ids = _read_documents(file)
        reranker = Reranker(model, max_length=max_length, batch_size=batch_size)
        started = time.perf_counter()
        ranking = reranker.rank(
            query, texts, None if all_documents else top_n, normalize=normalize, min_score=min_score
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
    except (CrossrankError, FileNotFoundError, ValueError) as err:
        raise _fail(err) from err

    if json_output:
        results = [{**hit.to_dict(), "id": ids[hit.index]} for hit in ranking]
        payload = {
            "query": query,
            "model": reranker.model_name,
            "num_candidates": ranking.num_candidates,
            "num_below_min_score": ranking.num_below_min_score,
            "results": results,
        }
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    table = Table(
        title=(
            f"{len(ranking)} of {ranking.num_candidates} documents, "
            f"{elapsed_ms:.0f} ms, {reranker.model_name}"
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
            str(position), f"{hit.score:.4f}", str(hit.index), ids[hit.index] or "", _snippet(hit.text)
        )
    console.print(table)
    if ranking.num_below_min_score:
        console.print(
            f"[yellow]{ranking.num_below_min_score} document(s) scored below --min-score {min_score}[/]"
        )


def main() -> None:
    """Entry point of the ``crossrank`` command."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


def _reference_scorer(model: str, device: str, max_length: int | None, batch_size: int):
    """sentence-transformers' CrossEncoder on the same model, returning raw logits."""
    import torch
    from sentence_transformers import CrossEncoder

    from crossrank.model_source import resolve_model_source

    source = resolve_model_source(model)
    cross_encoder = CrossEncoder(
        source.location,
        device=device,
        max_length=max_length,
        local_files_only=source.local_files_only,
        activation_fn=torch.nn.Identity(),
    )

    def score(query: str, texts: list[str]) -> list[float]:
        return cross_encoder.predict([(query, text) for text in texts], batch_size=batch_size).tolist()

    return score


@app.command("eval")
def eval_command(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="trec-dl-2019, trec-dl-2020, trec-dl-2021, beir-scifact, or a folder."
        ),
    ] = "trec-dl-2019",
    model: Annotated[
        str,
        typer.Option("--model", "-m", envvar="CROSSRANK_MODEL", help="Cross-encoder hub id or directory."),
    ] = DEFAULT_MODEL,
    backend: Annotated[str, typer.Option(help="crossrank backend: torch or onnx.")] = "torch",
    quantize: Annotated[str | None, typer.Option(help="With --backend onnx: int8.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    precision: Annotated[
        str, typer.Option(help="torch: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="Threads per forward pass (default: the cores).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(min=8, help="Tokens per (query, document) pair.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Most pairs per forward pass (default: 32 CPU, 128 CUDA, 4 int8)."),
    ] = None,
    long_documents: Annotated[str, typer.Option(help="truncate or windows.")] = "truncate",
    stride: Annotated[int | None, typer.Option(min=1, help="Window overlap in tokens.")] = None,
    depth: Annotated[list[int] | None, typer.Option(help="Stage-1 depth(s) to rerank; repeatable.")] = None,
    stage1: Annotated[str, typer.Option(help="BEIR stage 1: bm25 or bi-encoder.")] = "bm25",
    compare_st: Annotated[
        bool, typer.Option("--compare-st", help="Also score with sentence-transformers' CrossEncoder.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="CROSSRANK_DATA_DIR", help="Where named datasets live.")
    ] = (None),
    max_queries: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N queries only.")] = None,
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON ('-': stdout).")
    ] = (None),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rerank a TREC DL or BEIR stage-1 run and report nDCG@10, MRR@10, R@3, nDCG@3 against stage 1."""
    _setup(verbose)
    from dataclasses import replace

    from crossrank import Reranker
    from crossrank.evaluation import evaluate, load_dataset

    depths = sorted(set(depth or [100, 20]), reverse=True)
    try:
        with err_console.status("loading the dataset") as status:
            data = load_dataset(
                dataset,
                data_dir=data_dir,
                stage1=stage1,
                depth=depths[0],
                progress=status.update,  # type: ignore[arg-type]
            )
        if max_queries is not None:
            kept = list(data.candidates)[:max_queries]
            data = replace(data, candidates={qid: data.candidates[qid] for qid in kept})
        reranker = Reranker(
            model,
            backend=backend,
            quantize=quantize,  # type: ignore[arg-type]
            device=device,
            precision=precision,  # type: ignore[arg-type]
            threads=threads,
            max_length=max_length,
            batch_size=batch_size,
            long_documents=long_documents,
            stride=stride,  # type: ignore[arg-type]
        )
        scorers = {"crossrank": reranker.score}
        if compare_st:
            scorers["sentence-transformers"] = _reference_scorer(
                model, reranker.device, max_length, reranker.batch_size
            )
        with _progress_bar() as bar:

            def progress(name: str):
                task = bar.add_task(f"scoring with {name}", total=len(data.candidates))
                return lambda: bar.advance(task)

            report = evaluate(data, scorers, depths=depths, progress=progress)
    except (CrossrankError, FileNotFoundError, ValueError) as err:
        raise _fail(err) from err

    report.settings = {
        "model": model,
        "backend": reranker.backend,
        "quantize": quantize,
        "device": reranker.device,
        "precision": precision,
        "threads": threads,
        "max_length": reranker.max_length,
        "long_documents": long_documents,
        "stride": stride,
        "batch_size": reranker.batch_size,
    }
    _print_report(report)
    if json_output is not None:
        text = json.dumps(report.to_dict(), indent=2)
        if str(json_output) == "-":
            typer.echo(text)
        else:
            json_output.write_text(text + "\n", encoding="utf-8")


def _print_report(report) -> None:
    settings = report.settings
    console.print(
        f"[bold]{report.dataset}[/]: {report.num_queries} queries, stage 1 = {report.stage1}, "
        f"model = {settings['model']} ({settings['backend']}"
        f"{' ' + settings['quantize'] if settings.get('quantize') else ''}, {settings['device']}, "
        f"max_length {settings['max_length']}, {settings['long_documents']})"
    )
    for depth, systems in report.metrics.items():
        table = Table(title=f"rerank stage-1 top {depth}", title_justify="left")
        table.add_column("system")
        names = list(next(iter(systems.values())))
        for name in names:
            table.add_column(name, justify="right")
        table.add_column("pairs/s", justify="right")
        baseline = systems["stage 1"]
        for system, values in systems.items():
            cells = []
            for name in names:
                delta = values[name] - baseline[name]
                cells.append(f"{values[name]:.4f}" + ("" if system == "stage 1" else f" ({delta:+.4f})"))
            speed = report.timings.get(system, {}).get("pairs_per_second")
            table.add_row(
                system if system != "stage 1" else f"stage 1 ({report.stage1})",
                *cells,
                "" if speed is None else f"{speed:.0f}",
            )
        console.print(table)
