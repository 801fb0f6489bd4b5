"""ONNX Runtime backend: fp32 or int8, no torch at scoring time.

On first use the model is exported to ONNX, optimised and (with ``quantize="int8"`` or
``"int8-static"``) quantised; the files are cached under ``CROSSRANK_CACHE`` (default
``~/.cache/crossrank``) in a folder keyed by the model's config and weight files (see
:func:`_fingerprint`), so later starts load the ONNX file directly, without importing torch. A
repo that ships ONNX files can be used as is with ``onnx_file=`` (e.g.
``"onnx/model_qint8_avx512_vnni.onnx"``).
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
import threading
import time
import typing
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from crossrank.config import Quantize
from crossrank.encoding import EncodedBatch
from crossrank.errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    ModelLoadError,
    UnsupportedModelError,
)
from crossrank.model_source import ModelSource

__all__ = ["OnnxBackend", "onnx_cache_dir", "quantizes_per_batch"]

logger = logging.getLogger(__name__)

#: Bump when the export recipe or the cache's layout changes, so old cached files are not reused.
#: 5: a manifest (size, CRC-32) next to each file.
EXPORT_VERSION = "5"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: ORT load-time fusions to skip: ``SkipLayerNormFusion`` would undo what
#: :func:`crossrank.backends.onnx_export.optimize_onnx` leaves unfused on purpose (its fused CPU
#: kernel is slower). Harmless on ready-made ONNX files: it removes no fusion already there.
DISABLED_ORT_FUSIONS = ["SkipLayerNormFusion"]


def onnx_cache_dir() -> Path:
    """Where exported ONNX files live: ``$CROSSRANK_CACHE/onnx`` (default ``~/.cache/crossrank/onnx``)."""
    root = os.environ.get("CROSSRANK_CACHE") or Path.home() / ".cache" / "crossrank"
    return Path(root) / "onnx"


def _model_dir(
    source: ModelSource, *, cache_folder: str | None, revision: str | None, token: Any, onnx_file: str | None
) -> Path:
    """A local folder with the model's config, tokenizer and weights (or the requested ONNX file)."""
    if Path(source.location).is_dir():
        return Path(source.location)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model"] + ([onnx_file] if onnx_file else ["model.safetensors"])
    try:
        return Path(
            snapshot_download(
                source.location,
                revision=revision,
                cache_dir=cache_folder,
                token=token,
                local_files_only=source.local_files_only,
                allow_patterns=patterns,
            )
        )
    except Exception as err:
        raise ModelLoadError(
            f"Cannot fetch the files of model {source.name!r}: {type(err).__name__}: {err}", model=source.name
        ) from err


