"""The seam between crossrank's scoring path and the engine that runs the model.

A backend does one thing: given padded token ids (an :class:`~crossrank.encoding.EncodedBatch`),
return one float32 logit per row. Everything else (validation, tokenisation, batching,
normalisation, ranking, async) lives in the rooms behind :class:`crossrank.Reranker`
(``docs/architecture.md``), so a new engine (a GPU server, OpenVINO, a Ray actor) only implements
:class:`Backend`: pass an instance to
:meth:`crossrank.Reranker.from_backend`, or register a loader by name with
:func:`register_backend`.

Each registered backend declares the options it takes as a pydantic model (torch's
:class:`~crossrank.backends.torch_options.TorchOptions`, ONNX's
:class:`~crossrank.backends.onnx_options.OnnxOptions`): :class:`~crossrank.RerankerConfig` checks a
backend's options against its own model (:func:`check_backend_options`) and hands its loader only
those. Nothing outside a backend's own modules branches on its name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ValidationError
from tokenizers import Tokenizer

from crossrank.encoding import EncodedBatch
from crossrank.errors import BackendUnavailableError, InvalidArgumentError
from crossrank.model_source import ModelSource

__all__ = [
    "AUTO",
    "Backend",
    "backend_names",
    "backend_option_names",
    "check_backend_options",
    "default_backend",
    "load_backend",
    "register_backend",
]


@runtime_checkable
class Backend(Protocol):
    """What a scoring engine provides to :class:`crossrank.Reranker`.

    Attributes:
        name: Backend name, e.g. ``"torch"``.
        device: Where the model runs, e.g. ``"cpu"`` or ``"cuda:0"``.
        tokenizer: The model's fast tokenizer (crossrank copies it; the backend may keep using its own).
        max_positions: Longest input, in tokens, the model accepts.
        pad_token_id: Token id used for padding.
        uses_token_type_ids: Whether the model takes segment ids.
        batch_overhead_tokens: What one more forward pass costs, in padded tokens; the batch
            planner (:func:`crossrank.encoding.plan_batches`) trades padding against passes with it.
        default_batch_size: Most pairs per forward pass when the user sets no ``batch_size``.
        batch_invariant: True when a row's logit does not depend on its batch-mates beyond float
            rounding (fp32, fp16, ONNX int8-static). False for engines that quantise activations
            per batch (ONNX dynamic int8): crossrank then never puts pairs of different requests
            in one batch, so a request scores the same whatever it is batched with. Required:
            an engine must say which it is.
    """

    name: str
    device: str
    tokenizer: Tokenizer
    max_positions: int
    pad_token_id: int
    uses_token_type_ids: bool
    batch_overhead_tokens: int
    default_batch_size: int
    batch_invariant: bool

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Return the raw logits of ``batch``: a float32 array of shape ``(rows,)``.

        Must be safe to call from several threads at once.
        """
        ...


@dataclass(frozen=True)
class _Registered:
    """A backend's loader and the model of its options, each an object or a ``"module:attribute"`` path."""

    loader: Callable[..., Backend] | str
    options: type[BaseModel] | str | None
    #: What to ``pip install`` when the loader's packages are missing.
    install: str | None = None


#: Registered engines by name. Paths are imported on first use, so torch isn't imported to run ONNX.
_REGISTRY: dict[str, _Registered] = {
    "torch": _Registered(
        "crossrank.backends.torch_backend:TorchBackend.load",
        "crossrank.backends.torch_options:TorchOptions",
        install="crossrank[torch]",
    ),
    "onnx": _Registered(
        "crossrank.backends.onnx_backend:OnnxBackend.load",
        "crossrank.backends.onnx_options:OnnxOptions",
    ),
    # "auto" picks it on CPUs with native bf16 (crossrank.backends.choice).
    "openvino": _Registered(
        "crossrank.backends.openvino_backend:OpenVinoBackend.load",
        "crossrank.backends.openvino_options:OpenVinoOptions",
        install="crossrank[openvino]",
    ),
}


