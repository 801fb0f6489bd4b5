"""``crossrank finetune``: fine-tune a cross-encoder; the options are :class:`FinetuneConfig`'s fields."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from crossrank.cli.console import Progress, console, emit, errors_reported, setup_logging
from crossrank.cli.eval import print_report
from crossrank.cli.options import JsonFlag, SettingsOptions, Verbose, with_settings
from crossrank.finetune.config import FinetuneConfig

__all__ = ["FINETUNE_FLAGS", "finetune_command"]

#: The flags of the fields not spelled ``--field-name`` (``--field-name/--no-field-name`` for a bool).
FINETUNE_FLAGS: dict[str, tuple[str, ...]] = {
    "also_evaluate": ("--also-eval",),
    "num_negatives": ("--negatives",),
    "max_train_queries": ("--max-queries",),
    "bf16": ("--bf16/--fp32",),
    "resume": ("--resume",),
    "overwrite": ("--overwrite",),
}


@with_settings(
    SettingsOptions(
        FinetuneConfig,
        tuple(FinetuneConfig.model_fields),
        "config",
        panel="Fine-tuning",
        decls=FINETUNE_FLAGS,
    ),
    config_help="YAML file whose 'finetune' section holds these settings; options and env vars override it.",
    config_panel="Fine-tuning",
)
def finetune_command(
    config: FinetuneConfig,
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            "-d",
            help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv, optional qrels/dev.tsv) "
            "or JSONL of {query, positives: [text], negatives?: [text]}.",
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="The base cross-encoder: hub id or folder.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder to create for the fine-tuned model (and finetune.json)."),
    ],
    json_output: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Fine-tune a cross-encoder on your documents and questions; report held-out metrics before and after.

    Hard negatives come from stage 1 (BM25 by default); training uses sentence-transformers'
    CrossEncoderTrainer; --output appears only when the model and its card are complete. Needs
    pip install 'crossrank[train]'. See docs/finetuning.md.
    """
    setup_logging(verbose)
    from crossrank.finetune import finetune

    with errors_reported(), Progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = finetune(dataset, model, output, config, progress=progress)
    emit(result.to_dict(), json_output=json_output, output=None)
    if json_output:
        return
    console.print(
        f"[bold]{escape(str(output))}[/]: {result.train_queries} queries ({result.train_pairs} pairs), "
        f"{result.steps} steps, "
        f"{result.epochs:.2f} epochs, {result.train_seconds / 60:.1f} min"
        + (" [yellow](stopped by --max-minutes)[/]" if result.stopped_by_budget else ""),
        highlight=False,
    )
    if result.left_out:
        console.print(
            f"[yellow]{len(result.left_out)} training queries share their text with a held-out query and "
            f"were left out of training[/]: {escape(', '.join(result.left_out[:10]))}",
            highlight=False,
        )
    for report in result.reports.values():
        print_report(report)
