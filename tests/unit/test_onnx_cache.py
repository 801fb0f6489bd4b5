"""The ONNX export cache: unwritable folders, damaged files, killed and concurrent exports."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from crossrank import ModelLoadError, Reranker

pytest.importorskip("onnxruntime", reason="backend='onnx' needs the onnx extra")

import crossrank.backends.onnx_export as onnx_export

QUERY = "how long does a flea live"
DOCS = ["fleas live a year with a host", "the eiffel tower is in paris", "coffee has caffeine"]
LOGGER = "crossrank.backends.onnx_backend"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty CROSSRANK_CACHE for each test."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("CROSSRANK_CACHE", str(root))
    return root


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at a folder of this test, so fallback exports land where the test can see them."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the target of every export (the real export still runs)."""
    targets: list[Path] = []
    real = onnx_export.build_onnx

    def build(model_dir, target, *args, **kwargs):
        targets.append(Path(target))
        return real(model_dir, target, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "build_onnx", build)
    return targets


def _refuse_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("exported")

    monkeypatch.setattr(onnx_export, "export_onnx", refuse)


def _files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def _reference(tiny_reranker: Reranker) -> list[float]:
    return tiny_reranker.score(QUERY, DOCS)


# -- 1. unwritable cache folders ---------------------------------------------------------------


def test_cache_below_a_regular_file_falls_back_to_a_temporary_export(
    tiny_model_dir, tiny_reranker, tmp_path, temp_dir, builds, monkeypatch, caplog
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CROSSRANK_CACHE", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reranker = Reranker(tiny_model_dir, backend="onnx")
    path = reranker.engine.path
    assert path.is_file() and temp_dir in path.parents  # exported to the temporary folder
    assert len(builds) == 1 and temp_dir in builds[0].parents  # no export was wasted on the cache
    assert np.allclose(reranker.score(QUERY, DOCS), _reference(tiny_reranker), atol=1e-4)
    assert str(blocker / "cache" / "onnx") in caplog.text
    assert "not be cached" in caplog.text and "CROSSRANK_CACHE" in caplog.text


def test_read_only_cache_falls_back_to_a_temporary_export(
    tiny_model_dir, tiny_reranker, cache, temp_dir, builds, monkeypatch, caplog
) -> None:
    (cache / "onnx").mkdir()
    cache.chmod(0o555)
    (cache / "onnx").chmod(0o555)
    # root writes through read-only modes: refuse what the kernel would refuse to anyone else
    real_mkdir, real_open = os.mkdir, os.open
    refused: list[str] = []

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(os.path.abspath(path)).is_relative_to(cache)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            refused.append(str(path))
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refused.append(str(path))
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            reranker = Reranker(tiny_model_dir, backend="onnx")
    finally:
        cache.chmod(0o755)
        (cache / "onnx").chmod(0o755)
    assert refused  # the read-only folder was really tried, and refused
    assert temp_dir in reranker.engine.path.parents
    assert len(builds) == 1 and temp_dir in builds[0].parents
    assert np.allclose(reranker.score(QUERY, DOCS), _reference(tiny_reranker), atol=1e-4)
    assert str(cache / "onnx") in caplog.text and "CROSSRANK_CACHE" in caplog.text
    assert _files(cache) == []


def test_no_writable_folder_at_all_is_a_model_load_error_before_any_export(
    tiny_model_dir, tmp_path, monkeypatch
) -> None:
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CROSSRANK_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
    _refuse_exports(monkeypatch)
    with pytest.raises(ModelLoadError, match=re.escape(str(blocker / "cache" / "onnx"))) as caught:
        Reranker(tiny_model_dir, backend="onnx")
    assert "CROSSRANK_CACHE" in str(caught.value)


# -- 2. damaged cached files -------------------------------------------------------------------


def test_export_writes_a_manifest_with_size_and_checksum(tiny_model_dir, cache) -> None:
    path = Reranker(tiny_model_dir, backend="onnx").engine.path
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    data = path.read_bytes()
    assert manifest["size"] == len(data) > 0
    assert manifest["crc32"] == f"{zlib.crc32(data):08x}"
    # Beside it, the tokenizer transformers builds (what the torch backend tokenises with).
    assert _files(path.parent) == sorted([path.name, path.name + ".json", "tokenizer.json"])


@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["half", "empty"])
def test_truncated_cached_file_is_rebuilt(
    tiny_model_dir, tiny_reranker, cache, keep, monkeypatch, caplog
) -> None:
    path = Reranker(tiny_model_dir, backend="onnx").engine.path
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = Reranker(tiny_model_dir, backend="onnx")
    assert again.engine.path == path and path.stat().st_size > len(data) // 2
    assert str(path) in caplog.text
    assert np.allclose(again.score(QUERY, DOCS), _reference(tiny_reranker), atol=1e-4)
    _refuse_exports(monkeypatch)  # the rebuilt file and its manifest agree: no third export
    assert Reranker(tiny_model_dir, backend="onnx").engine.path == path


def test_cached_file_onnx_runtime_refuses_is_rebuilt(tiny_model_dir, tiny_reranker, cache, caplog) -> None:
    path = Reranker(tiny_model_dir, backend="onnx").engine.path
    manifest_path = path.with_name(path.name + ".json")
    manifest = json.loads(manifest_path.read_text())
    garbage = b"this is not an onnx model" * 10
    path.write_bytes(garbage)  # damaged, but the manifest agrees: only ONNX Runtime can tell
    manifest.update(size=len(garbage), crc32=f"{zlib.crc32(garbage):08x}")
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = Reranker(tiny_model_dir, backend="onnx")
    assert again.engine.path == path and path.read_bytes() != garbage
    assert str(path) in caplog.text
    assert np.allclose(again.score(QUERY, DOCS), _reference(tiny_reranker), atol=1e-4)


