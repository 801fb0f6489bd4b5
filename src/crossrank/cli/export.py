"""``crossrank export``: a self-contained ONNX folder for installs without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from crossrank.cli.console import console, emit, errors_reported, note, setup_logging
from crossrank.cli.options import JsonFlag, Verbose

__all__ = ["export_command"]


def export_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Reranker: hub id or local folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to create for the export.")],
    recipe: Annotated[
        list[str] | None,
        typer.Option(
            "--recipe",
            help="Which files: fp32, int8, int8-static; repeatable. Default: all the model has "
            "(an LLM reranker: fp32 and int8).",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output.")] = False,
    family: Annotated[
        str | None,
        typer.Option(
            "--family", help="cross-encoder, qwen3-reranker or mxbai-rerank-v2; default: from the model."
        ),
    ] = None,
    local_files_only: Annotated[
        bool, typer.Option("--local-files-only", help="Never contact the hub.")
    ] = False,
    json_output: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Export MODEL to ONNX files (fp32, int8, int8-static) that run without torch.

    Needs torch here (pip install 'crossrank[torch]'); the folder it writes loads anywhere with
    ONNX Runtime alone: Reranker(DIR, backend="onnx"), crossrank serve --model DIR --backend onnx.
    """
    setup_logging(verbose)
    from crossrank.export import export_model

    with errors_reported():
        result = export_model(
            model,
            output,
            recipes=tuple(recipe) if recipe else None,  # None: every recipe the model's family has
            overwrite=overwrite,
            local_files_only=local_files_only,
            family=family,
            progress=lambda name: note(f"[bold]export[/]  {name}", json_output=json_output),
        )
    payload = {
        "folder": str(result.folder),
        "files": result.files,
        "megabytes": {name: round(size / 2**20, 1) for name, size in result.sizes.items()},
    }
    emit(payload, json_output=json_output, output=None)
    if not json_output:
        for name, file in result.files.items():
            console.print(f"{name:12s} {escape(str(result.folder / file))}  {payload['megabytes'][name]} MiB")
