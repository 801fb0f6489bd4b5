"""Every option of a :class:`crossrank.Reranker`, declared once.

:class:`RerankerConfig` is the single declaration of crossrank's options: their types, defaults,
help text and environment variables. Everything else derives from it: ``Reranker(...)`` validates
its keyword arguments with it, :meth:`Reranker.to_config` returns one, the command line builds
its ``--options`` from its fields (:func:`crossrank.cli` reads :data:`OPTION_GROUPS`), and the
README's table of environment variables is checked against it by the tests.

Where values come from:

* ``RerankerConfig(...)``, :meth:`RerankerConfig.from_yaml`, the command line and the server read
  the environment (``CROSSRANK_<FIELD>``): configuration-driven faces take configuration from
  where operators put it.
* ``Reranker(...)`` called in code takes **only its arguments**: a constructor call means what
  it says, whatever the environment holds. Use ``Reranker.from_config()`` to read the environment.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from crossrank.errors import InvalidArgumentError

__all__ = [
    "BACKEND_FIELDS",
    "DEFAULT_MAX_LENGTH_CAP",
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "OPTION_GROUPS",
    "PER_CALL_OPTIONS",
    "Quantize",
    "RerankerConfig",
    "check_option",
    "env_name",
    "options_table",
    "refuse_bool_number_confusion",
    "validate_arguments",
]

#: The model ``Reranker()`` loads when none is named.
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
#: The default ``max_length`` is the model's limit, but at most this: LLM rerankers declare
#: 32,768-40,960 positions, and on a CPU one pair that long costs minutes (docs/performance.md,
#: "LLM rerankers"); 8,192 is Qwen3-Reranker's and mxbai-rerank v2's own default, and every
#: cross-encoder crossrank tested accepts at most that (bge-reranker-v2-m3, ModernBERT: 8,192).
DEFAULT_MAX_LENGTH_CAP = 8192
#: Environment variables are the field names in upper case after this prefix.
ENV_PREFIX = "CROSSRANK_"

#: The options by what they are about; the CLI shows them in these groups, and a subcommand
#: that doesn't rank (``crossrank eval``) leaves out the ``ranking`` group.
OPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "model": ("model", "family", "revision", "local_files_only", "cache_folder", "trust_remote_code"),
    "engine": (
        "backend",
        "backend_options",
        "device",
        "precision",
        "quantize",
        "onnx_file",
        "threads",
        "batch_size",
        "max_length",
        "long_documents",
        "instruction",
        "stride",
        "max_windows",
        "window_length",
    ),
    "ranking": ("top_n", "normalize", "min_score", "dedupe", "max_tokens", "fusion"),
    "selection": ("dedupe_similarity", "budget_tokenizer", "fusion_k", "fusion_weight"),
}
#: The fields that belong to one backend or another: each backend declares which it takes
#: (:func:`crossrank.backends.check_backend_options`), and is handed only those.
BACKEND_FIELDS: tuple[str, ...] = ("family", "precision", "quantize", "onnx_file", "trust_remote_code")
#: The options a ``rank`` call may override, and that the framework adapters hold as their own fields;
#: the ``selection`` group says how they work and is set once, on the Reranker.
PER_CALL_OPTIONS: tuple[str, ...] = OPTION_GROUPS["ranking"]


def env_name(field: str) -> str:
    """The environment variable of a field: ``env_name("top_n") == "CROSSRANK_TOP_N"``."""
    return f"{ENV_PREFIX}{field.upper()}"


#: ONNX int8 recipes: ``int8`` quantises activations with scales computed per batch (a row's score
#: moves with its batch-mates, so requests never share a batch); ``int8-static`` with scales fixed
#: at export, calibrated on the package's demo corpus (rows are independent: requests may share).
Quantize = Literal["int8", "int8-static"]


class RerankerConfig(BaseSettings):
    """Everything needed to build a :class:`crossrank.Reranker`, validated.

    Values come from, highest priority first: keyword arguments, environment variables
    (``CROSSRANK_MODEL``, ``CROSSRANK_TOP_N``, ... — the field name in upper case after
    ``CROSSRANK_``), a YAML file when built with :meth:`from_yaml`, then the defaults below. An
    invalid value raises ``pydantic.ValidationError`` naming the field; an unknown key is an error
    too, so typos don't pass silently; so is an option of one backend given to another
    (``quantize`` with ``backend="torch"``).

    Example:
        >>> from crossrank import RerankerConfig
        >>> RerankerConfig(top_n=5, normalize=True).top_n
        5
        >>> RerankerConfig(model="/models/my-ce", min_score=0.2).min_score
        0.2
        >>> RerankerConfig(backend="torch", quantize="int8")
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for RerankerConfig
          Value error, quantize applies to backend='onnx' only (backend='torch') ...
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # ---------------------------------------------------------------- model: what to load
    model: str = Field(DEFAULT_MODEL, description="Reranker: Hugging Face hub id or local directory.")
    family: str | None = Field(
        None,
        description="cross-encoder, qwen3-reranker or mxbai-rerank-v2; default: from the model "
        "(LLM rerankers by their name).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to load.")
    local_files_only: bool = Field(
        False, description="Never contact the hub: a local directory or the Hugging Face cache only."
    )
    cache_folder: str | None = Field(
        None, description="Hugging Face cache folder (default: the standard one)."
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub (torch only).")

    # ---------------------------------------------------------------- engine: how to run it
    backend: str = Field(
        "auto",
        description="Engine: torch, onnx, openvino, or auto: per CPU, the fastest that keeps fp32's top 3 "
        "(OpenVINO or torch bf16 on AMX/AVX512-BF16, else ONNX fp32; torch on a GPU).",
    )
    backend_options: dict[str, Any] | None = Field(
        None,
        description='Options of a registered backend beyond the ones above, as JSON: {"name": value}.',
    )
    device: str | None = Field(
        None, description="cpu, cuda, cuda:1, ...; default: CUDA if present, else CPU."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="torch/openvino: compute precision; auto is fp16 on CUDA, bf16 on CPUs with AMX or "
        "AVX512-BF16, else fp32.",
    )
    quantize: Quantize | None = Field(
        None, description="onnx: int8 (dynamic: scales per batch) or int8-static (fixed scales)."
    )
    onnx_file: str | None = Field(
        None, description="onnx: a ready ONNX file inside the model folder or repo."
    )
    threads: PositiveInt | None = Field(
        None, description="Threads per forward pass; default: the CPUs this process may use."
    )
    batch_size: PositiveInt | None = Field(
        None,
        description="Most pairs per forward pass; default: 32 on CPU, 128 on CUDA, 4 for int8, "
        "16 for int8-static.",
    )
    max_length: PositiveInt | None = Field(
        None, description="Most tokens per (query, document) pair; default: the model's limit, at most 8192."
    )
    long_documents: Literal["truncate", "windows"] = Field(
        "truncate", description="Long documents: cut at the end, or score overlapping windows (MaxP)."
    )
    instruction: str | None = Field(
        None,
        description="LLM rerankers: the task instruction in their prompt; default: the model's own "
        "(qwen3-reranker: web search; mxbai-rerank-v2: none).",
    )
    stride: PositiveInt | None = Field(
        None, description="windows: tokens shared by consecutive windows; default: a quarter window."
    )
    max_windows: PositiveInt = Field(
        32,
        description="windows: most windows per document; a longer one is scored on its first ones (logged).",
    )
    window_length: int | None = Field(
        None,
        ge=32,
        description="windows: tokens per window of a document longer than max_length; default: max_length.",
    )

    # ---------------------------------------------------------------- ranking: defaults of rank()
    top_n: PositiveInt | None = Field(3, description="How many documents rank() returns; None: all.")
    normalize: bool = Field(False, description="Scores as sigmoid(logit) in 0-1 instead of raw logits.")
    min_score: float | None = Field(
        None, description="Drop documents scoring below this (on the normalize scale)."
    )
    dedupe: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Skip a document this similar (0-1] to a better one kept; None: off.",
    )
    max_tokens: PositiveInt | None = Field(
        None,
        description="Return the best documents while their tokens add up to at most this (at least one).",
    )
    fusion: Literal["rrf", "weighted"] | None = Field(
        None, description="Fuse the reranker's order with stage 1's (the input order, or given scores)."
    )

    # ---------------------------------------------------------------- selection: how those work
    dedupe_similarity: Literal["jaccard", "ratio"] = Field(
        "jaccard", description="dedupe: jaccard (word sets) or ratio (characters; the ratio extra)."
    )
    budget_tokenizer: str | None = Field(
        None,
        description="max_tokens: count with this tokenizer (hub id or folder: your LLM's); default: ours.",
    )
    fusion_k: PositiveInt = Field(60, description="fusion=rrf: k in 1/(k + rank).")
    fusion_weight: float = Field(
        0.5, ge=0, le=1, description="fusion=weighted: the reranker's weight; stage 1 gets the rest."
    )

    @field_validator("model", mode="before")
    @classmethod
    def _path_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("min_score")
    @classmethod
    def _not_nan(cls, value: float | None) -> float | None:
        if value is not None and math.isnan(value):
            raise ValueError("min_score must be a number, not NaN (infinities are bounds: -inf keeps all)")
        return value

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        from crossrank.families import family_names

        if value is not None and value not in family_names():
            raise ValueError(f"unknown family {value!r}; choose one of {', '.join(family_names())}")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from crossrank.backends import AUTO, backend_names

        if value == AUTO:  # resolved with the model and options: resolved_backend()
            return value
        if value not in backend_names():
            raise ValueError(
                f"unknown backend {value!r}; choose one of {', '.join((AUTO, *backend_names()))}"
            )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: Any) -> Any:
        """A bool is not a number (``dedupe=True`` would mean 1.0), nor a number a bool (``normalize=1``)."""
        return refuse_bool_number_confusion(info.field_name, value, cls)

    @field_validator("backend_options", mode="before")
    @classmethod
    def _options_from_json(cls, value: Any) -> Any:
        """The command line gives ``--backend-options`` as JSON text."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else None
            except ValueError as err:
                raise ValueError(
                    f'backend_options must be a JSON object, e.g. \'{{"hint": "bf16"}}\' ({err})'
                ) from None
        return value

    @model_validator(mode="after")
    def _options_fit_together(self) -> RerankerConfig:
        """Options of one backend or mode given to another are refused here, in one place."""
        from crossrank.selection import check_similarity

        self.engine_options()  # the backend's own model checks its options (crossrank.backends)
        check_similarity(self.dedupe_similarity)  # ratio needs the `ratio` extra
        for name in ("stride", "window_length"):
            if getattr(self, name) is not None and self.long_documents != "windows":
                raise ValueError(f"{name} applies to long_documents='windows' only")
        return self

    def resolved_backend(self) -> str:
        """The backend that runs: ``backend``, or for ``"auto"`` the one
        :func:`crossrank.backends.default_backend` picks for this model and the options given.

        Example:
            >>> RerankerConfig(quantize="int8").resolved_backend()
            'onnx'
        """
        from crossrank.backends import AUTO, default_backend

        if self.backend != AUTO:
            return self.backend
        options = {**self._given_backend_fields(), **(self.backend_options or {})}
        return default_backend(self.model, options, device=self.device)

    def _given_backend_fields(self) -> dict[str, Any]:
        fields = type(self).model_fields
        return {
            name: getattr(self, name)
            for name in BACKEND_FIELDS
            if getattr(self, name) != fields[name].default
        }

    def engine_options(self) -> dict[str, Any]:
        """The options of this config's backend, checked by the model it registered, as its loader takes them.

        They are the backend fields set here (:data:`BACKEND_FIELDS`) and ``backend_options``.

        Raises:
            ValueError: An option the backend doesn't take, or a value it refuses.

        Example:
            >>> RerankerConfig(backend="onnx", quantize="int8").engine_options()
            {'quantize': 'int8', 'onnx_file': None, 'precision': 'auto', 'family': None}
        """
        from crossrank.backends import check_backend_options

        given, own = self._given_backend_fields(), self.backend_options or {}
        twice = sorted(set(given) & set(own))
        if twice:
            raise ValueError(f"{', '.join(twice)} given both as an option and in backend_options")
        return check_backend_options(self.resolved_backend(), {**given, **own})

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, section: str | None = None, **overrides: Any
    ) -> RerankerConfig:
        """Build a config from a YAML file; environment variables and ``overrides`` take precedence.

        Args:
            path: A YAML file whose top level (or ``section``) maps field names to values.
            section: Read the settings under this top-level key, e.g. ``"reranker"``, so one app
                config file can hold several components.
            **overrides: Field values that win over both the environment and the file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InvalidArgumentError: ``section`` is not a top-level key of the file.
            pydantic.ValidationError: A value is invalid or a key is unknown.

        Example:
            >>> import pathlib, tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = pathlib.Path(folder) / "app.yaml"
            ...     _ = path.write_text("reranker:\\n  top_n: 5\\n  normalize: true\\n")
            ...     RerankerConfig.from_yaml(path, section="reranker").top_n
            5
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"crossrank config file not found: {str(file)!r}")
        if section is not None:
            import yaml

            document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            if not isinstance(document, dict) or not isinstance(document.get(section), dict):
                found = ", ".join(map(str, document)) if isinstance(document, dict) else "no sections"
                raise InvalidArgumentError(
                    f"{str(file)!r} has no section {section!r} holding the reranker's settings "
                    f"(top-level keys: {found or 'none'})"
                )
        from_file = YamlConfigSettingsSource(cls, yaml_file=file, yaml_config_section=section)()
        from_env = EnvSettingsSource(cls)()
        return cls(**{**from_file, **from_env, **overrides})

    @classmethod
    def from_settings(cls, **values: Any) -> RerankerConfig:
        """``RerankerConfig(**values)`` (the environment fills what they leave out), raising
        :class:`~crossrank.InvalidArgumentError` naming the field where pydantic raises its own."""
        try:
            return cls(**values)
        except ValidationError as err:
            raise InvalidArgumentError(describe_validation_error(err)) from None

    @classmethod
    def from_arguments(cls, **values: Any) -> RerankerConfig:
        """Validate ``values`` alone, without reading the environment (what ``Reranker(...)`` does).

        Raises:
            InvalidArgumentError: A value is invalid or options don't fit together; the message
                names the field.

        Example:
            >>> RerankerConfig.from_arguments(top_n=0)
            Traceback (most recent call last):
            ...
            crossrank.errors.InvalidArgumentError: top_n: Input should be greater than 0 (got 0)
        """
        return validate_arguments(cls, **values)