def test_rebuilt_file_that_still_fails_is_a_model_load_error(tiny_model_dir, cache, monkeypatch) -> None:
    calls: list[Path] = []

    def broken_build(model_dir, target, *args, **kwargs):
        calls.append(Path(target))
        Path(target).write_bytes(b"broken exporter output")

    monkeypatch.setattr(onnx_export, "build_onnx", broken_build)
    with pytest.raises(ModelLoadError, match=r"model_optimized\.onnx") as caught:
        Reranker(tiny_model_dir, backend="onnx")
    assert len(calls) == 2  # built, refused by ONNX Runtime, rebuilt once, refused again
    assert str(cache) in str(caught.value)


def test_broken_ready_made_onnx_file_is_a_model_load_error_and_left_alone(
    tiny_model_dir, cache, tmp_path, monkeypatch
) -> None:
    import shutil

    folder = tmp_path / "model-with-onnx"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "onnx").mkdir()
    theirs = folder / "onnx" / "model.onnx"
    theirs.write_bytes(b"half a model")
    _refuse_exports(monkeypatch)
    with pytest.raises(ModelLoadError, match=re.escape(str(theirs))):
        Reranker(folder, backend="onnx", onnx_file="onnx/model.onnx")
    assert theirs.read_bytes() == b"half a model"  # never rebuilt or deleted: it is the user's
    assert _files(cache) == []


# -- 3. killed, failed and concurrent exports --------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_export_leaves_nothing_after_the_next_start(tiny_model_dir, cache, tmp_path) -> None:
    code = (
        "import os, signal, sys\n"
        "import crossrank.backends.onnx_export as export\n"
        "export.optimize_onnx = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from crossrank import Reranker\n"
        "Reranker(sys.argv[1], backend='onnx')\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], env=os.environ, check=False)
    assert killed.returncode == -signal.SIGKILL
    leftovers = _files(cache)
    assert any(
        "_work_" in name and name.endswith("raw.onnx") for name in leftovers
    )  # died after the torch export
    assert all("/.build-" in name for name in leftovers), leftovers  # all inside its build folder
    old = time.time() - 3600
    for path in [*cache.rglob("*"), cache]:
        os.utime(path, (old, old))
    path = Reranker(tiny_model_dir, backend="onnx").engine.path
    kept = (path, path.with_name(path.name + ".json"), path.with_name("tokenizer.json"))
    assert _files(cache) == sorted(str(p.relative_to(cache)) for p in kept)
    assert not list(cache.rglob(".build-*"))


def test_sweep_removes_only_stale_build_folders(tiny_model_dir, cache) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    folder = cache / "onnx" / "some-other-model-0123456789abcdef0123"
    ages = {
        f".build-{ended.pid}-old": 3600,  # dead exporter, idle for an hour: stale
        f".build-{ended.pid}-new": 10,  # dead, but only seconds ago: left (could be another host's)
        f".build-{os.getpid()}-live": 3600,  # a live process: still exporting
        f".build-{os.getpid()}-ancient": 3 * 86400,  # days old: stale whoever holds the pid now
    }
    for name, age in ages.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "model_optimized_raw_1_2.onnx").write_bytes(b"x" * 100)
        for path in (folder / name / "model_optimized_raw_1_2.onnx", folder / name):
            os.utime(path, (time.time() - age, time.time() - age))
    Reranker(tiny_model_dir, backend="onnx")
    left = sorted(path.name for path in folder.iterdir())
    assert left == sorted([f".build-{os.getpid()}-live", f".build-{ended.pid}-new"])  # pids may wrap


def test_failed_export_leaves_no_files(tiny_model_dir, cache, monkeypatch) -> None:
    def failing_optimize(source, target, *args, **kwargs):
        Path(str(target) + ".partial.tmp").write_bytes(b"half written")  # as a failing save would
        raise RuntimeError("optimizer failed")

    monkeypatch.setattr(onnx_export, "optimize_onnx", failing_optimize)
    with pytest.raises(RuntimeError, match="optimizer failed"):
        Reranker(tiny_model_dir, backend="onnx")
    assert _files(cache) == []
    assert not list(cache.rglob(".build-*"))


def test_two_processes_exporting_at_once_both_succeed(tiny_model_dir, cache, tmp_path, monkeypatch) -> None:
    # Each process waits in its export until the other one has started its own, so they overlap.
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "import crossrank.backends.onnx_export as export\n"
        "real = export.build_onnx\n"
        "def build(*args, **kwargs):\n"
        "    Path(sys.argv[2]).touch()\n"
        "    deadline = time.time() + 120\n"
        "    while not Path(sys.argv[3]).exists():\n"
        "        if time.time() > deadline:\n"
        "            raise SystemExit('the other export never started')\n"
        "        time.sleep(0.05)\n"
        "    real(*args, **kwargs)\n"
        "export.build_onnx = build\n"
        "from crossrank import Reranker\n"
        "r = Reranker(sys.argv[1], backend='onnx')\n"
        f"print(r.engine.path, r.score({QUERY!r}, {DOCS!r}))\n"
    )
    flags = [tmp_path / "a.started", tmp_path / "b.started"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tiny_model_dir), str(mine), str(other)],
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mine, other in (flags, flags[::-1])
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]  # same file, same scores
    assert not list(cache.rglob(".build-*")) and not list(cache.rglob("*.tmp"))
    _refuse_exports(monkeypatch)  # what they left verifies
    path = Reranker(tiny_model_dir, backend="onnx").engine.path
    assert outputs[0][0].startswith(str(path))