def register_backend(
    name: str,
    loader: Callable[..., Backend] | str,
    *,
    options: type[BaseModel] | str | None = None,
    install: str | None = None,
) -> None:
    """Make ``Reranker(model, backend=name)`` (and ``RerankerConfig(backend=name)``) load with ``loader``.

    Args:
        name: The backend's name, e.g. ``"openvino"``.
        loader: ``loader(source, *, device, threads, cache_folder, revision, token, model_kwargs,
            **options) -> Backend``, where ``source`` is a :class:`~crossrank.model_source.ModelSource`
            and ``options`` are this backend's own, as ``options`` declares them; or the
            ``"module:attribute"`` path of such a callable.
        options: A pydantic model of the options the backend takes (fields with defaults; make
            it ``extra="forbid"``), or its ``"module:attribute"`` path. Its fields may be
            :class:`~crossrank.RerankerConfig` fields that belong to backends (``precision``,
            ``quantize``, ``onnx_file``, ``trust_remote_code``) or options of its own, which users
            pass in ``backend_options={...}``. None: the backend takes no options of its own, and
            its loader receives none of the backend fields.
        install: What to ``pip install`` when the loader's packages are missing (named in the error).

    A ready engine can also be passed as is: ``Reranker.from_backend(engine)``.

    Example:
        >>> from pydantic import BaseModel
        >>> from crossrank import RerankerConfig
        >>> from crossrank.backends import backend_names, register_backend
        >>> class EchoOptions(BaseModel, extra="forbid"):
        ...     hint: str = "fp32"
        >>> loader = "crossrank.backends.torch_backend:TorchBackend.load"
        >>> register_backend("echo", loader, options=EchoOptions)
        >>> "echo" in backend_names()
        True
        >>> RerankerConfig(backend="echo", backend_options={"hint": "bf16"}).engine_options()
        {'hint': 'bf16'}
    """
    if not name or not isinstance(name, str):
        raise InvalidArgumentError(f"a backend name must be a non-empty str, got {name!r}")
    _REGISTRY[name] = _Registered(loader, options, install)


def backend_names() -> tuple[str, ...]:
    """Names accepted by ``Reranker(backend=...)``: the built-in ones and those registered."""
    return tuple(_REGISTRY)


def _imported(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def _registered(name: str) -> _Registered:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InvalidArgumentError(f"Unsupported backend {name!r}; choose one of {', '.join(_REGISTRY)}.")
    return entry


def _options_model(name: str) -> type[BaseModel] | None:
    return _imported(_registered(name).options)


def backend_option_names(name: str) -> tuple[str, ...]:
    """The options backend ``name`` declares.

    Example:
        >>> backend_option_names("onnx")
        ('quantize', 'onnx_file', 'precision', 'family')
    """
    model = _options_model(name)
    return tuple(model.model_fields) if model is not None else ()


def _declared(name: str) -> tuple[str, ...]:
    """``backend_option_names(name)``, or () when its options model can't be imported here."""
    try:
        return backend_option_names(name)
    except ImportError:
        return ()


def check_backend_options(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Backend ``name``'s options: ``values`` validated by its declared model, defaults filled in.

    Args:
        name: A registered backend.
        values: The options given (the config's backend fields set to other than their defaults,
            and its ``backend_options``).

    Returns:
        Every option the backend declares, as its loader takes them.

    Raises:
        ValueError: An option the backend doesn't declare (the message names the backends that
            do), or a value its model refuses.

    Example:
        >>> check_backend_options("torch", {"quantize": "int8"})
        Traceback (most recent call last):
        ...
        ValueError: quantize applies to backend='onnx' only (backend='torch')
    """
    model = _options_model(name)
    declared = model.model_fields if model is not None else {}
    for option in values:
        if option not in declared:
            takers = [other for other in _REGISTRY if other != name and option in _declared(other)]
            if not takers:
                own = ", ".join(declared) or "none"
                raise ValueError(f"{option} is not an option of backend={name!r} (its options: {own})")
            where = " or ".join(f"backend={other!r}" for other in takers)
            raise ValueError(f"{option} applies to {where} only (backend={name!r})")
    if model is None:
        return {}
    try:
        return model(**values).model_dump()
    except ValidationError as err:
        problems = err.errors(include_url=False)
        raise ValueError("; ".join(_problem(problem) for problem in problems)) from None


def _problem(problem: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in problem["loc"])
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


#: The default backend: the one :func:`default_backend` picks (:mod:`crossrank.backends.choice`).
AUTO = "auto"


def default_backend(
    model: str | None = None, options: Mapping[str, Any] | None = None, *, device: str | None = None
) -> str:
    """The backend ``"auto"`` runs ``model`` with, given the backend ``options`` set and ``device``:
    :func:`crossrank.backends.choice.choose_backend` on this machine, logged once per choice.

    Example:
        >>> default_backend(options={"quantize": "int8"})
        'onnx'
        >>> default_backend() in ("torch", "onnx", "openvino")
        True
    """
    from crossrank.backends.choice import choose_backend, log_choice

    choice = choose_backend(model, dict(options or {}), device=device)
    log_choice(choice)
    return choice.backend


def load_backend(name: str, source: ModelSource, *, device: str | None, **options: Any) -> Backend:
    """Load the model behind ``source`` with the backend called ``name``.

    Args:
        name: One of :func:`backend_names`.
        source: Where the model's files are (see :func:`crossrank.model_source.resolve_model_source`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` to pick the best available.
        **options: Loader options (``cache_folder``, ``revision``, ``token``, ``threads``...) and
            the backend's own (see :func:`check_backend_options`).

    Raises:
        InvalidArgumentError: ``name`` is not a known backend.
        ModelLoadError: The model could not be loaded.
    """
    entry = _registered(name)
    try:
        loader = _imported(entry.loader)
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend={name!r} needs the package {err.name or err}, which is not installed"
            + (f": pip install '{entry.install}'" if entry.install else "")
        ) from err
    return loader(source, device=device, **options)
