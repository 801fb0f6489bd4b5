"""``crossrank eval``: rerank a TREC DL or BEIR stage-1 run and report the metrics against stage 1.

:func:`print_report` draws an :class:`~crossrank.evaluation.EvalReport` as tables; ``crossrank
finetune`` prints its before/after reports with it too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from crossrank.cli.console import Progress, console, emit, err_console, errors_reported, setup_logging
from crossrank.cli.options import JsonFlag, OutputPath, Verbose, build_reranker, reranker_options
from crossrank.config import OPTION_GROUPS, RerankerConfig

__all__ = ["eval_command", "print_report", "reference_scorer", "selections"]


def reference_scorer(
    config: RerankerConfig, device: str, max_length: int, batch_size: int
) -> Callable[[str, list[str]], list[float]]:
    """sentence-transformers' CrossEncoder on the same model, returning raw logits."""
    import torch
    from sentence_transformers import CrossEncoder

    from crossrank.model_source import resolve_model_source

    source = resolve_model_source(config.model, local_files_only=config.local_files_only)
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


@reranker_options("model", "engine", "selection")
def eval_command(
    config: RerankerConfig,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="trec-dl-2019, trec-dl-2020, trec-dl-2021, beir-scifact, or a folder."
        ),
    ] = "trec-dl-2019",
    depth: Annotated[
        list[int] | None, typer.Option(min=1, help="Stage-1 depth(s) to rerank; repeatable.")
    ] = None,
    stage1: Annotated[Literal["bm25", "bi-encoder"], typer.Option(help="BEIR stage 1.")] = "bm25",
    compare_st: Annotated[
        bool, typer.Option("--compare-st", help="Also score with sentence-transformers' CrossEncoder.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="CROSSRANK_DATA_DIR", help="Where named datasets live.")
    ] = None,
    max_queries: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N queries only.")] = None,
    selection: Annotated[
        bool,
        typer.Option(
            help="Also report what reaches the LLM with fusion (rrf, weighted) and dedupe on the "
            "reranker's scores: nDCG, dup@3 and distinct rel@3 next to the plain reranker."
        ),
    ] = True,
    json_output: JsonFlag = False,
    output: OutputPath = None,
    verbose: Verbose = False,
) -> None:
    """Rerank a TREC DL or BEIR stage-1 run and report nDCG@10, MRR@10, R@3, nDCG@3 against stage 1."""
    setup_logging(verbose)
    from dataclasses import replace

    from crossrank.evaluation import evaluate, load_dataset, measures

    depths = sorted(set(depth or [100, 20]), reverse=True)
    with errors_reported():
        measures(1)  # fails with the install hint before any loading when the eval extra is missing
        with err_console.status("loading the dataset") as status:
            data = load_dataset(
                dataset,
                data_dir=data_dir,
                stage1=stage1,
                depth=depths[0],
                progress=lambda message: status.update(escape(message)),
            )
        if max_queries is not None:
            kept = list(data.candidates)[:max_queries]
            data = replace(data, candidates={qid: data.candidates[qid] for qid in kept})
        reranker = build_reranker(config)
        scorers: dict[str, Any] = {"crossrank": reranker}
        if compare_st:
            scorers["sentence-transformers"] = reference_scorer(
                config, reranker.device, reranker.max_length, reranker.batch_size
            )
        with Progress() as bar:

            def progress(name: str) -> Callable[[], None]:
                task = bar.add_task(f"scoring with {name}", total=len(data.candidates))
                done = iter(range(1, len(data.candidates) + 1))
                return lambda: bar.update(task, completed=next(done))

            report = evaluate(
                data,
                scorers,
                depths=depths,
                progress=progress,
                selections=selections(config) if selection else None,
            )

    settings = reranker.to_config().model_dump(exclude=set(OPTION_GROUPS["ranking"]))
    report.settings = settings
    emit(report.to_dict(), json_output=json_output, output=output)
    if not json_output:
        print_report(report)


def selections(config: RerankerConfig) -> dict[str, Any]:
    """The variants ``crossrank eval`` reports: two fusions and dedupe, as the config sets them up."""
    from crossrank.evaluation.evaluate import NEAR_DUPLICATE
    from crossrank.selection import SelectOptions

    threshold = config.dedupe or NEAR_DUPLICATE
    return {
        f"+ fusion rrf k={config.fusion_k}": SelectOptions(fusion="rrf", fusion_k=config.fusion_k),
        f"+ fusion weighted w={config.fusion_weight}": SelectOptions(
            fusion="weighted", fusion_weight=config.fusion_weight
        ),
        f"+ dedupe {config.dedupe_similarity}>={threshold}": SelectOptions(
            dedupe=threshold, dedupe_similarity=config.dedupe_similarity
        ),
    }


def print_report(report: Any) -> None:
    """An evaluation report as tables on stdout: one per depth, each system against stage 1."""
    settings = report.settings
    console.print(
        f"[bold]{escape(str(report.dataset))}[/]: {report.num_queries} queries, stage 1 = {report.stage1}, "
        + escape(
            f"model = {settings['model']} ({settings['backend']}"
            f"{' ' + settings['quantize'] if settings.get('quantize') else ''}, {settings['device']}, "
            f"max_length {settings['max_length']}, {settings['long_documents']})"
        )
    )
    for depth, systems in report.metrics.items():
        table = Table(title=f"rerank stage-1 top {depth}", title_justify="left")
        table.add_column("system")
        names = list(next(iter(systems.values())))
        for name in names:
            table.add_column(name, justify="right")
        table.add_column("cost", justify="right")
        baseline = systems["stage 1"]
        for system, values in systems.items():
            cells = []
            for name in names:
                delta = values[name] - baseline[name]
                cells.append(f"{values[name]:.4f}" + ("" if system == "stage 1" else f" ({delta:+.4f})"))
            table.add_row(
                escape(system if system != "stage 1" else f"stage 1 ({report.stage1})"),
                *cells,
                _cost(report.timings.get(system, {})),
            )
        console.print(table)
    if any("ms_per_query" in timing for timing in report.timings.values()):
        from crossrank.evaluation.evaluate import NEAR_DUPLICATE

        console.print(
            f"[dim]dup@3: share of queries whose top 3 holds two chunks with word-set Jaccard >= "
            f"{NEAR_DUPLICATE}; distinct rel@3: relevant chunks per query in the top 3 that repeat none "
            "above. '+' rows post-process the first reranker's scores; their cost is per query, and its "
            "share of reranking that query's shallowest depth.[/]"
        )


def _cost(timing: dict[str, float]) -> str:
    if "pairs_per_second" in timing:
        return f"{timing['pairs_per_second']:.0f} pairs/s"
    if "ms_per_query" in timing:
        return f"{timing['ms_per_query']:.2f} ms/q ({timing['share_of_rerank']:.1%})"
    return ""
