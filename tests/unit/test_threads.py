"""Thread counts: torch's is a process setting applied once at load, never per call; the defaults
follow the CPUs the process may really use (affinity, cgroup quota); ORT's spinning switch."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import crossrank.backends.torch_backend as torch_backend
import crossrank.cpus as cpus
from crossrank import Reranker
from crossrank.cpus import usable_cpus

QUERY = "how long does a flea live"
DOCS = ["fleas live a year with a host", "the eiffel tower is in paris", "coffee has caffeine", ""]


@pytest.fixture
def torch_threads_restored(monkeypatch: pytest.MonkeyPatch):
    """A process as if no torch backend had been loaded; torch's count put back afterwards."""
    before = torch.get_num_threads()
    for name, fresh in (("_created", False), ("_applied_threads", None), ("_checked_usable", False)):
        monkeypatch.setattr(torch_backend, name, fresh, raising=False)
    yield before
    torch.set_num_threads(before)


def _count_in_a_new_thread() -> int:
    """torch's count as a thread started now gets it: the process-wide value.

    (torch with OpenMP also keeps a copy per thread that has run torch code, which
    ``torch.get_num_threads()`` reads in that thread; new threads start from the process value.)
    """
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def _record_threads(reranker: Reranker, seen: list[int]):
    """Hook the first module of every forward pass: note torch's thread count, then linger a little
    so the forward passes of two Rerankers overlap."""

    def hook(module, args) -> None:
        seen.append(torch.get_num_threads())
        time.sleep(0.002)

    embeddings = reranker.engine.cross_encoder.model.base_model.embeddings
    return embeddings.register_forward_pre_hook(hook)


# -- torch: two Rerankers with different threads= used at once ---------------------------------------


def test_two_torch_rerankers_with_different_threads_hammered_at_once(
    tiny_model_dir: Path, torch_threads_restored: int
) -> None:
    one = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=1)
    two = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=2)
    expected = {"one": one.score(QUERY, DOCS), "two": two.score(QUERY, DOCS)}
    settled = torch.get_num_threads()  # what the process runs with once both are loaded
    assert _count_in_a_new_thread() == settled
    seen: list[int] = []
    hooks = [_record_threads(one, seen), _record_threads(two, seen)]
    barrier = threading.Barrier(8)

    def hammer(worker: int) -> list[tuple[str, list[float]]]:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        out = []
        for i in range(12):
            name, reranker = ("one", one) if (worker + i) % 2 else ("two", two)
            out.append((name, reranker.score(QUERY, DOCS)))
        return out

    finals = []
    try:
        for _ in range(3):  # the same end state every time, not a race's outcome
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = [item for chunk in pool.map(hammer, range(8)) for item in chunk]
            finals.append((torch.get_num_threads(), _count_in_a_new_thread()))
    finally:
        for hook in hooks:
            hook.remove()
    assert finals == [(settled, settled)] * 3  # scoring left the process where loading put it
    assert len(seen) >= 8 * 12 * 3 and set(seen) == {settled}  # no pass changed it, even for itself
    for name, scores in results:
        assert scores == pytest.approx(expected[name], abs=1e-6)


