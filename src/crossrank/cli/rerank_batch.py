"""``crossrank rerank-batch``: rerank every candidate set of a file on Ray Data; resumable."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crossrank.cli import interrupt
from crossrank.cli.console import Progress, console, err_console, errors_reported, fail, setup_logging
from crossrank.cli.options import JsonFlag, Verbose, reranker_options
from crossrank.config import RerankerConfig

__all__ = ["BATCH_RAY_OPTIONS", "rerank_batch_command"]

#: The Ray settings ``rerank-batch`` takes as options (the rest come from YAML ``ray:`` or CROSSRANK_RAY_*).
BATCH_RAY_OPTIONS = ("address", "local_cpus", "num_cpus", "num_gpus", "actors", "shard_pairs")


@reranker_options("model", "engine", ray=BATCH_RAY_OPTIONS)
def rerank_batch_command(
    config: RerankerConfig,
    ray_config: Any,
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="JSONL or Parquet: {qid, query, candidates: [{id, text}]} per record, or {qid, query, id, "
            "text} (a query's rows contiguous).",
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT",
            help=".jsonl or .parquet: {qid, id, rank, score} per ranked pair; a TREC run "
            "is written next to it.",
        ),
    ],
    top_n: Annotated[
        int | None, typer.Option("--top-n", "-n", min=1, help="Keep each query's best N. Default: all.")
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Where to write the TREC run. Default: OUTPUT with .run.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace OUTPUT, or a partial run of other inputs or settings."),
    ] = False,
    json_output: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Rerank every candidate set of INPUT on Ray Data (an actor pool of rerankers); resumable.

    An interrupted run resumes where it stopped when started again with the same arguments (the
    finished shards are kept in OUTPUT.parts/). Bad records are reported in OUTPUT.bad.jsonl with
    file, line and reason, and make the exit code 1; the others are ranked and written.
    """
    setup_logging(verbose)
    with errors_reported():
        from crossrank.ray.runtime import ray_cluster, require_ray

        require_ray()
        from crossrank.ray.batch import rerank_batch

        try:
            with (
                interrupt.bounded_interrupt(),
                Progress() as bar,
                ray_cluster(ray_config, logging_level=logging.INFO if verbose else logging.WARNING),
            ):
                task: list[int] = []

                def progress(done: int, total: int, pairs: int) -> None:
                    if not task:
                        task.append(bar.add_task(f"reranking {input_path.name} (shards)", total=total))
                    bar.update(task[0], completed=done)

                report = rerank_batch(
                    input_path,
                    output,
                    reranker=config,
                    ray_config=ray_config,
                    top_n=top_n,
                    run=run,
                    overwrite=overwrite,
                    progress=progress,
                )
        except KeyboardInterrupt:
            raise typer.Exit(130) from None  # the shell's code for Ctrl-C, whatever typer's version
    payload = report.to_dict()
    if json_output:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        table = Table(title=escape(f"rerank-batch {input_path.name} -> {output.name}"), title_justify="left")
        table.add_column("")
        table.add_column("", justify="right")
        resumed = f" ({report.shards_resumed} resumed)" if report.shards_resumed else ""
        for name, value in (
            ("queries ranked", f"{report.queries:,}"),
            ("pairs written", f"{report.pairs:,}"),
            ("pairs scored by this run", f"{report.pairs_scored:,}"),
            ("pairs/s (this run)", f"{report.pairs_per_second:,.0f}"),
            ("shards", f"{report.shards}{resumed}"),
            ("actors", str(report.actors)),
            ("bad records", str(report.bad_records)),
            ("output", report.output),
            ("TREC run", report.run),
        ):
            table.add_row(name, escape(str(value)))
        console.print(table)
    if report.bad_records:
        for item in report.bad_examples:
            err_console.print(
                f"[red]bad record[/] {escape(str(item['file']))}:{item['line']}: {escape(item['reason'])}"
            )
        raise fail(
            f"{report.bad_records} bad record(s), listed in {report.bad_report}; every other record was "
            "ranked and written"
        )
