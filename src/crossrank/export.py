"""``crossrank export``: a self-contained ONNX folder that the torch-free install loads as is.

Export needs torch (``pip install 'crossrank[torch]'``), once, on a build machine; the folder it
writes runs anywhere with ONNX Runtime alone: ``Reranker(folder, backend="onnx")``, the server, the
adapters. Its layout is a hub repository's (``config.json``, ``tokenizer.json``,
``onnx/model.onnx``), so any ONNX tool finds the fp32 file, plus crossrank's quantised files and a
manifest (:data:`~crossrank.backends.onnx_files.EXPORT_MANIFEST`) naming each one. The files are
crossrank's own recipes (:func:`crossrank.backends.onnx_export.build_onnx`: the first-token last
layer, fused; int8 per channel), so a folder's int8 scores equal those of the full install's int8.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossrank.errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["ExportResult", "export_model"]

#: What the folder gets besides the ONNX files: the config and every tokenizer file.
_KEPT = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        folder: The export folder.
        files: The ONNX file of each ``quantize`` value (``"fp32"``, ``"int8"``, ``"int8-static"``),
            relative to ``folder``.
        sizes: Each file's size in bytes.
    """

    folder: Path
    files: dict[str, str]
    sizes: dict[str, int] = field(default_factory=dict)


def export_model(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    recipes: Sequence[str] | None = None,
    overwrite: bool = False,
    revision: str | None = None,
    cache_folder: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    family: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``model`` to ``output``: the ONNX files of ``recipes``, its config and tokenizer, a manifest.

    Args:
        model: Hub id or folder of a cross-encoder with one output logit.
        output: The folder to create. It must not exist (or be empty) unless ``overwrite``.
        recipes: Which files: ``"fp32"``, ``"int8"`` (dynamic), ``"int8-static"``; None: each
            one the model's family has (an LLM reranker has no int8-static).
        overwrite: Replace an existing ``output`` (only once the new folder is complete).
        revision, cache_folder, local_files_only, token: Where the model comes from.
        family: The model's family (:mod:`crossrank.families`); None: told from the model.
        progress: Called with each recipe's name as it starts.

    Raises:
        BackendUnavailableError: torch, transformers or onnx are not installed.
        InvalidArgumentError: An unknown recipe, or ``output`` exists.
        ModelLoadError: The model can't be had.

    Example:
        >>> import tempfile
        >>> from crossrank import Reranker
        >>> from crossrank.testing import build_tiny_cross_encoder
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_cross_encoder(f"{folder}/model")
        ...     result = export_model(model, f"{folder}/exported", recipes=("fp32",))
        ...     reranker = Reranker(result.folder, backend="onnx", device="cpu")
        ...     result.files, len(reranker.score("flea", ["fleas live a year"]))
        ({'fp32': 'onnx/model.onnx'}, 1)
    """
    from crossrank.backends.onnx_backend import model_folder
    from crossrank.backends.onnx_cache import EXPORT_VERSION
    from crossrank.backends.onnx_files import (
        EXPORT_MANIFEST,
        EXPORTED_FILES,
        can_export,
        check_reranker_files,
        transformers_tokenizer,
    )
    from crossrank.families import detect_family
    from crossrank.model_source import resolve_model_source

    unknown = [recipe for recipe in recipes or () if recipe not in EXPORTED_FILES]
    if unknown or (recipes is not None and not recipes):
        raise InvalidArgumentError(
            f"recipes must be some of {', '.join(EXPORTED_FILES)}; got {list(recipes or ())}"
        )
    if not can_export():
        raise BackendUnavailableError(
            "crossrank export needs torch, transformers and onnx: pip install 'crossrank[torch]' "
            "(once, on a build machine; the folder it writes needs none of them)"
        )
    target = Path(output)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InvalidArgumentError(
            f"{str(target)!r} exists and is not empty; pass overwrite=True to replace it"
        )
    source = resolve_model_source(
        model, local_files_only=local_files_only, cache_folder=cache_folder, revision=revision, token=token
    )
    model_dir = model_folder(
        source,
        cache_folder=cache_folder,
        revision=revision,
        token=token,
        onnx_file=None,
        quantize=None,
        exporting=True,
    )
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    family = detect_family(source.name, config, family)
    check_reranker_files(model_dir, config, source.name, one_label=family.prompt is None)
    possible = [recipe for recipe in EXPORTED_FILES if family.prompt is None or recipe != "int8-static"]
    if recipes is None:
        recipes = possible
    elif set(recipes) - set(possible):
        raise InvalidArgumentError(
            f"an LLM reranker ({family.name}) has no int8-static recipe (its calibration would need "
            "the prompt); export fp32 and int8"
        )
    inside = target.resolve()
    if inside == model_dir.resolve() or inside in model_dir.resolve().parents:
        raise InvalidArgumentError(
            f"--output {str(target)!r} would replace the model's own folder {str(model_dir)!r}"
        )

    from crossrank.backends import onnx_export

    staged = target.with_name(f".{target.name}.export-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    (staged / "onnx").mkdir(parents=True)
    try:
        for name in _KEPT:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, staged / name)
        # The tokenizer the torch backend and sentence-transformers use (transformers'), so the
        # folder tokenises as they do wherever it runs (see onnx_files.tokenizer_settings).
        built = transformers_tokenizer(model_dir)
        if built is not None:
            built.save(str(staged / "tokenizer.json"))
        files = {}
        for recipe in recipes:
            if progress is not None:
                progress(recipe)
            files[recipe] = EXPORTED_FILES[recipe]
            quantize = None if recipe == "fp32" else recipe
            onnx_export.build_onnx(
                model_dir, staged / files[recipe], config, quantize=quantize, family=family
            )
        manifest = {"model": source.name, "files": files, "export_version": EXPORT_VERSION}
        if family.prompt is not None:  # an exported folder's name no longer says it
            manifest["family"] = family.name
        (staged / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    sizes = {recipe: (target / file).stat().st_size for recipe, file in files.items()}
    return ExportResult(target, files, sizes)


def _move_into_place(staged: Path, target: Path) -> None:
    """``staged`` becomes ``target``; an existing ``target`` is kept aside until then, and put back
    if the move fails, so no failure leaves half of either."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.replace(staged, target)
        return
    aside = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    os.replace(target, aside)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