def test_overlapping_forward_passes_leave_the_process_count_alone(
    tiny_model_dir: Path, torch_threads_restored: int
) -> None:
    """The interleaving that left a server at 1 thread (8 -> 1): in two worker threads, A
    (threads=1) enters its pass, B (threads=2) enters, A leaves, B leaves."""
    torch.set_num_threads(3)
    a = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=1)
    b = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=2)
    settled = torch.get_num_threads()
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()

    def a_waits_for_b(module, args) -> None:
        a_inside.set()
        b_inside.wait(timeout=5)

    def b_is_inside(module, args) -> None:
        b_inside.set()

    def b_waits_for_a(module, args, output) -> None:
        a_done.wait(timeout=5)

    b_model = b.engine.cross_encoder  # the CrossEncoder: its hooks run inside the backend's call
    hooks = [
        a.engine.cross_encoder.register_forward_pre_hook(a_waits_for_b),
        b_model.register_forward_pre_hook(b_is_inside),
        b_model.register_forward_hook(b_waits_for_a),
    ]
    b_after: list[int] = []

    def run_a() -> None:
        a.score(QUERY, DOCS[:1])  # A's pass, and whatever A does after it, ends first
        a_done.set()

    def run_b() -> None:
        b.score(QUERY, DOCS[:1])
        b_after.append(torch.get_num_threads())

    try:
        first = threading.Thread(target=run_a)
        first.start()
        assert a_inside.wait(timeout=10)
        second = threading.Thread(target=run_b)
        second.start()
        first.join(timeout=10)
        second.join(timeout=10)
    finally:
        for hook in hooks:
            hook.remove()
    assert a_inside.is_set() and b_inside.is_set() and a_done.is_set()  # they did overlap as planned
    assert b_after == [settled]  # B's thread keeps the process's count
    assert _count_in_a_new_thread() == settled  # and so do the threads started afterwards
    assert torch.get_num_threads() == settled


# -- torch: threads= at load --------------------------------------------------------------------------


def test_threads_are_set_once_at_load_for_the_whole_process(
    tiny_model_dir: Path, torch_threads_restored: int, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(3)
    with caplog.at_level(logging.INFO, logger=torch_backend.__name__):
        first = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=1)
    assert torch.get_num_threads() == 1 and _count_in_a_new_thread() == 1
    assert first.engine.threads == 1 and first.to_config().threads == 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("process-wide" in message and "(was 3)" in message for message in infos)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=torch_backend.__name__):
        Reranker(tiny_model_dir, backend="torch", device="cpu", threads=1)  # the same count again: no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.INFO, logger=torch_backend.__name__):
        second = Reranker(tiny_model_dir, backend="torch", device="cpu", threads=2)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "threads=2" in warning and "count 1" in warning
    assert torch.get_num_threads() == 2 and _count_in_a_new_thread() == 2  # the last load wins...
    assert first.engine.threads == 1 and second.engine.threads == 2  # ...each keeps what it asked
    first.score(QUERY, DOCS)
    assert torch.get_num_threads() == 2  # and scoring doesn't touch it


def test_default_threads_lowered_to_usable_cpus_once(
    tiny_model_dir: Path, torch_threads_restored: int, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setattr(torch_backend, "usable_cpus", lambda: 1)
    torch.set_num_threads(3)
    with caplog.at_level(logging.INFO, logger=torch_backend.__name__):
        reranker = Reranker(tiny_model_dir, backend="torch", device="cpu")
    assert torch.get_num_threads() == 1 and _count_in_a_new_thread() == 1
    assert reranker.engine.threads is None
    assert any("may use 1 CPUs" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    torch.set_num_threads(3)  # the user's own later choice stands: the check runs once per process
    Reranker(tiny_model_dir, backend="torch", device="cpu")
    assert torch.get_num_threads() == 3


def test_default_threads_never_raised(tiny_model_dir: Path, torch_threads_restored: int, monkeypatch) -> None:
    monkeypatch.setattr(torch_backend, "usable_cpus", lambda: 64)
    torch.set_num_threads(1)
    Reranker(tiny_model_dir, backend="torch", device="cpu")
    assert torch.get_num_threads() == 1


def test_default_threads_leave_an_explicit_count_alone(
    tiny_model_dir: Path, torch_threads_restored: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_backend, "usable_cpus", lambda: 1)
    Reranker(tiny_model_dir, backend="torch", device="cpu", threads=2)
    Reranker(tiny_model_dir, backend="torch", device="cpu")  # threads=None after an explicit threads=2
    assert torch.get_num_threads() == 2


# -- usable_cpus ---------------------------------------------------------------------------------------


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "_affinity_cpus", lambda: 8)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_usable_cpus_without_cgroup_limits_is_the_affinity(tmp_path: Path, eight_cpus) -> None:
    no_proc = tmp_path / "no-such-file"
    assert usable_cpus(tmp_path, no_proc) == 8  # no cgroup files at all
    _write(tmp_path, "cpu.max", "max 100000")
    assert usable_cpus(tmp_path, no_proc) == 8
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert usable_cpus(tmp_path, no_proc) == 8


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("1600000 100000", 8), ("300000", 3)],
)
def test_usable_cpus_cgroup_v2_quota(tmp_path: Path, eight_cpus, cpu_max: str, expected: int) -> None:
    _write(tmp_path, "cpu.max", cpu_max)
    assert usable_cpus(tmp_path, tmp_path / "no-such-file") == expected