def _fingerprint(model_dir: Path) -> str:
    """The cache key: the export recipe, the config's bytes, and where and how big the weights are.

    Weights are identified by their resolved path, size and modification time, not by hashing
    them (hashing cost ~0.1 s per start for a 90 MB model, a tenth of a cached cold start). In
    the Hugging Face cache the resolved path is a blob named by the file's content hash, so a new
    revision gets a new key; in a plain folder, re-saving the weights changes their mtime. A copy
    of the same weights elsewhere is exported once more, which costs time, never correctness.
    """
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for name in _WEIGHT_FILES:
        path = model_dir / name
        if path.is_file():
            real = path.resolve()
            stat = real.stat()
            digest.update(f"{name}\0{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _num_labels(config: dict[str, Any]) -> int:
    if "id2label" in config:
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


class OnnxBackend:
    """Runs an exported cross-encoder with ONNX Runtime. Use :meth:`load`."""

    name = "onnx"

    def __init__(
        self,
        session: Any,
        tokenizer: Tokenizer,
        *,
        max_positions: int,
        pad_token_id: int,
        device: str,
        path: Path,
        quantize: str | None = None,
        per_batch_scales: bool | None = None,
    ) -> None:
        self._session = session
        self._inputs = [node.name for node in session.get_inputs()]
        self._lock = threading.Lock()
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = "token_type_ids" in self._inputs
        self.device = device
        self.path = path
        #: ONNX Runtime costs ~1-2 ms per run on CPU (10-20 tokens' worth for MiniLM-L6), so tight
        #: batches win; on CUDA, as for torch, few wide batches (not measured yet).
        self.batch_overhead_tokens = 4096 if device.startswith("cuda") else 32
        if per_batch_scales is None:
            per_batch_scales = quantize == "int8"
        # A file with per-batch scales gets int8's batches, whatever ``quantize`` named it.
        recipe = RECIPES["int8" if per_batch_scales else quantize]
        self.default_batch_size = recipe.batch_size or (128 if device.startswith("cuda") else 32)
        #: Dynamic int8 activations are quantised per batch: a row's logit moves with its batch-mates.
        self.batch_invariant = not per_batch_scales

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        quantize: str | None = None,
        onnx_file: str | None = None,
        precision: str = "auto",
        threads: int | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> OnnxBackend:
        """Find or build the ONNX file for ``source`` and open an ONNX Runtime session on it.

        Args:
            source: Where the model is.
            device: ``"cpu"`` (default) or ``"cuda"`` (needs ``onnxruntime-gpu``).
            quantize: None for fp32, ``"int8"`` for dynamic int8, ``"int8-static"`` for static int8.
            onnx_file: Path inside the model folder/repo of a ready ONNX file to use as is.
            precision: ``"auto"`` or ``"fp32"`` (:class:`~crossrank.backends.onnx_options.OnnxOptions`
                refuses others): the file's own precision runs.
            threads: ONNX Runtime intra-op threads. Defaults to the CPUs this process may use
                (:func:`crossrank.cpus.usable_cpus`).

        Raises:
            BackendUnavailableError: onnxruntime (or, to export, onnx) is not installed.
            UnsupportedModelError: More than one output label, or no ``tokenizer.json``.
        """
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                "backend='onnx' needs onnxruntime: pip install 'crossrank[onnx]'"
            ) from err
        if quantize not in RECIPES:
            raise InvalidArgumentError(
                f"quantize must be None or one of {list(typing.get_args(Quantize))}, got {quantize!r}"
            )
        if model_kwargs:
            raise InvalidArgumentError("model_kwargs apply to backend='torch' only")
        model_dir = _model_dir(
            source, cache_folder=cache_folder, revision=revision, token=token, onnx_file=onnx_file
        )
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if _num_labels(config) != 1:
            raise UnsupportedModelError(
                f"Model {source.name!r} has {_num_labels(config)} output labels; crossrank reranks with "
                "models that give one relevance logit per pair.",
                model=source.name,
            )
        tokenizer, pad_token_id, max_positions = _tokenizer_settings(model_dir, config, source.name)

        if onnx_file is not None:
            path = model_dir / onnx_file
            if not path.is_file():
                raise ModelLoadError(
                    f"Model {source.name!r} has no ONNX file {onnx_file!r}", model=source.name
                )
        else:
            # A local folder is named by its absolute path, so "../m" and "/abs/m" share one export.
            cache_name = str(model_dir.resolve()) if Path(source.location).is_dir() else source.name
            path = _cached_onnx(model_dir, cache_name, config, quantize)

        from crossrank.cpus import usable_cpus

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Default: the CPUs this process may really use (affinity, cgroup quota), not the machine's.
        options.intra_op_num_threads = threads if threads is not None else usable_cpus()
        # No spin-waiting: ORT's pool threads otherwise spin for work between (and after) the
        # parallel parts of a run, on cores another engine or process may need; with the cores
        # shared, int8 scoring then ran at half speed (docs/performance.md, "Sharing the cores").
        # CROSSRANK_ORT_SPIN=1 (private, for benchmarks/shared_cores.py) gives ORT's spinning back.
        spin = "1" if os.environ.get("CROSSRANK_ORT_SPIN", "0").strip() == "1" else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        use_cuda = (device or "cpu").startswith("cuda")
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        )
        session, path = _open_session(
            lambda file: ort.InferenceSession(
                str(file), options, providers=providers, disabled_optimizers=DISABLED_ORT_FUSIONS
            ),
            path,
            model=source.name,
            rebuild=None
            if onnx_file is not None
            else lambda: _cached_onnx(model_dir, cache_name, config, quantize, rebuild=True),
        )
        running = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        return cls(
            session,
            tokenizer,
            max_positions=max_positions,
            pad_token_id=pad_token_id,
            device=running,
            path=path,
            quantize=quantize,
            # A ready-made file also says itself whether it quantises activations per batch
            # (optimum's and ORT's dynamic int8 files do), even with no ``quantize`` given.
            per_batch_scales=quantize == "int8" or (onnx_file is not None and quantizes_per_batch(path)),
        )

    @property
    def session(self) -> Any:
        """The ONNX Runtime ``InferenceSession`` (its options, providers, inputs)."""
        return self._session

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        feed = {name: value for name, value in batch.as_dict().items() if name in self._inputs}
        with self._lock:  # one run at a time: ORT already spreads one run over the cores
            (logits,) = self._session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32).reshape(-1)


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


