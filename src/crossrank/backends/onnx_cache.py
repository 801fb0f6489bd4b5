"""The cache of exported ONNX files: one folder per model and recipe, safe to share.

:func:`cached_onnx` exports a model once (:func:`crossrank.backends.onnx_export.build_onnx`) into
``$CROSSRANK_CACHE/onnx/<name>-<fingerprint>/``, with a manifest (size, CRC-32) next to each file
checked at every start; builds happen in private folders and are moved into place atomically, and
a cache that can't be written falls back to a temporary folder. :data:`RECIPES` names each
``quantize`` value's file and default batch.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import typing
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crossrank.backends.onnx_files import WEIGHT_FILES
from crossrank.config import Quantize
from crossrank.errors import BackendUnavailableError, ModelLoadError
from crossrank.families import Family

__all__ = [
    "EXPORTED_TOKENIZER",
    "EXPORT_VERSION",
    "RECIPES",
    "Recipe",
    "cache_root",
    "cached_onnx",
    "onnx_cache_dir",
]

logger = logging.getLogger(__name__)

#: Bump when the export recipe or the cache's layout changes, so old cached files are not reused.
#: 5: a manifest (size, CRC-32) next to each file. 6: transformers' tokenizer kept beside them.
EXPORT_VERSION = "6"
#: The tokenizer transformers builds for the model, kept beside an export (from weights): the
#: ONNX backend runs it, as the torch backend does (see onnx_files.tokenizer_settings).
EXPORTED_TOKENIZER = "tokenizer.json"


def cache_root() -> Path:
    """crossrank's own cache: ``$CROSSRANK_CACHE`` (default ``~/.cache/crossrank``), a folder per engine."""
    return Path(os.environ.get("CROSSRANK_CACHE") or Path.home() / ".cache" / "crossrank")


def onnx_cache_dir() -> Path:
    """Where exported ONNX files live: ``$CROSSRANK_CACHE/onnx`` (default ``~/.cache/crossrank/onnx``)."""
    return cache_root() / "onnx"