def test_usable_cpus_cgroup_v2_quota_on_the_process_path(tmp_path: Path, eight_cpus) -> None:
    """A systemd service's CPUQuota= lives in its own cgroup, not in the root."""
    _write(tmp_path, "cpu.max", "max 100000")
    _write(tmp_path, "system.slice/cpu.max", "max 100000")
    _write(tmp_path, "system.slice/app.service/cpu.max", "300000 100000")
    _write(tmp_path, "proc-self-cgroup", "0::/system.slice/app.service")
    assert usable_cpus(tmp_path, tmp_path / "proc-self-cgroup") == 3
    _write(tmp_path, "system.slice/cpu.max", "100000 100000")  # a parent's limit binds too
    assert usable_cpus(tmp_path, tmp_path / "proc-self-cgroup") == 1


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(("quota", "period", "expected"), [("200000", "100000", 2), ("25000", "50000", 1)])
def test_usable_cpus_cgroup_v1_quota(
    tmp_path: Path, eight_cpus, folder: str, quota: str, period: str, expected: int
) -> None:
    _write(tmp_path, f"{folder}/cpu.cfs_quota_us", quota)
    _write(tmp_path, f"{folder}/cpu.cfs_period_us", period)
    assert usable_cpus(tmp_path, tmp_path / "no-such-file") == expected


def test_usable_cpus_affinity_below_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "_affinity_cpus", lambda: 2)
    _write(tmp_path, "cpu.max", "400000 100000")
    assert usable_cpus(tmp_path, tmp_path / "no-such-file") == 2


def test_usable_cpus_ignores_garbage_and_is_at_least_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cpus, "_affinity_cpus", lambda: 4)
    _write(tmp_path, "cpu.max", "what 100000")
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert usable_cpus(tmp_path, tmp_path / "no-such-file") == 4
    monkeypatch.setattr(cpus, "_affinity_cpus", lambda: 0)
    assert usable_cpus(tmp_path, tmp_path / "no-such-file") == 1


def test_usable_cpus_here_is_the_affinity_at_most() -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= usable_cpus() <= (affinity or 1)


# -- ONNX Runtime session options ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnxruntime", reason="backend='onnx' needs the onnx extra")
    cache = tmp_path_factory.mktemp("crossrank-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSRANK_CACHE", str(cache))
        yield cache


def _session_options(reranker: Reranker):
    return reranker.engine.session.get_session_options()


def test_onnx_default_threads_are_the_usable_cpus(
    tiny_model_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "_affinity_cpus", lambda: 3)  # ORT itself would take the 2 cores here
    reranker = Reranker(tiny_model_dir, backend="onnx")
    assert _session_options(reranker).intra_op_num_threads == usable_cpus() == min(3, usable_cpus())
    assert _session_options(Reranker(tiny_model_dir, backend="onnx", threads=1)).intra_op_num_threads == 1


@pytest.mark.parametrize(("env", "expected"), [("1", "1"), ("0", "0")])
def test_onnx_spinning_switch(
    tiny_model_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch, env: str, expected: str
) -> None:
    monkeypatch.setenv("CROSSRANK_ORT_SPIN", env)
    options = _session_options(Reranker(tiny_model_dir, backend="onnx"))
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == expected


def test_onnx_spinning_default(tiny_model_dir: Path, onnx_cache: Path, monkeypatch) -> None:
    monkeypatch.delenv("CROSSRANK_ORT_SPIN", raising=False)
    options = _session_options(Reranker(tiny_model_dir, backend="onnx"))
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