Settings = TypeVar("Settings", bound=BaseSettings)
_ARGUMENTS_ONLY: dict[type, type] = {}


def validate_arguments(cls: type[Settings], **values: Any) -> Settings:
    """``values`` validated by settings class ``cls`` alone: no environment, no files.

    What a constructor called in code means (``Reranker(...)``, ``finetune(...)``): what it says,
    whatever the environment holds. Validated by a subclass of ``cls`` that reads only its
    arguments; returned as a plain ``cls``.

    Raises:
        InvalidArgumentError: A value is invalid or unknown; the message names the field.

    Example:
        >>> import os
        >>> os.environ["CROSSRANK_TOP_N"] = "7"
        >>> validate_arguments(RerankerConfig).top_n, RerankerConfig().top_n
        (3, 7)
        >>> del os.environ["CROSSRANK_TOP_N"]
    """
    only = _ARGUMENTS_ONLY.get(cls)
    if only is None:

        def sources(_cls: type, settings_cls: type, init_settings: Any, **_others: Any) -> tuple[Any, ...]:
            return (init_settings,)

        only = type(
            cls.__name__,
            (cls,),
            {
                "settings_customise_sources": classmethod(sources),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": f"A {cls.__name__} validated from its keyword arguments only.",
            },
        )
        _ARGUMENTS_ONLY[cls] = only
    try:
        checked = only(**values)
    except ValidationError as err:
        raise InvalidArgumentError(describe_validation_error(err)) from None
    # A plain ``cls`` (picklable, equal to one built by ``cls(...)``): the subclass only read the sources.
    return cls.model_construct(_fields_set=checked.model_fields_set, **dict(checked))


