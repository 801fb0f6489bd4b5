"""From options to a running engine: the one place a :class:`crossrank.Reranker` gets its model from.

:func:`load_engine` resolves where the model is (:mod:`crossrank.model_source`) and hands the
config's backend its loader options and its own declared options
(:meth:`crossrank.RerankerConfig.engine_options`); :func:`ready_engine_config` is the config of a
Reranker over an engine someone else loaded; :func:`assemble` puts an engine and a config together
into what a Reranker scores with (the config resolved against the engine, the encoder, the scorer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossrank.backends import Backend, load_backend
from crossrank.config import BACKEND_FIELDS, DEFAULT_MAX_LENGTH_CAP, OPTION_GROUPS, RerankerConfig
from crossrank.encoding import PairEncoder
from crossrank.errors import InvalidArgumentError
from crossrank.model_source import resolve_model_source
from crossrank.scoring import Scorer
from crossrank.selection import load_token_counter

__all__ = [
    "LOADER_ARGUMENTS",
    "LOADING_OPTIONS",
    "Assembled",
    "assemble",
    "load_engine",
    "ready_engine_config",
]

#: Arguments the loader takes besides the config's fields (``Reranker(token=..., model_kwargs=...)``).
LOADER_ARGUMENTS: tuple[str, ...] = ("token", "model_kwargs")
#: Options that load a model (all of the model group but ``model``, and the engine's device, threads
#: and backend options); a ready engine has made these choices already.
LOADING_OPTIONS: tuple[str, ...] = tuple(
    dict.fromkeys((*OPTION_GROUPS["model"][1:], "device", "threads", "backend_options", *BACKEND_FIELDS))
)


def load_engine(
    config: RerankerConfig, *, token: str | bool | None = None, model_kwargs: dict[str, Any] | None = None
) -> Backend:
    """Load ``config.model`` with ``config.resolved_backend()``.

    Args:
        config: The validated settings.
        token: Hub token for private or gated models.
        model_kwargs: Passed to the backend's loader (torch's model loader).

    Raises:
        ModelLoadError: The model can't be had (offline and not cached, unknown id, missing files).
        UnsupportedModelError: The model has more than one output label.
        BackendUnavailableError: The backend's package is not installed.
    """
    source = resolve_model_source(
        config.model,
        local_files_only=config.local_files_only,
        cache_folder=config.cache_folder,
        revision=config.revision,
        token=token,
    )
    loader_options: dict[str, Any] = {
        "threads": config.threads,
        "cache_folder": config.cache_folder,
        "revision": config.revision,
        "token": token,
    }
    if model_kwargs:
        loader_options["model_kwargs"] = model_kwargs
    return load_backend(
        config.resolved_backend(), source, device=config.device, **loader_options, **config.engine_options()
    )


def ready_engine_config(engine: Backend, options: dict[str, Any]) -> RerankerConfig:
    """The config of a Reranker over a ready engine: its options checked, the engine's name and device.

    The model reported is ``options["model"]`` where given, else the engine's ``model_name``, else
    its ``name``.

    Raises:
        InvalidArgumentError: An option that loads a model (:data:`LOADING_OPTIONS`) was given,
            or a loader argument (:data:`LOADER_ARGUMENTS`), or an option is invalid.
    """
    fields = RerankerConfig.model_fields
    given = sorted(
        name for name in LOADING_OPTIONS if name in options and options[name] != fields[name].default
    )
    given += [name for name in LOADER_ARGUMENTS if options.get(name) is not None]
    if given:
        raise InvalidArgumentError(f"{', '.join(given)} apply when loading a model, not to a ready engine")
    name = options.get("model") or getattr(engine, "model_name", None) or engine.name
    options = {
        key: value for key, value in options.items() if key not in (*LOADING_OPTIONS, *LOADER_ARGUMENTS)
    }
    checked = RerankerConfig.from_arguments(**{**options, "model": name, "backend": "torch"})
    return RerankerConfig.model_construct(
        **{**checked.model_dump(), "backend": engine.name, "device": engine.device}
    )


@dataclass(frozen=True)
class Assembled:
    """What a Reranker scores with.

    Attributes:
        config: The config as resolved: what runs (``device``, ``max_length``, ``batch_size`` filled in).
        encoder: Turns (query, documents) into the engine's inputs.
        scorer: The scoring path over the engine.
        budget_counter: ``budget_tokenizer``'s token counter, or None (the model's counts).
    """

    config: RerankerConfig
    encoder: PairEncoder
    scorer: Scorer
    budget_counter: Callable[[str], int] | None


def assemble(engine: Backend, config: RerankerConfig) -> Assembled:
    """Resolve ``config`` against ``engine`` and build the encoder and the scorer.

    Raises:
        InvalidArgumentError: ``max_length`` or ``window_length`` exceeds what the model accepts,
            or an ``instruction`` for a model that reads none.
        ModelLoadError: ``budget_tokenizer`` can't be loaded (now, not mid-request).
    """
    limit = engine.max_positions
    prompt = getattr(engine, "prompt", None)  # an LLM reranker's (crossrank.families); optional
    if config.instruction is not None and prompt is None:
        raise InvalidArgumentError(
            f"instruction applies to LLM rerankers (Qwen3-Reranker...); model {config.model!r} is a "
            "cross-encoder, which reads no instruction"
        )
    if config.max_length is not None and config.max_length > limit:
        raise InvalidArgumentError(
            f"max_length={config.max_length} exceeds what model {config.model!r} accepts ({limit} tokens)."
        )
    max_length = config.max_length or min(limit, DEFAULT_MAX_LENGTH_CAP)
    if config.window_length is not None and config.window_length > max_length:
        raise InvalidArgumentError(f"window_length={config.window_length} exceeds max_length={max_length}")
    resolved = config.model_copy(
        update={
            "backend": engine.name,
            "device": engine.device,
            "max_length": max_length,
            "batch_size": config.batch_size or engine.default_batch_size,
        }
    )
    encoder = PairEncoder(
        engine.tokenizer,
        max_length=resolved.max_length,
        pad_token_id=engine.pad_token_id,
        with_token_type_ids=engine.uses_token_type_ids,
        prompt=prompt,
        instruction=config.instruction,
    )
    scorer = Scorer(
        engine,
        encoder,
        model_name=resolved.model,
        batch_size=resolved.batch_size,
        long_documents=resolved.long_documents,
        stride=resolved.stride,
        max_windows=resolved.max_windows,
        window_length=resolved.window_length,
    )
    counter = None
    if config.budget_tokenizer is not None:
        counter = load_token_counter(
            config.budget_tokenizer,
            local_files_only=config.local_files_only,
            cache_folder=config.cache_folder,
        )
    return Assembled(resolved, encoder, scorer, counter)
