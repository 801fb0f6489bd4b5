"""Find where a model's files come from, and fail fast with a useful message when they can't.

sentence-transformers/transformers, asked for a hub id on a machine that cannot reach the hub,
retry with back-off for about a minute before giving up with a generic error. A reranker that
lives in a web worker needs the answer in seconds, so before any loader runs we decide here:

* a local directory → use it (it must hold a ``config.json``);
* offline (``local_files_only=True`` or ``HF_HUB_OFFLINE=1``) → the HF cache, or
  :class:`~crossrank.errors.ModelLoadError` if the model is not cached;
* otherwise one metadata request to the hub with a short timeout: found → let the loader
  download; not found / gated → error; hub unreachable → the HF cache if it holds the model
  (with a warning), else error.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from crossrank.errors import ModelLoadError

__all__ = ["ModelSource", "resolve_model_source"]

logger = logging.getLogger(__name__)

#: Seconds to wait for the hub's answer before treating it as unreachable.
HUB_PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where to load a model from.

    Attributes:
        name: The model as the caller named it (for messages).
        location: What to hand to the loader: a local directory or a hub id.
        local_files_only: Whether the loader must stay off the network.
    """

    name: str
    location: str
    local_files_only: bool


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a path shape is meant as a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or os.path.isabs(model)


def _cache_hint(model: str) -> str:
    return (
        "To use it offline, name a local directory as the model "
        f"(Reranker('/path/to/{model.split('/')[-1]}'), `--model DIR` or CROSSRANK_MODEL=DIR), "
        f"or fill the Hugging Face cache on a connected machine (`hf download {model}`) and point "
        "HF_HOME / HF_HUB_CACHE at it on this one."
    )


def _is_cached(model: str, *, cache_folder: str | None, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(model, "config.json", cache_dir=cache_folder, revision=revision)
    return isinstance(hit, str)


def _hub_offline_env() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_model_source(
    model: str | os.PathLike[str],
    *,
    local_files_only: bool = False,
    cache_folder: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    probe_timeout: float = HUB_PROBE_TIMEOUT_S,
) -> ModelSource:
    """Decide where ``model`` loads from, raising :class:`ModelLoadError` quickly when it can't.

    Args:
        model: A Hugging Face hub id (``"cross-encoder/ms-marco-MiniLM-L6-v2"``) or a local directory.
        local_files_only: Never touch the network; use a local directory or the HF cache.
        cache_folder: The HF cache to look in. Defaults to the standard one (``HF_HUB_CACHE``).
        revision: Hub revision (branch, tag or commit).
        token: Hub token for private or gated models.
        probe_timeout: Seconds to wait for the hub before treating it as unreachable.

    Returns:
        The :class:`ModelSource` to hand to a backend loader.

    Raises:
        ModelLoadError: The directory is missing or incomplete, or the hub id is unknown, or the
            model can't be had offline. The message names the model and what to do.
    """
    name = os.fspath(model)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"Cannot load model {name!r}: the directory {str(path.resolve())!r} has no config.json, "
                "so it is not a Hugging Face model folder (expected config.json, the weights and the "
                "tokenizer files, as `save_pretrained` writes them).",
                model=name,
            )
        return ModelSource(name=name, location=str(path), local_files_only=True)
    if path.exists():
        raise ModelLoadError(
            f"Cannot load model {name!r}: it is a file, but a model is a directory holding config.json, "
            "the weights and the tokenizer files.",
            model=name,
        )
    if _looks_like_path(name):
        raise ModelLoadError(
            f"Cannot load model {name!r}: no such directory ({str(path.resolve())!r}). "
            "Pass an existing model directory, or a Hugging Face hub id such as "
            "'cross-encoder/ms-marco-MiniLM-L6-v2'.",
            model=name,
        )

    cached = _is_cached(name, cache_folder=cache_folder, revision=revision)
    if local_files_only or _hub_offline_env():
        if cached:
            return ModelSource(name=name, location=name, local_files_only=True)
        why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        raise ModelLoadError(
            f"Cannot load model {name!r}: {why}, so the hub was not asked, and the model is not in the "
            f"Hugging Face cache. {_cache_hint(name)}",
            model=name,
            hub_reachable=None,
        )

    from huggingface_hub import HfApi
    from huggingface_hub import errors as hub_errors

    try:
        # A fresh HfApi reads HF_ENDPOINT now (the module-level one froze it at import).
        HfApi().model_info(name, revision=revision, token=token, timeout=probe_timeout)
    except hub_errors.GatedRepoError as err:
        raise ModelLoadError(
            f"Cannot load model {name!r}: it is gated on the Hugging Face Hub; accept its terms and pass "
            f"a token (HF_TOKEN). Hub said: {err}",
            model=name,
            hub_reachable=True,
        ) from err
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError) as err:
        raise ModelLoadError(
            f"Cannot load model {name!r}: the Hugging Face Hub was reachable but has no such model"
            f"{'' if revision is None else f' at revision {revision!r}'} (or it is private: pass a token). "
            "Check the id, e.g. 'cross-encoder/ms-marco-MiniLM-L6-v2', or pass a local directory.",
            model=name,
            hub_reachable=True,
        ) from err
    except Exception as err:  # DNS failure, refused connection, timeout, proxy, HTTP 5xx ...
        answered = isinstance(err, hub_errors.HfHubHTTPError) and err.response is not None
        if cached:
            logger.warning("Hugging Face Hub failed (%s); loading %r from the local cache.", err, name)
            return ModelSource(name=name, location=name, local_files_only=True)
        what = (
            f"the Hugging Face Hub answered with an error ({err})"
            if answered
            else f"the Hugging Face Hub could not be reached ({type(err).__name__}: {err})"
        )
        raise ModelLoadError(
            f"Cannot load model {name!r}: {what} and the model is not in the local cache. "
            f"{_cache_hint(name)}",
            model=name,
            hub_reachable=answered,
        ) from err
    return ModelSource(name=name, location=name, local_files_only=False)
