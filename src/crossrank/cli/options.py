"""Command-line options generated from settings classes, and the help that shows them literally.

A command's options are not written by hand: :class:`SettingsOptions` names the fields of a
settings class (:class:`~crossrank.RerankerConfig`, :class:`~crossrank.server.ServerConfig`,
:class:`~crossrank.ray.RayConfig`, :class:`~crossrank.finetune.FinetuneConfig`) and
:func:`with_settings` gives the command one option per field (type, bounds, help and environment
variable read from the field) plus ``--config FILE``. The command receives the settings object built
from them: options given on the command line win over the environment, which wins over the file,
which wins over the defaults. :func:`reranker_options` is that for the Reranker's option groups.

:class:`Command` and :class:`Group` are the typer classes of every ``crossrank`` command: help texts
are shown as written (``pip install 'crossrank[train]'`` keeps its ``[train]``; rich would read it
as markup) and arguments appear as their metavar in the usage line (``crossrank rank [OPTIONS] FILE``).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup

from crossrank.cli.console import fail
from crossrank.config import OPTION_GROUPS, RerankerConfig, describe_validation_error
from crossrank.errors import CrossrankError

__all__ = [
    "Command",
    "Group",
    "JsonFlag",
    "OutputPath",
    "SettingsOptions",
    "Verbose",
    "build_reranker",
    "config_parameter",
    "field_env",
    "option_type",
    "reranker_options",
    "server_settings",
    "with_settings",
]

#: Flags of the Reranker options every subcommand shares, with their short forms.
RERANKER_FLAGS: dict[str, tuple[str, ...]] = {"model": ("--model", "-m"), "top_n": ("--top-n", "-n")}
#: The help panel of each Reranker option group.
PANELS = {"model": "Model", "engine": "Engine", "ranking": "Ranking", "selection": "Selection"}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON, and nothing else, on stdout.")]
OutputPath = Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON to this file.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level (on stderr).")]


# --------------------------------------------------------------------------- help shown as written


def _literal(text: str | None) -> str | None:
    return escape(text) if text else text


class Command(TyperCommand):
    """A typer command whose help texts are shown as written, and whose usage line names arguments
    by their metavar (``FILE``; ``[FILE]`` when optional) rather than typer's ``{file}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help, self.short_help = _literal(self.help), _literal(self.short_help)
        for param in self.params:
            if getattr(param, "help", None):
                param.help = _literal(param.help)  # type: ignore[attr-defined]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name if param.nargs == 1 else f"{name}...")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(TyperGroup):
    """The ``crossrank`` group, its help shown as written (as :class:`Command`'s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help, self.short_help = _literal(self.help), _literal(self.short_help)


# --------------------------------------------------------------------------- one option per field


def option_type(annotation: Any) -> Any:
    """The CLI type of a settings field: its type without ``None`` (not given on the CLI = default),
    a sequence as a repeatable ``list``.

    Example:
        >>> option_type(int | None), option_type(tuple[str, ...])
        (<class 'int'>, list[str])
    """
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return option_type(args[0]) if len(args) == 1 else annotation
    if typing.get_origin(annotation) in (tuple, list, Sequence) and args:
        return list[args[0]]  # type: ignore[valid-type]
    return annotation


def field_env(settings: type[BaseSettings], name: str) -> str:
    """The environment variable a settings field is read from: its alias, else prefix + NAME.

    Example:
        >>> from crossrank import RerankerConfig
        >>> field_env(RerankerConfig, "top_n")
        'CROSSRANK_TOP_N'
    """
    alias = settings.model_fields[name].validation_alias
    if isinstance(alias, str):
        return alias.upper()
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def _shown_default(default: Any, kind: Any, decls: Sequence[str]) -> str | None:
    """The default as the help shows it; ``None`` where there is nothing to show."""
    if default is None or (isinstance(default, tuple | list) and not default):
        return None
    if kind is bool:
        on, _, off = decls[0].partition("/")
        if not off:  # a flag alone (--resume): off unless given
            return None
        if off != f"--no-{on[2:]}":  # --bf16/--fp32: the flag in effect
            return on if default else off
    return str(default).lower() if isinstance(default, bool) else str(default)


def config_parameter(
    settings: type[BaseSettings],
    name: str,
    *,
    panel: str | None,
    dest: str | None = None,
    decls: Sequence[str] | None = None,
    kind: Any = None,
) -> inspect.Parameter:
    """A command-line option for field ``name`` of ``settings``: its type, bounds, help and env name.

    Args:
        settings: The settings class declaring the field.
        name: The field.
        panel: The help panel the option is listed in (``None``: "Options").
        dest: The command parameter receiving the value; default: ``name``.
        decls: The flags; default ``--field-name`` (``--field-name/--no-field-name`` for a bool).
        kind: The option's type, when not the field's (e.g. a ``Literal`` of what is registered).

    Example:
        >>> from crossrank import RerankerConfig
        >>> config_parameter(RerankerConfig, "top_n", panel="Ranking").name
        'top_n'
    """
    info = settings.model_fields[name]
    kind = option_type(info.annotation) if kind is None else kind
    constraints = [*info.metadata]
    if typing.get_origin(kind) is Annotated:  # PositiveInt: Annotated[int, Gt(0)]
        kind, *more = typing.get_args(kind)
        constraints += more
    if kind is SecretStr:
        kind = str
    flag = "--" + name.replace("_", "-")
    decls = list(decls or [f"{flag}/--no-{flag[2:]}" if kind is bool else flag])
    # An int above n is at least n + 1; a float above n is left to the config (click has no open bound).
    minimum = next((m.gt + 1 for m in constraints if isinstance(m, annotated_types.Gt) and kind is int), None)
    minimum = next((m.ge for m in constraints if isinstance(m, annotated_types.Ge)), minimum)
    maximum = next((m.le for m in constraints if isinstance(m, annotated_types.Le)), None)
    description = info.description or ""
    shown = _shown_default(info.default, kind, decls)
    if shown is not None and "default" not in description.lower():
        description += f" Default: {shown}."
    option = typer.Option(
        *decls,
        help=f"{description} Env: {field_env(settings, name)}.",
        min=minimum,
        max=maximum,
        rich_help_panel=panel,
        show_default=False,
    )
    return inspect.Parameter(
        dest or name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


@dataclass(frozen=True)
class SettingsOptions:
    """Fields of one settings class offered as options; the command gets the settings built from them.

    Attributes:
        settings: The settings class (a pydantic-settings ``BaseSettings`` with ``from_yaml``).
        fields: The fields offered, in order.
        target: The command's parameter that receives the settings object.
        panels: The help panel of each field (a field not named: ``panel``).
        panel: The help panel of the fields ``panels`` doesn't name.
        prefix: Prefix of the parameters holding the values (``server_``: no clash with other sets).
        decls: The flags of fields that aren't spelled ``--field-name``.
        kinds: Option types that differ from the fields' own.
        sectioned: Whether ``--config-section`` names this settings' section of ``--config``
            (otherwise ``from_yaml`` reads its own section).
    """

    settings: type[BaseSettings]
    fields: tuple[str, ...]
    target: str
    panels: Mapping[str, str] = field(default_factory=dict)
    panel: str | None = None
    prefix: str = ""
    decls: Mapping[str, Sequence[str]] = field(default_factory=dict)
    kinds: Mapping[str, Any] = field(default_factory=dict)
    sectioned: bool = False

    def parameters(self) -> list[inspect.Parameter]:
        """One keyword-only parameter per field."""
        return [
            config_parameter(
                self.settings,
                name,
                panel=self.panels.get(name, self.panel),
                dest=self.prefix + name,
                decls=self.decls.get(name),
                kind=self.kinds.get(name),
            )
            for name in self.fields
        ]

    def build(self, values: dict[str, Any], config_file: Path | None, section: str | None) -> Any:
        """The settings object: takes this set's values out of ``values``; those given win over the
        environment, the environment over ``config_file``, the file over the defaults."""
        given = {}
        for name in self.fields:
            value = values.pop(self.prefix + name)
            if value is not None and not (isinstance(value, list | tuple) and not value):
                given[name] = value
        if config_file is None:
            return self.settings(**given)
        where = {"section": section} if self.sectioned else {}
        return self.settings.from_yaml(config_file, **where, **given)  # type: ignore[attr-defined]


def _config_file_parameters(help: str, panel: str | None, section: bool) -> list[inspect.Parameter]:
    parameters = [
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, typer.Option("--config", help=help, rich_help_panel=panel)],
        )
    ]
    if section:
        parameters.append(
            inspect.Parameter(
                "config_section",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str | None,
                    typer.Option(
                        help="Top-level key of --config holding the settings, e.g. reranker.",
                        rich_help_panel=panel,
                    ),
                ],
            )
        )
    return parameters


def with_settings(
    *option_sets: SettingsOptions, config_help: str, config_panel: str | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the options of ``option_sets`` and ``--config FILE``; it receives each set's
    settings object as the keyword argument the set names (its ``target``).

    Options not given on the command line are left to the settings' own sources (environment
    variables, then ``--config FILE``, then the defaults). A bad value is reported like any other
    error (exit code 1, no traceback).
    """
    sectioned = any(option_set.sectioned for option_set in option_sets)
    targets = {option_set.target for option_set in option_sets}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name not in targets
        ]
        added = _config_file_parameters(config_help, config_panel, sectioned)
        for option_set in option_sets:
            added += option_set.parameters()

        @functools.wraps(command)
        def wrapper(**values: Any) -> None:
            config_file = values.pop("config_file")
            section = values.pop("config_section", None)
            try:
                for option_set in option_sets:
                    values[option_set.target] = option_set.build(values, config_file, section)
            except ValidationError as err:
                raise fail(describe_validation_error(err)) from None
            except (CrossrankError, FileNotFoundError) as err:
                raise fail(err) from None
            command(**values)

        parameters = own + added
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