def _fingerprint(model_dir: Path, source: Path | None = None, family: Family | None = None) -> str:
    """The cache key: the export recipe, the config's bytes, and where and how big the weights are.

    Weights are identified by their resolved path, size and modification time, not by hashing
    them (hashing cost ~0.1 s per start for a 90 MB model, a tenth of a cached cold start); a shipped
    fp32 ONNX file quantised here (``source``) counts as the weights. In
    the Hugging Face cache the resolved path is a blob named by the file's content hash, so a new
    revision gets a new key; in a plain folder, re-saving the weights changes their mtime. A copy
    of the same weights elsewhere is exported once more, which costs time, never correctness.
    """
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    if family is not None and family.prompt is not None:  # the prompt's tokens are in the graph
        digest.update(f"family\0{family.name}".encode())
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for name, path in [(name, model_dir / name) for name in WEIGHT_FILES] + (
        [("onnx-source", source)] if source is not None else []
    ):
        if path.is_file():
            real = path.resolve()
            stat = real.stat()
            digest.update(f"{name}\0{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class Recipe(typing.NamedTuple):
    """What each ``quantize`` value means here: its cached file, and its default batch (None: the
    device's)."""

    file: str
    batch_size: int | None


# Dynamic int8 activations are quantised with one scale per batch tensor, so the batch's largest
# activation sets every row's resolution. On DL19's BM25 top 100 (MiniLM-L6 fixture), nDCG@10 was
# 0.5365 with batches of 32, 0.5459 with 8, 0.5460 with 4 and 0.5491 with 1 (fp32: 0.5495), at the
# same docs/s down to 4 (111 vs 106): so they hold 4 pairs. Static int8 (fixed scales) ran fastest
# with 16 (DL19 top 20: 6.6 s, 6.8 with 8 or 32).
#: One entry per ``quantize`` value (None is fp32); checked against :data:`crossrank.config.Quantize`.
RECIPES: dict[str | None, Recipe] = {
    None: Recipe("model_optimized.onnx", None),
    "int8": Recipe("model_optimized_qint8.onnx", 4),
    "int8-static": Recipe("model_optimized_qint8_static.onnx", 16),
}
assert set(RECIPES) == {None, *typing.get_args(Quantize)}, "a quantize value without a recipe"


def cached_onnx(
    model_dir: Path,
    name: str,
    config: dict[str, Any],
    quantize: str | None,
    *,
    source: Path | None = None,
    family: Family | None = None,
    rebuild: bool = False,
) -> Path:
    """The optimised (and maybe quantised) ONNX file for ``model_dir``, exported on first use.

    From the model's torch weights, or with ``source`` from a ready fp32 ONNX file (a hub
    repository's ``onnx/model.onnx``), which is optimised and quantised without torch. ``family``:
    an LLM reranker's (:mod:`crossrank.families`) is exported with its yes-no head folded.

    Each file has a manifest next to it (``<file>.json``: its size and CRC-32), written at export
    and checked at every start; a file that fails the check is deleted and exported again, as is
    one an engine refused to load (``rebuild=True``, see
    :func:`crossrank.backends.onnx_backend.open_onnx_file`). The export runs
    in a private build folder inside the model's cache folder (``.build-<pid>-<random>``), from
    which the manifest, then the file, are moved into place with ``os.replace``: a reader never
    sees half a file or a file without its manifest, and two processes may export at once (the
    export is deterministic: the later one replaces the file with the same bytes). Build folders
    of killed exports are swept at the next start (:func:`_sweep_builds`). A cache folder that
    can't be written is found out before any export work, which then goes to a temporary folder
    (:func:`_temporary_export`).
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip("./")).strip("-")[-60:] or "model"
    folder = onnx_cache_dir() / f"{safe}-{_fingerprint(model_dir, source, family)}"
    wanted = folder / RECIPES[quantize].file
    _sweep_builds(onnx_cache_dir().glob(f"*/{_BUILD_PREFIX}*"))
    if rebuild:
        _discard(wanted, None)
    elif wanted.is_file():
        seen, problem = _damage(wanted)
        if problem is None:
            return wanted
        logger.warning(
            "The cached ONNX file %s is damaged (%s); deleting it and exporting again.", wanted, problem
        )
        _discard(wanted, seen)
    try:
        import onnx  # noqa: F401  (the optimizer and quantizer need it)
    except ImportError as err:
        if source is not None:
            raise BackendUnavailableError(
                f"{name!r} ships an fp32 ONNX file but no {quantize} one; quantising it here needs the "
                "onnx package (no torch): pip install 'crossrank[onnx]'. Or run it in fp32 (no quantize)."
            ) from err
        raise BackendUnavailableError(
            "exporting to ONNX needs the onnx package: pip install 'crossrank[torch]'"
        ) from err
    from crossrank.backends.onnx_export import build_onnx

    try:  # can the cache be written? Asked before the export work, not after it
        folder.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f"{_BUILD_PREFIX}{os.getpid()}-", dir=folder))
    except OSError as err:
        return _temporary_export(model_dir, name, config, quantize, wanted.name, folder, err, source, family)
    what = f"Quantising {source.name} of {name!r} to {quantize}" if source else f"Exporting {name!r} to ONNX"
    logger.warning("%s (once; cached in %s).", what, folder)
    try:
        built = build / wanted.name
        build_onnx(model_dir, built, config, quantize=quantize, source=source, family=family)
        _write_manifest(built)
        if source is None:  # exported from the weights: keep the tokenizer torch would use
            from crossrank.backends.onnx_files import transformers_tokenizer

            kept = transformers_tokenizer(model_dir)
            if kept is not None:
                kept.save(str(build / EXPORTED_TOKENIZER))
                os.replace(build / EXPORTED_TOKENIZER, folder / EXPORTED_TOKENIZER)
        weights = built.with_name(built.name + ".data")  # an LLM over 2 GB keeps its weights apart
        if weights.is_file():
            os.replace(weights, wanted.with_name(weights.name))
        os.replace(_manifest(built), _manifest(wanted))  # the manifest first: whoever sees the
        os.replace(built, wanted)  # file sees its manifest
    except OSError as err:
        raise ModelLoadError(
            f"Exporting {name!r} to ONNX in {folder} failed: {type(err).__name__}: {err}", model=name
        ) from err
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return wanted


#: A build folder whose process is gone is removed once idle this long (seconds); one idle this
#: long is removed whoever holds its pid now (pids are reused; the cache may be shared by hosts).
_STALE_BUILD_S = 10 * 60
_ABANDONED_BUILD_S = 24 * 60 * 60
_BUILD_PREFIX = ".build-"
_TEMPORARY_PREFIX = "crossrank-onnx-"


def _temporary_export(
    model_dir: Path,
    name: str,
    config: dict[str, Any],
    quantize: str | None,
    filename: str,
    folder: Path,
    why: OSError,
    source: Path | None,
    family: Family | None,
) -> Path:
    """Export to a new temporary folder (removed at exit), for when the cache can't be written."""
    from crossrank.backends.onnx_export import build_onnx

    logger.warning(
        "The ONNX cache folder %s can't be written (%s: %s), so the ONNX export of %r will not be "
        "cached: it goes to a temporary folder, and every start exports again. Set CROSSRANK_CACHE "
        "to a writable folder to cache it.",
        folder,
        type(why).__name__,
        why,
        name,
    )
    try:
        temporary = Path(tempfile.gettempdir())
        _sweep_builds(temporary.glob(f"{_TEMPORARY_PREFIX}*"))
        build = Path(tempfile.mkdtemp(prefix=f"{_TEMPORARY_PREFIX}{os.getpid()}-", dir=temporary))
    except OSError as err:
        raise ModelLoadError(
            f"Cannot export {name!r} to ONNX: the cache folder {folder} can't be written "
            f"({type(why).__name__}: {why}), nor can a temporary folder ({type(err).__name__}: {err}). "
            "Set CROSSRANK_CACHE to a writable folder.",
            model=name,
        ) from err
    atexit.register(shutil.rmtree, build, ignore_errors=True)
    try:
        build_onnx(model_dir, build / filename, config, quantize=quantize, source=source, family=family)
    except BaseException as err:
        shutil.rmtree(build, ignore_errors=True)
        if isinstance(err, OSError):
            raise ModelLoadError(
                f"Exporting {name!r} to ONNX in {build} failed: {type(err).__name__}: {err}. The cache "
                f"folder {folder} can't be written either; set CROSSRANK_CACHE to a writable folder.",
                model=name,
            ) from err
        raise
    return build / filename


def _manifest(path: Path) -> Path:
    """Where the manifest of the exported file ``path`` is: ``<path>.json``."""
    return path.with_name(path.name + ".json")


def _checksum(path: Path) -> str:
    """CRC-32 of the file, in hex.

    Checked at every start, so chosen for speed: 32 ms for 90 MB (MiniLM-L6 fp32) against 60 ms
    for SHA-256 (2-core AMD EPYC, with SHA extensions). It guards against accidental damage
    (truncation, a torn write, a bad disk); a cryptographic hash would add nothing, since whoever
    can rewrite the file can rewrite the manifest next to it.
    """
    crc = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _write_manifest(path: Path) -> None:
    manifest = {
        "file": path.name,
        "size": path.stat().st_size,
        "crc32": _checksum(path),
        "export_version": EXPORT_VERSION,
    }
    _manifest(path).write_text(json.dumps(manifest) + "\n", encoding="utf-8")


def _damage(path: Path) -> tuple[os.stat_result | None, str | None]:
    """The file's stat and what is wrong with it by its manifest (None: nothing)."""
    try:
        seen = path.stat()
        manifest = json.loads(_manifest(path).read_text(encoding="utf-8"))
        size, crc = int(manifest["size"]), str(manifest["crc32"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"no readable manifest {_manifest(path).name}: {type(err).__name__}: {err}"
    if seen.st_size != size:
        return seen, f"{seen.st_size} bytes, {size} when exported"
    try:
        if _checksum(path) != crc:
            return seen, "its CRC-32 differs from the one recorded at export"
    except OSError as err:
        return seen, f"unreadable: {type(err).__name__}: {err}"
    return seen, None


def _discard(path: Path, seen: os.stat_result | None) -> None:
    """Delete a damaged cached file and its manifest, unless another process replaced it since
    ``seen`` (its stat when found damaged; None: delete whatever is there)."""
    try:
        if seen is not None:
            now = path.stat()
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (seen.st_ino, seen.st_size, seen.st_mtime_ns):
                return
        path.unlink(missing_ok=True)
        _manifest(path).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache: the export goes to a temporary folder instead


def _sweep_builds(builds: Iterable[Path]) -> None:
    """Remove the build folders of exports that were killed (named ``<prefix><pid>-<random>``).

    One is stale once nothing in it has changed for :data:`_STALE_BUILD_S` and its process is
    gone, or after :data:`_ABANDONED_BUILD_S` in any case. A running export (this process's or
    another's) is left alone. Errors are ignored: sweeping is housekeeping.
    """
    now = time.time()
    try:
        candidates = list(builds)
    except OSError:  # no cache folder, or one under a file
        return
    for build in candidates:
        match = re.match(r"(?:\.build|crossrank-onnx)-(\d+)-", build.name)
        if match is None:
            continue
        try:
            with os.scandir(build) as entries:
                changed = max([build.stat().st_mtime, *(entry.stat().st_mtime for entry in entries)])
        except OSError:
            continue
        idle = now - changed
        if idle > _ABANDONED_BUILD_S or (idle > _STALE_BUILD_S and not _pid_alive(int(match[1]))):
            logger.info("Removing %s, left by an ONNX export that did not finish.", build)
            shutil.rmtree(build, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (assumed so where that can't be asked)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # on Windows os.kill(pid, 0) would end the process: age alone decides there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, under another user
    return True
