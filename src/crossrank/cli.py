"""The ``crossrank`` command line: ``demo``, ``rank``, ``eval``, ``finetune``, ``serve`` and ``rerank-batch``.

Every subcommand takes the Reranker's options as ``--options`` built from
:class:`crossrank.RerankerConfig` (:func:`reranker_options`): the same names, types, choices and
help everywhere, each also read from its ``CROSSRANK_*`` variable and from ``--config FILE``.
Output follows one rule: ``--json`` prints JSON and nothing else on stdout (notes, progress and
errors go to stderr), ``--output PATH`` writes the JSON to a file.

This is the one place in crossrank that configures logging and progress bars; the library
itself only logs through ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossrank.backends import backend_names
from crossrank.config import DEFAULT_MODEL, OPTION_GROUPS, RerankerConfig, describe_validation_error, env_name
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
#: Short flags of the options every subcommand shares.
_SHORT_FLAGS = {"model": "-m", "top_n": "-n"}
_PANELS = {"model": "Model", "engine": "Engine", "ranking": "Ranking", "selection": "Selection"}


# --------------------------------------------------------------------------- options from the config


def _option_type(annotation: Any) -> Any:
    """The CLI type of a config field: its type without ``None`` (not given on the CLI = default)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else annotation
    return annotation


def _config_parameter(
    settings: type[BaseSettings], name: str, panel: str, env: str, dest: str | None = None
) -> inspect.Parameter:
    """A command-line option for field ``name`` of ``settings``: its type, bounds, help and env name."""
    field = settings.model_fields[name]
    kind = _option_type(field.annotation)
    constraints = [*field.metadata]
    if typing.get_origin(kind) is Annotated:  # PositiveInt: Annotated[int, Gt(0)]
        kind, *more = typing.get_args(kind)
        constraints += more
    if kind is SecretStr:
        kind = str
    if settings is RerankerConfig and name == "backend":  # any registered engine, shown as choices
        kind = Literal[backend_names()]  # type: ignore[valid-type]
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}" if kind is bool else flag]
    if settings is RerankerConfig and name in _SHORT_FLAGS:
        decls.append(_SHORT_FLAGS[name])
    # An int above n is at least n + 1; a float above n is left to the config (click has no open bound).
    minimum = next((m.gt + 1 for m in constraints if isinstance(m, annotated_types.Gt) and kind is int), None)
    minimum = next((m.ge for m in constraints if isinstance(m, annotated_types.Ge)), minimum)
    maximum = next((m.le for m in constraints if isinstance(m, annotated_types.Le)), None)
    description = field.description or ""
    if field.default is not None and "default" not in description.lower():
        shown = str(field.default).lower() if isinstance(field.default, bool) else field.default
        description += f" Default: {shown}."
    option = typer.Option(
        *decls,
        help=f"{description} Env: {env}.",
        min=minimum,
        max=maximum,
        rich_help_panel=panel,
        show_default=False,
    )
    return inspect.Parameter(
        dest or name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


_CONFIG_FILE_PARAMETERS = [
    inspect.Parameter(
        "config_file",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="YAML file of Reranker settings (a RerankerConfig); options and env vars override it.",
                rich_help_panel="Model",
            ),
        ],
    ),
    inspect.Parameter(
        "config_section",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                help="Top-level key of --config holding the settings, e.g. reranker.", rich_help_panel="Model"
            ),
        ],
    ),
]


