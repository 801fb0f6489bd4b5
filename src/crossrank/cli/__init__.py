"""The ``crossrank`` command line: demo, rank, eval, finetune, serve, rerank-batch and export.

Every subcommand that loads a reranker takes the Reranker's options as ``--options`` built from
:class:`crossrank.RerankerConfig` (:func:`~crossrank.cli.options.reranker_options`): the same names,
types, choices and help everywhere, each also read from its ``CROSSRANK_*`` variable and from
``--config FILE``; ``finetune`` builds its options from :class:`crossrank.finetune.FinetuneConfig`
the same way. Output follows one rule: ``--json`` prints JSON and nothing else on stdout (notes,
progress and errors go to stderr), ``--output PATH`` writes the JSON to a file.

The package: ``options`` (options generated from settings classes, help shown as written),
``console`` (consoles, logging, progress, results and errors), ``interrupt`` (bounded Ctrl-C) and
one module per command.
"""

from __future__ import annotations

import os

import typer

from crossrank.cli import interrupt
from crossrank.cli.demo import demo
from crossrank.cli.eval import eval_command
from crossrank.cli.export import export_command
from crossrank.cli.finetune import finetune_command
from crossrank.cli.options import Command, Group
from crossrank.cli.rank import rank
from crossrank.cli.rerank_batch import rerank_batch_command
from crossrank.cli.serve import serve

__all__ = ["app", "main"]

app = typer.Typer(
    cls=Group,
    help="Cross-encoder reranking for RAG: retrieve ~20 chunks fast, keep the best few.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for name, command in (
    ("demo", demo),
    ("rank", rank),
    ("eval", eval_command),
    ("finetune", finetune_command),
    ("serve", serve),
    ("rerank-batch", rerank_batch_command),
    ("export", export_command),
):
    app.command(name, cls=Command)(command)


def main() -> None:
    """Entry point of the ``crossrank`` command."""
    interrupt.mark_as_command()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