# --------------------------------------------------------------------------- the Reranker's options


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
    from crossrank.backends import AUTO, backend_names
    from crossrank.ray.config import RayConfig  # imports no Ray

    names = tuple(name for group in groups for name in OPTION_GROUPS[group] if name not in exclude)
    option_sets = [
        SettingsOptions(
            RerankerConfig,
            names,
            "config",
            panels={name: PANELS[group] for group in groups for name in OPTION_GROUPS[group]},
            decls=RERANKER_FLAGS,
            # auto or any registered engine; a registered backend's own options as JSON text
            kinds={"backend": Literal[(AUTO, *backend_names())], "backend_options": str},
            sectioned=True,
        )
    ]
    if server:
        settings = server_settings()
        option_sets.append(
            SettingsOptions(
                settings, tuple(settings.model_fields), "server_config", panel="Server", prefix="server_"
            )
        )
    if ray:
        option_sets.append(SettingsOptions(RayConfig, ray, "ray_config", panel="Ray", prefix="ray_"))
    return with_settings(
        *option_sets,
        config_help="YAML file of Reranker settings (a RerankerConfig); options and env vars override it.",
        config_panel="Model",
    )


def server_settings() -> Any:
    """The server's settings class, or a clear error when the ``server`` extra is missing."""
    try:
        from crossrank.server.config import ServerConfig
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("crossrank serve needs the server extra: pip install 'crossrank[server]'") from err
    return ServerConfig


def build_reranker(config: RerankerConfig) -> Any:
    """The Reranker of a command: the config as resolved (environment and file already read)."""
    from crossrank import Reranker

    return Reranker(**config.model_dump())