def reranker_options(
    *groups: str, server: bool = False, ray: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the config fields of ``groups`` as options; it receives ``config: RerankerConfig``
    (and, with ``server=True``, the :class:`~crossrank.server.ServerConfig` fields and ``server_config``;
    with ``ray``, those fields of :class:`~crossrank.ray.RayConfig` and ``ray_config``).
    Fields named in ``exclude`` are left off the command line (their config sources still apply).

    Options not given on the command line are left to the configs' own sources: ``CROSSRANK_*``
    variables, then ``--config FILE``, then the defaults. A bad value is reported like any other
    error (exit code 1, no traceback).
    """
    names = [name for group in groups for name in OPTION_GROUPS[group] if name not in exclude]
    server_settings = _server_settings() if server else None
    server_names = list(server_settings.model_fields) if server_settings else []
    from crossrank.ray.config import RAY_ENV_PREFIX, RayConfig  # imports no Ray

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name not in ("config", "server_config", "ray_config")
        ]
        added = _CONFIG_FILE_PARAMETERS + [
            _config_parameter(RerankerConfig, name, _PANELS[group], env_name(name))
            for group in groups
            for name in OPTION_GROUPS[group]
            if name not in exclude
        ]
        if server_settings is not None:
            from crossrank.server.config import SERVER_ENV_PREFIX

            added += [
                _config_parameter(
                    server_settings, name, "Server", f"{SERVER_ENV_PREFIX}{name.upper()}", f"server_{name}"
                )
                for name in server_names
            ]
        added += [
            _config_parameter(RayConfig, name, "Ray", f"{RAY_ENV_PREFIX}{name.upper()}", f"ray_{name}")
            for name in ray
        ]

        @functools.wraps(command)
        def wrapper(**values: Any) -> None:
            config_file, section = values.pop("config_file"), values.pop("config_section")
            given = {name: value for name in names if (value := values.pop(name)) is not None}
            server_given = {
                name: value for name in server_names if (value := values.pop(f"server_{name}")) is not None
            }
            ray_given = {name: value for name in ray if (value := values.pop(f"ray_{name}")) is not None}
            try:
                if config_file is not None:
                    config = RerankerConfig.from_yaml(config_file, section=section, **given)
                else:
                    config = RerankerConfig(**given)
                if server_settings is not None:
                    values["server_config"] = (
                        server_settings.from_yaml(config_file, **server_given)
                        if config_file is not None
                        else server_settings(**server_given)
                    )
                if ray:
                    values["ray_config"] = (
                        RayConfig.from_yaml(config_file, **ray_given)
                        if config_file is not None
                        else RayConfig(**ray_given)
                    )
            except ValidationError as err:
                raise _fail(describe_validation_error(err)) from None
            except (CrossrankError, FileNotFoundError) as err:
                raise _fail(err) from None
            command(config=config, **values)

        parameters = own + added
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def _server_settings() -> Any:
    """The server's settings class, or a clear error when the ``server`` extra is missing."""
    try:
        from crossrank.server.config import ServerConfig
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("crossrank serve needs the server extra: pip install 'crossrank[server]'") from err
    return ServerConfig


# --------------------------------------------------------------------------- output


def _setup(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )
    # Model-loading progress bars from transformers/hub are noise on a CLI screen.
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


class _Progress:
    """A progress bar on stderr; where stderr is not a terminal (a log, CI), a line every ~10%."""

    def __init__(self) -> None:
        self._bar = None
        if err_console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
        self._tasks: dict[int, tuple[str, int, int, float]] = {}

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add_task(self, description: str, total: int) -> int:
        if self._bar is not None:
            return self._bar.add_task(description, total=total)
        task = len(self._tasks)
        self._tasks[task] = (description, total, -1, time.perf_counter())
        return task

    def update(self, task: int, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(task, completed=completed)  # type: ignore[arg-type]
            return
        description, total, last_tenth, started = self._tasks[task]
        tenth = completed * 10 // max(total, 1)
        if tenth > last_tenth:
            self._tasks[task] = (description, total, tenth, started)
            elapsed = time.perf_counter() - started
            err_console.print(f"{description}: {completed}/{total} ({elapsed:.0f} s)", highlight=False)


def _fail(err: Exception | str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
    return typer.Exit(code=1)


@contextmanager
def _errors_reported() -> Iterator[None]:
    """Errors a user can fix end the command with a one-line message and exit code 1, no traceback."""
    try:
        yield
    except (CrossrankError, FileNotFoundError, ValueError) as err:
        raise _fail(err) from None


#: Set by :func:`main`: only the ``crossrank`` process itself may be ended with ``os._exit``, never
#: a host that runs a command in-process (typer's CliRunner, a notebook).
_AS_COMMAND = False
#: Seconds a Ctrl-C leaves a Ray command to clean up (stop its actors, shut its local Ray down)
#: before the process exits anyway; finished shards are already on disk by then.
INTERRUPT_GRACE_S = 15.0


@contextmanager
def _bounded_interrupt(
    grace_s: float | None = None, *, hard_exit: Callable[[int], Any] = os._exit
) -> Iterator[None]:
    """Ctrl-C inside the block raises ``KeyboardInterrupt`` as usual, and arms a deadline: if the
    clean-up it starts (Ray Data's executor, ``ray.shutdown``) is still running ``grace_s`` seconds
    later (default :data:`INTERRUPT_GRACE_S`), or a second Ctrl-C comes, the process exits with 130
    at once. A local Ray started by the process goes with it (Ray ties its processes' fate to the
    driver's). Outside the main thread
    (where signal handlers can't be set), and outside the ``crossrank`` process unless a
    ``hard_exit`` is given, the block runs unguarded.
    """
    own_process = _AS_COMMAND or hard_exit is not os._exit
    if threading.current_thread() is not threading.main_thread() or not own_process:
        yield
        return
    grace = INTERRUPT_GRACE_S if grace_s is None else grace_s
    deadline: list[threading.Timer] = []

    def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
        if deadline:  # the second Ctrl-C: don't wait for the clean-up
            hard_exit(130)
            return
        err_console.print(
            f"[yellow]interrupted[/]: stopping (finished work is kept; Ctrl-C again, or {grace:g} s, "
            "to exit at once)"
        )
        timer = threading.Timer(grace, hard_exit, args=(130,))
        timer.daemon = True
        deadline.append(timer)
        timer.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        # None: the previous handler wasn't set from Python; the default is the closest to it.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        for timer in deadline:
            timer.cancel()


def _emit(payload: dict[str, Any], *, json_output: bool, output: Path | None) -> None:
    """``--output PATH`` writes the JSON there; ``--json`` prints it alone on stdout."""
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    if json_output:
        typer.echo(text)


def _note(message: str, *, json_output: bool) -> None:
    """A line for the reader: stdout with the tables, stderr when stdout is JSON."""
    (err_console if json_output else console).print(message, highlight=False)


def _snippet(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON, and nothing else, on stdout.")]
OutputPath = Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON to this file.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level (on stderr).")]


def _reranker(config: RerankerConfig) -> Any:
    """The Reranker of a command: the config as resolved (environment and file already read)."""
    from crossrank import Reranker

    return Reranker(**config.model_dump())


# --------------------------------------------------------------------------- demo


def _load_demo_reranker(config: RerankerConfig, fallback: str | None) -> tuple[Any, str | None]:
    """Load the demo's reranker; when the default hub model can't be had, use the fallback model."""
    try:
        return _reranker(config), None
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
        return _reranker(config.model_copy(update={"model": fallback})), note


@app.command()
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
    _setup(verbose)
    from crossrank.demo import load_corpus
    from crossrank.retrieval import BiEncoderRetriever

    with _errors_reported():
        chunks = load_corpus(corpus)
        _note(f"[bold]query[/]   {query}", json_output=json_output)
        _note(
            f"[bold]corpus[/]  {len(chunks)} chunks from {corpus or 'the bundled demo corpus'}",
            json_output=json_output,
        )
        # The reranker loads first so a bad --model fails before the corpus is embedded.
        started = time.perf_counter()
        reranker, note = _load_demo_reranker(config, fallback_model)
        load_s = time.perf_counter() - started
        if note:
            _note(f"[yellow]note[/]    {note}", json_output=json_output)
        with _Progress() as progress:
            task = progress.add_task("stage 1: embedding the corpus", total=len(chunks))
            retriever = BiEncoderRetriever(
                chunks,
                model=retriever_model,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        if retriever.note:
            _note(f"[yellow]note[/]    {retriever.note}", json_output=json_output)
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

    _note(
        f"[bold]stage 1[/] bi-encoder {retriever_model}: "
        f"top {len(hits)} of {len(chunks)} in {stage1_ms:.1f} ms "
        f"[dim](corpus embedded once in {retriever.index_seconds:.2f} s, model loaded in "
        f"{retriever.load_seconds:.2f} s)[/]",
        json_output=json_output,
    )
    _note(
        f"[bold]stage 2[/] cross-encoder {reranker.model_name}: reranked {len(hits)} in {stage2_ms:.1f} ms "
        f"[dim](first call {first_ms:.0f} ms, model loaded in {load_s:.2f} s, {reranker.device})[/]",
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
    _emit(payload, json_output=json_output, output=output)
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
            str(row["rank"]), f"{row['score']:.3f}", str(row["stage1_rank"]), row["id"], _snippet(row["text"])
        )
    console.print(table)


# --------------------------------------------------------------------------- rank


@app.command()
@reranker_options("model", "engine", "ranking", "selection")
def rank(
    config: RerankerConfig,
    file: Annotated[
        Path,
        typer.Argument(
            help="Text file, one document per line (blank lines skipped), or JSONL with "
            "a 'text' field (and optional '_id'/'id', 'title'); '-' reads stdin."
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
    _setup(verbose)
    from crossrank.corpus import read_documents

    with _errors_reported():
        documents = read_documents(sys.stdin if str(file) == "-" else file)
        reranker = _reranker(config)
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
    _emit(payload, json_output=json_output, output=output)
    if json_output:
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
            str(position), f"{hit.score:.4f}", str(hit.index), documents[hit.index].id, _snippet(hit.text)
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


# --------------------------------------------------------------------------- eval


def _reference_scorer(config: RerankerConfig, device: str, max_length: int, batch_size: int):
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


@app.command("eval")
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
    _setup(verbose)
    from dataclasses import replace

    from crossrank.evaluation import evaluate, load_dataset, measures

    depths = sorted(set(depth or [100, 20]), reverse=True)
    with _errors_reported():
        measures(1)  # fails with the install hint before any loading when the eval extra is missing
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
        reranker = _reranker(config)
        scorers: dict[str, Any] = {"crossrank": reranker}
        if compare_st:
            scorers["sentence-transformers"] = _reference_scorer(
                config, reranker.device, reranker.max_length, reranker.batch_size
            )
        with _Progress() as bar:

            def progress(name: str) -> Callable[[], None]:
                task = bar.add_task(f"scoring with {name}", total=len(data.candidates))
                done = iter(range(1, len(data.candidates) + 1))
                return lambda: bar.update(task, completed=next(done))

            report = evaluate(
                data,
                scorers,
                depths=depths,
                progress=progress,
                selections=_selections(config) if selection else None,
            )

    settings = reranker.to_config().model_dump(exclude=set(OPTION_GROUPS["ranking"]))
    report.settings = settings
    _emit(report.to_dict(), json_output=json_output, output=output)
    if not json_output:
        _print_report(report)


def _selections(config: RerankerConfig) -> dict[str, Any]:
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


def _print_report(report: Any) -> None:
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
        table.add_column("cost", justify="right")
        baseline = systems["stage 1"]
        for system, values in systems.items():
            cells = []
            for name in names:
                delta = values[name] - baseline[name]
                cells.append(f"{values[name]:.4f}" + ("" if system == "stage 1" else f" ({delta:+.4f})"))
            table.add_row(
                system if system != "stage 1" else f"stage 1 ({report.stage1})",
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


# --------------------------------------------------------------------------- finetune


def _trained(name: str) -> Any:
    """The default of :func:`crossrank.finetune.finetune`'s ``name``: declared there, only read here."""
    function = importlib.import_module("crossrank.finetune").finetune
    return inspect.signature(function).parameters[name].default


@app.command()
def finetune(
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
    eval_dataset: Annotated[
        str | None,
        typer.Option(help="Held-out set (folder or named dataset). Default: --dataset's qrels/test.tsv."),
    ] = None,
    eval_split: Annotated[str, typer.Option(help="BEIR qrels file of the held-out set.")] = _trained(
        "eval_split"
    ),
    also_eval: Annotated[
        list[str] | None,
        typer.Option(help="Also measure on this dataset before/after, e.g. trec-dl-2019; repeatable."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="CROSSRANK_DATA_DIR", help="Where named datasets live.")
    ] = None,
    stage1: Annotated[
        Literal["bm25", "bi-encoder"], typer.Option(help="Retriever to mine hard negatives and rerank from.")
    ] = _trained("stage1"),
    negatives: Annotated[int, typer.Option(min=0, help="Hard negatives per training query.")] = _trained(
        "num_negatives"
    ),
    epochs: Annotated[float, typer.Option(min=0.01, help="Passes over the training pairs.")] = _trained(
        "epochs"
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs per optimizer step.")] = _trained(
        "batch_size"
    ),
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")] = _trained(
        "learning_rate"
    ),
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per pair in training.")] = _trained(
        "max_length"
    ),
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--fp32",
            help="bfloat16 mixed-precision training: faster on GPUs and CPUs with AVX512-BF16 or AMX.",
        ),
    ] = _trained("bf16"),
    max_minutes: Annotated[
        float | None, typer.Option(min=0.01, help="Time budget of training; the model so far is kept.")
    ] = None,
    max_queries: Annotated[int | None, typer.Option(min=1, help="Train on N random queries only.")] = None,
    eval_depth: Annotated[int, typer.Option(min=1, help="Stage-1 candidates reranked per query.")] = _trained(
        "eval_depth"
    ),
    seed: Annotated[int, typer.Option(help="Same seed, same data order and model.")] = _trained("seed"),
    device: Annotated[str | None, typer.Option(help="cpu, cuda... Default: CUDA when present.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output.")] = False,
    json_output: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Fine-tune a cross-encoder on your documents and questions; report held-out metrics before and after.

    Hard negatives come from stage 1 (BM25 by default); training uses sentence-transformers'
    CrossEncoderTrainer; --output appears only when the model and its card are complete. Needs
    pip install 'crossrank[train]'. See docs/finetuning.md.
    """
    _setup(verbose)
    from crossrank.finetune import finetune as run_finetune

    with _errors_reported(), _Progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = run_finetune(
            dataset,
            model,
            output,
            eval_dataset=eval_dataset,
            eval_split=eval_split,
            also_evaluate=also_eval or (),
            data_dir=data_dir,
            stage1=stage1,
            num_negatives=negatives,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            bf16=bf16,
            max_minutes=max_minutes,
            max_train_queries=max_queries,
            eval_depth=eval_depth,
            seed=seed,
            device=device,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
        )
    _emit(result.to_dict(), json_output=json_output, output=None)
    if json_output:
        return
    console.print(
        f"[bold]{output}[/]: {result.train_queries} queries ({result.train_pairs} pairs), "
        f"{result.steps} steps, "
        f"{result.epochs:.2f} epochs, {result.train_seconds / 60:.1f} min"
        + (" [yellow](stopped by --max-minutes)[/]" if result.stopped_by_budget else ""),
        highlight=False,
    )
    if result.left_out:
        console.print(
            f"[yellow]{len(result.left_out)} training queries share their text with a held-out query and "
            f"were left out of training[/]: {', '.join(result.left_out[:10])}",
            highlight=False,
        )
    for report in result.reports.values():
        _print_report(report)


# --------------------------------------------------------------------------- serve


#: The Ray settings each command takes as options (the rest come from YAML ``ray:`` or CROSSRANK_RAY_*).
_SERVE_RAY_OPTIONS = (
    "address",
    "local_cpus",
    "num_cpus",
    "num_gpus",
    "replicas",
    "min_replicas",
    "max_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
)
_BATCH_RAY_OPTIONS = ("address", "local_cpus", "num_cpus", "num_gpus", "actors", "shard_pairs")


@app.command()
@reranker_options(
    "model",
    "engine",
    "ranking",
    "selection",
    server=True,
    ray=_SERVE_RAY_OPTIONS,
    exclude=("top_n", "normalize", "min_score"),
)
def serve(
    config: RerankerConfig,
    server_config: Any,
    ray_config: Any,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Serve on Ray Serve: --replicas copies of the same app (local Ray, or --address).",
            rich_help_panel="Ray",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Serve the Cohere (v1, v2), Jina and TEI rerank APIs over HTTP, with pair-level dynamic batching.

    Point Open WebUI, Dify, RAGFlow, LiteLLM, Haystack's TEI ranker or any Cohere / TEI client at
    http://HOST:PORT (or http://HOST:PORT/v1): see docs/serving.md. With --ray, the same app runs as
    Ray Serve replicas behind Ray's proxy (docs/scaling.md).
    """
    _setup(verbose)
    try:
        import uvicorn

        from crossrank.server import create_app
    except ImportError as err:
        message = f"crossrank serve needs the server extra: pip install 'crossrank[server]' ({err})"
        raise _fail(message) from None
    if on_ray:
        _serve_on_ray(config, server_config, ray_config, verbose)
        return
    with _errors_reported():
        reranker = _reranker(config)
    from crossrank.server.app import batching_enabled

    application = create_app(reranker, server_config)
    err_console.print(
        f"[bold]crossrank serve[/] {reranker.model_name} ({reranker.backend}, {reranker.device}) on "
        f"http://{server_config.host}:{server_config.port}  "
        f"[dim](batching {'on' if batching_enabled(reranker, server_config) else 'off'}, "
        f"auth {'on' if server_config.api_key else 'off'})[/]",
        highlight=False,
    )
    uvicorn.run(
        application,
        host=server_config.host,
        port=server_config.port,
        log_level="info" if verbose else "warning",
        timeout_graceful_shutdown=server_config.graceful_shutdown_s,
        limit_concurrency=None,
    )


def _serve_on_ray(config: RerankerConfig, server_config: Any, ray_config: Any, verbose: bool) -> None:
    """``serve --ray``: deploy the app on Ray Serve, then wait for Ctrl-C or SIGTERM and shut it down."""
    stop = threading.Event()
    with _errors_reported():
        from crossrank.ray._runtime import ray_cluster, require_serve

        serve_api = require_serve()
        from crossrank.ray import serving

        with ray_cluster(ray_config, logging_level=logging.INFO if verbose else logging.WARNING):
            try:
                with err_console.status("starting Ray Serve replicas"):
                    url = serving.run(config, server_config, ray_config)
                scale = (
                    f"{ray_config.min_replicas}-{ray_config.max_replicas} replicas (autoscaling)"
                    if ray_config.autoscaling
                    else f"{ray_config.replicas} replica(s)"
                )
                err_console.print(
                    f"[bold]crossrank serve --ray[/] {config.model} on {url}  [dim]({scale}, "
                    f"{ray_config.num_cpus:g} CPU / {ray_config.num_gpus:g} GPU each, "
                    f"auth {'on' if server_config.api_key else 'off'}; Ctrl-C stops)[/]",
                    highlight=False,
                )
                for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a stop: shut down, exit 0
                    signal.signal(signum, lambda *_: stop.set())
                while not stop.wait(1.0):
                    pass
            finally:
                serve_api.shutdown()


# --------------------------------------------------------------------------- rerank-batch


@app.command("rerank-batch")
@reranker_options("model", "engine", ray=_BATCH_RAY_OPTIONS)
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
    _setup(verbose)
    with _errors_reported():
        from crossrank.ray._runtime import ray_cluster, require_ray

        require_ray()
        from crossrank.ray.batch import rerank_batch

        try:
            with (
                _bounded_interrupt(),
                _Progress() as bar,
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
        table = Table(title=f"rerank-batch {input_path.name} -> {output.name}", title_justify="left")
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
            table.add_row(name, value)
        console.print(table)
    if report.bad_records:
        for item in report.bad_examples:
            err_console.print(f"[red]bad record[/] {item['file']}:{item['line']}: {escape(item['reason'])}")
        raise _fail(
            f"{report.bad_records} bad record(s), listed in {report.bad_report}; every other record was "
            "ranked and written"
        )


def main() -> None:
    """Entry point of the ``crossrank`` command."""
    global _AS_COMMAND
    _AS_COMMAND = True
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