def check_option(name: str, value: object) -> Any:
    """A per-call value of option ``name``, checked against its one declaration in :class:`RerankerConfig`.

    Strict: a bool is not a number, ``"0.8"`` is not a float; numpy numbers are accepted as Python ones.

    Raises:
        InvalidArgumentError: The value doesn't fit the field; the message names it.

    Example:
        >>> check_option("dedupe", 0.8), check_option("fusion", None)
        (0.8, None)
        >>> check_option("dedupe", 1.5)
        Traceback (most recent call last):
        ...
        crossrank.errors.InvalidArgumentError: dedupe: Input should be less than or equal to 1 (got 1.5)
    """
    import numbers

    if hasattr(value, "item") and isinstance(value, numbers.Number):  # numpy scalars
        value = value.item()
    try:
        value = refuse_bool_number_confusion(name, value)
    except ValueError as err:
        raise InvalidArgumentError(f"{name}: {err}") from None
    try:
        return _adapter(name).validate_python(value, strict=True)
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        raise InvalidArgumentError(f"{name}: {problem['msg']} (got {value!r})") from None


def refuse_bool_number_confusion(name: str, value: Any, settings: type[BaseSettings] | None = None) -> Any:
    """``value`` for field ``name``, unless it is a bool where a number is meant, or a number where a bool is.

    Python counts ``True`` as 1, so ``dedupe=True`` would quietly mean "only identical chunks"; it
    is refused with the number wanted. Strings pass (the environment's ``"true"``/``"0.9"``).
    ``settings`` is the class declaring the field (default :class:`RerankerConfig`; the
    fine-tuning options use it too).

    Raises:
        ValueError: The message names the field and what it takes.

    Example:
        >>> refuse_bool_number_confusion("dedupe", True)
        Traceback (most recent call last):
        ...
        ValueError: expected a number, got True (Skip a document this similar (0-1] to a better one ...
    """
    field = (settings or RerankerConfig).model_fields.get(name)
    if field is None or isinstance(value, str):
        return value
    wants_bool = field.annotation is bool
    if isinstance(value, bool) and not wants_bool and _takes_numbers(field.annotation):
        raise ValueError(f"expected a number, got {value!r} ({field.description})")
    if wants_bool and not isinstance(value, bool) and isinstance(value, (int, float)):
        raise ValueError(f"expected True or False, got {value!r}")
    return value


