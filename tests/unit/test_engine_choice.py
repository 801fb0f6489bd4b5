"""backend="auto": the per-CPU rule (crossrank.backends.choice), its log line, and torch's bf16 weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from crossrank import Reranker, RerankerConfig
from crossrank.backends import choice as choice_module
from crossrank.backends.choice import choose_backend
from crossrank.cpus import native_bf16

AVX2 = {"avx2", "fma"}
VNNI = {"avx2", "avx512f", "avx512_vnni"}
AMX = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
ARM = {"arm64", "asimddp"}
FULL = {"torch", "onnx", "export"}  # pip install 'crossrank[torch]'
SLIM = {"onnx"}  # pip install crossrank
QUERY = "how long does a flea live"
DOCS = ["fleas live a year with a host", "the eiffel tower is in paris", "", "flea " * 30]


def picked(features, installed, model="org/minilm", options=None, **kwargs) -> str:
    return choose_backend(
        model, options or {}, features=features, installed=installed, gpu_visible=False, **kwargs
    ).backend


@pytest.mark.parametrize(
    ("features", "installed", "expected"),
    [
        (AVX2, FULL, "onnx"),  # fp32 ONNX: faster than torch fp32 there, same top 3
        (VNNI, FULL, "onnx"),  # int8 would be faster, but changes the top 3: opt-in only
        (ARM, FULL, "onnx"),
        (AVX2, SLIM, "onnx"),
        (AVX2, {"torch", "onnx"}, "torch"),  # torch without the onnx package can't export
        (AVX2, FULL | {"openvino"}, "onnx"),  # OpenVINO fp32 is no faster than ORT fp32 on AVX2
        (AMX, FULL | {"openvino"}, "openvino"),  # bf16 by OpenVINO's own default there
        (AMX, SLIM | {"openvino"}, "openvino"),
        (AMX, FULL, "torch"),  # bf16 weights
        (AMX, {"torch", "onnx", "openvino"}, "torch"),  # no export: OpenVINO has no file to read
        (AMX, SLIM, "onnx"),
        ({"avx512_bf16"}, FULL, "torch"),
    ],
)
def test_each_cpu_gets_its_fastest_faithful_engine(features, installed, expected) -> None:
    assert picked(features, installed) == expected


def test_explicit_choices_and_options_win_over_the_cpu() -> None:
    assert picked(AMX, FULL | {"openvino"}, options={"quantize": "int8"}) == "onnx"
    # A file both ONNX engines read: the CPU decides between them, as for a folder of ONNX files.
    assert picked(AMX, FULL | {"openvino"}, options={"onnx_file": "onnx/model.onnx"}) == "openvino"
    assert picked(AVX2, FULL | {"openvino"}, options={"onnx_file": "onnx/model.onnx"}) == "onnx"
    # Options only OpenVINO takes choose it; bf16 goes to an installed engine that computes it.
    assert picked(AVX2, SLIM | {"openvino"}, options={"cache_dir": "/tmp/compiled"}) == "openvino"
    assert picked(AMX, FULL | {"openvino"}, options={"precision": "bf16"}) == "openvino"
    assert picked(AMX, SLIM | {"openvino"}, options={"precision": "bf16"}) == "openvino"
    assert picked(AVX2, FULL, options={"trust_remote_code": True}) == "torch"
    assert picked(AVX2, FULL, options={"precision": "bf16"}) == "torch"  # ONNX has no bf16
    assert picked(AVX2, FULL, device="cuda:1") == "torch"
    assert picked(AVX2, FULL, device="cpu") == "onnx"
    assert RerankerConfig(backend="torch").resolved_backend() == "torch"  # never overridden


def test_a_gpu_and_llm_rerankers_stay_on_torch() -> None:
    gpu = choose_backend("org/minilm", {}, features=AVX2, installed=FULL, gpu_visible=True)
    assert gpu.backend == "torch" and "GPU" in gpu.reason
    assert choose_backend("m", {}, features=AVX2, installed=SLIM, gpu_visible=True).backend == "onnx"
    for llm in ("Qwen/Qwen3-Reranker-0.6B", "mixedbread-ai/mxbai-rerank-base-v2"):
        assert picked(AMX, FULL | {"openvino"}, model=llm) == "torch"
        assert picked(AVX2, SLIM, model=llm) == "onnx"  # without torch: its ONNX files


def test_a_folder_of_onnx_files_runs_them(tmp_path: Path) -> None:
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    assert picked(AVX2, FULL, model=str(tmp_path)) == "onnx"
    assert picked(AMX, FULL | {"openvino"}, model=str(tmp_path)) == "openvino"
    (tmp_path / "model.safetensors").write_bytes(b"")  # weights: the rule for models applies
    assert picked(AMX, FULL, model=str(tmp_path)) == "torch"


def test_the_choice_is_logged_once_with_the_cpu(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossrank.cpus import cpu_summary

    monkeypatch.setattr(choice_module, "_logged", set())
    with caplog.at_level(logging.INFO, logger="crossrank.backends.choice"):
        first = Reranker(tiny_model_dir, device="cpu")
        Reranker(tiny_model_dir, device="cpu")
    lines = [r.getMessage() for r in caplog.records if r.name == "crossrank.backends.choice"]
    assert len(lines) == 1 and f"runs {first.backend} on {cpu_summary()}" in lines[0]
    assert first.to_config().backend == first.backend


def test_torch_auto_precision_is_bf16_weights_where_the_cpu_has_bf16(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from crossrank.backends import torch_backend

    fp32 = Reranker(tiny_model_dir, backend="torch", device="cpu", precision="fp32")
    monkeypatch.setattr(torch_backend, "native_bf16", lambda: True)  # as on AMX
    bf16 = Reranker(tiny_model_dir, backend="torch", device="cpu")  # precision "auto"
    assert fp32.engine.precision == "fp32"
    assert bf16.engine.precision == "bf16" and not bf16.engine.batch_invariant
    dtypes = {p.dtype for p in bf16.engine.cross_encoder.parameters()}
    assert dtypes == {torch.bfloat16}  # weights, not autocast over fp32 ones
    ours, reference = bf16.score(QUERY, DOCS), fp32.score(QUERY, DOCS)
    assert all(type(s) is float for s in ours) and ours != reference
    assert np.max(np.abs(np.subtract(ours, reference))) < 0.05


def test_a_cross_encoder_handed_in_is_never_cast(tiny_model_dir: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from crossrank.backends.torch_backend import TorchBackend

    theirs = CrossEncoder(str(tiny_model_dir), device="cpu")
    engine = TorchBackend.from_cross_encoder(theirs, model_name="theirs", precision="bf16")
    Reranker.from_backend(engine).score(QUERY, DOCS)
    assert {p.dtype for p in theirs.parameters()} == {torch.float32}  # autocast, their weights untouched


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (AMX or AVX512-BF16)")
def test_on_a_bf16_cpu_auto_runs_bf16(tiny_model_dir: Path) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu")
    assert reranker.engine.precision == "bf16"