#: Operators of ORT's dynamic quantisation: they compute an activation scale from the whole batch
#: tensor at run time, so a row's result depends on its batch-mates.
_PER_BATCH_OPS = frozenset(
    {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM"}
)


def quantizes_per_batch(path: Path) -> bool:
    """Whether the ONNX graph at ``path`` quantises activations with a scale computed per batch.

    Such a graph (``quantize_dynamic``'s, optimum's ``model_qint8_*.onnx``) scores a row
    differently with different batch-mates, so :meth:`crossrank.Reranker.score_batch` must not mix
    requests in its batches; a graph whose scales are fixed (fp32, or static int8) may.
    """
    try:
        import onnx
    except ImportError:  # onnx is only needed to export; without it, assume the cautious answer
        logger.info("onnx is not installed, so %s can't be inspected: its requests won't be mixed.", path)
        return True
    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = list(graph.node)
    for node in nodes:  # ops inside control-flow subgraphs too
        for attribute in node.attribute:
            nodes += [*attribute.g.node] + [n for g in attribute.graphs for n in g.node]
    return any(node.op_type in _PER_BATCH_OPS for node in nodes)


def _tokenizer_settings(model_dir: Path, config: dict[str, Any], name: str) -> tuple[Tokenizer, int, int]:
    """The fast tokenizer, the pad token id and the longest input the model accepts."""
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UnsupportedModelError(
            f"Model {name!r} has no tokenizer.json (a fast tokenizer), which backend='onnx' needs; "
            "save one with AutoTokenizer.from_pretrained(...).save_pretrained(dir) or use backend='torch'.",
            model=name,
        )
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    settings_file = model_dir / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    pad = settings.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = tokenizer.token_to_id(pad) if pad else None
    if pad_id is None:
        pad_id = int(config.get("pad_token_id") or 0)
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
        positions -= 2  # RoBERTa-style position ids start after the padding index
    declared = settings.get("model_max_length")
    if isinstance(declared, int) and 0 < declared < positions:
        positions = declared
    return tokenizer, int(pad_id), positions


def _cached_onnx(
    model_dir: Path, name: str, config: dict[str, Any], quantize: str | None, *, rebuild: bool = False
) -> Path:
    """The optimised (and maybe quantised) ONNX file for ``model_dir``, exported on first use.

    Each file has a manifest next to it (``<file>.json``: its size and CRC-32), written at export
    and checked at every start; a file that fails the check is deleted and exported again, as is
    one ONNX Runtime refused to load (``rebuild=True``, see :func:`_open_session`). The export runs
    in a private build folder inside the model's cache folder (``.build-<pid>-<random>``), from
    which the manifest, then the file, are moved into place with ``os.replace``: a reader never
    sees half a file or a file without its manifest, and two processes may export at once (the
    export is deterministic: the later one replaces the file with the same bytes). Build folders
    of killed exports are swept at the next start (:func:`_sweep_builds`). A cache folder that
    can't be written is found out before any export work, which then goes to a temporary folder
    (:func:`_temporary_export`).
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip("./")).strip("-")[-60:] or "model"
    folder = onnx_cache_dir() / f"{safe}-{_fingerprint(model_dir)}"
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
        raise BackendUnavailableError(
            "exporting to ONNX needs the onnx package: pip install 'crossrank[onnx]'"
        ) from err
    from crossrank.backends.onnx_export import build_onnx

    try:  # can the cache be written? Asked before the export work, not after it
        folder.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f"{_BUILD_PREFIX}{os.getpid()}-", dir=folder))
    except OSError as err:
        return _temporary_export(model_dir, name, config, quantize, wanted.name, folder, err)
    logger.warning("Exporting %r to ONNX (once; cached in %s).", name, folder)
    try:
        built = build / wanted.name
        build_onnx(model_dir, built, config, quantize=quantize)
        _write_manifest(built)
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
        build_onnx(model_dir, build / filename, config, quantize=quantize)
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


def _open_session(
    open_file: Callable[[Path], Any], path: Path, *, model: str, rebuild: Callable[[], Path] | None
) -> tuple[Any, Path]:
    """``open_file(path)`` (an ONNX Runtime session), its load errors made :class:`ModelLoadError`.

    A cached export ONNX Runtime refuses is deleted and exported once more (``rebuild``); a file
    of the user's (``rebuild=None``) is never touched.
    """
    try:
        return open_file(path), path
    except Exception as err:  # ORT's errors (InvalidProtobuf, Fail...) derive from Exception only
        if rebuild is None:
            raise ModelLoadError(
                f"ONNX Runtime cannot load the ONNX file {path}: {type(err).__name__}: {err}", model=model
            ) from err
        logger.warning(
            "ONNX Runtime cannot load the cached ONNX file %s (%s: %s); deleting it and exporting again.",
            path,
            type(err).__name__,
            err,
        )
    path = rebuild()
    try:
        return open_file(path), path
    except Exception as err:
        raise ModelLoadError(
            f"ONNX Runtime cannot load the ONNX file {path}, even exported afresh: "
            f"{type(err).__name__}: {err}",
            model=model,
        ) from err