def _takes_numbers(annotation: Any) -> bool:
    import typing

    args = typing.get_args(annotation) if typing.get_origin(annotation) is not typing.Annotated else ()
    args = args or (annotation,)
    bare = [typing.get_args(arg)[0] if typing.get_origin(arg) is typing.Annotated else arg for arg in args]
    return any(arg in (int, float) for arg in bare)


_ADAPTERS: dict[str, Any] = {}


def _adapter(name: str) -> Any:
    from typing import Annotated

    from pydantic import TypeAdapter

    if name not in _ADAPTERS:
        field = RerankerConfig.model_fields[name]
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        _ADAPTERS[name] = TypeAdapter(annotation)
    return _ADAPTERS[name]


def settings_from_yaml(
    cls: type[Any], path: str | os.PathLike[str], *, section: str | None, **overrides: Any
) -> Any:
    """An optional section's settings (``ServerConfig``, ``RayConfig``): a YAML file's ``section``, then
    the environment, then ``overrides``. A file without that section gives the defaults (and the environment).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"crossrank config file not found: {str(file)!r}")
    document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    has_section = section is None or (isinstance(document, dict) and section in document)
    from_file = (
        YamlConfigSettingsSource(cls, yaml_file=file, yaml_config_section=section)() if has_section else {}
    )
    return cls(**{**from_file, **EnvSettingsSource(cls)(), **overrides})


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, ``field: message (got value)``, instead of pydantic's layout."""
    lines = []
    for problem in err.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        got = "" if problem["type"] in ("value_error", "missing") else f" (got {problem.get('input')!r})"
        lines.append(f"{where}: {message}{got}" if where else f"{message}{got}")
    return "; ".join(lines)


def options_table() -> str:
    """Every option as a Markdown table (option, environment variable, default, meaning): the README's.

    Example:
        >>> print(options_table().splitlines()[4])
        | `revision` | `CROSSRANK_REVISION` | - | Hub revision (branch, tag or commit) to load. |
    """
    rows = ["| option | env | default | what |", "|---|---|---|---|"]
    for names in OPTION_GROUPS.values():
        for name in names:
            field = RerankerConfig.model_fields[name]
            default = field.default
            shown = (
                "-"
                if default is None
                else str(default).lower()
                if isinstance(default, bool)
                else f"`{default}`"
            )
            rows.append(f"| `{name}` | `{env_name(name)}` | {shown} | {field.description} |")
    return "\n".join(rows)
