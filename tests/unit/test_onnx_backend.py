"""backend="onnx": export once, cache, score like torch, load without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossrank import InvalidArgumentError, ModelLoadError, Reranker, UnsupportedModelError

pytest.importorskip(
    "onnxruntime", reason="backend='onnx' needs the onnx extra"
)  # installed by scripts/test.sh

QUERY = "how long does a flea live"
DOCS = ["fleas live a year with a host", "the eiffel tower is in paris", "", "coffee has caffeine " * 40]


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("crossrank-cache")
    previous = os.environ.get("CROSSRANK_CACHE")
    os.environ["CROSSRANK_CACHE"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["CROSSRANK_CACHE"]
    else:
        os.environ["CROSSRANK_CACHE"] = previous


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model_dir: Path) -> Reranker:
    return Reranker(tiny_model_dir, backend="onnx")


def test_fp32_scores_equal_torch(tiny_onnx: Reranker, tiny_reranker: Reranker) -> None:
    assert tiny_onnx.backend == "onnx" and tiny_onnx.device == "cpu"
    assert tiny_onnx.max_length == tiny_reranker.max_length == 128
    ours, torch_scores = tiny_onnx.score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS)
    assert all(type(s) is float for s in ours)
    assert np.max(np.abs(np.subtract(ours, torch_scores))) <= 1e-4


def test_export_is_cached(tiny_model_dir: Path, tiny_onnx: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrank.backends.onnx_export as export

    def refuse(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "export_onnx", refuse)
    again = Reranker(tiny_model_dir, backend="onnx")
    assert again.engine.path == tiny_onnx.engine.path
    assert again.score(QUERY, DOCS) == tiny_onnx.score(QUERY, DOCS)


def test_cached_model_loads_and_scores_without_torch(tiny_model_dir: Path, tiny_onnx: Reranker) -> None:
    code = (
        "import sys, json\n"
        "from crossrank import Reranker\n"
        f"r = Reranker({str(tiny_model_dir)!r}, backend='onnx')\n"
        f"scores = r.score({QUERY!r}, {DOCS!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,"
        " 'scores': scores}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["torch"] is False and payload["transformers"] is False
    assert np.allclose(payload["scores"], tiny_onnx.score(QUERY, DOCS), atol=1e-6)


def test_int8_runs_and_is_cached_separately(tiny_model_dir: Path, tiny_onnx: Reranker) -> None:
    int8 = Reranker(tiny_model_dir, backend="onnx", quantize="int8", threads=1)
    assert int8.engine.path != tiny_onnx.engine.path and int8.engine.path.name.endswith("qint8.onnx")
    assert int8.engine.path.stat().st_size < tiny_onnx.engine.path.stat().st_size
    scores = int8.score(QUERY, DOCS)
    assert len(scores) == len(DOCS) and all(np.isfinite(scores))
    assert int8.to_config().quantize == "int8"
    assert int8.batch_size == 4 and tiny_onnx.batch_size == 32  # int8: one activation scale per batch


def test_static_int8_is_cached_apart_and_mixes_requests_bit_for_bit(
    tiny_model_dir: Path, tiny_onnx: Reranker
) -> None:
    """Static int8 fixes its activation scales at export: no op computes a scale from the batch, so
    requests share batches (length-sorted together) and each still scores exactly as alone."""
    import random

    import onnx

    from crossrank.backends.onnx_backend import quantizes_per_batch

    static = Reranker(tiny_model_dir, backend="onnx", quantize="int8-static", threads=1)
    dynamic = Reranker(tiny_model_dir, backend="onnx", quantize="int8", threads=1)
    assert static.engine.path.name == "model_optimized_qint8_static.onnx"
    assert len({static.engine.path, dynamic.engine.path, tiny_onnx.engine.path}) == 3
    ops = {node.op_type for node in onnx.load(str(static.engine.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not quantizes_per_batch(static.engine.path)
    assert static.engine.batch_invariant and static.batch_size == 16
    assert static.to_config().quantize == "int8-static"
    # The random model's logits hardly vary (ranking quality is tested on the trained fixture).
    assert np.allclose(static.score(QUERY, DOCS), tiny_onnx.score(QUERY, DOCS), atol=2e-3)

    words = [
        "flea",
        "cat",
        "dog",
        "year",
        "life",
        "blood",
        "egg",
        "larva",
        "host",
        "jump",
        "water",
        "bite",
        "itch",
    ]
    rng = random.Random(7)
    requests = [
        (
            " ".join(rng.choices(words, k=rng.randint(1, 6))),
            [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(rng.randint(1, 12))],
        )
        for _ in range(12)
    ]
    alone = [static.score(query, docs) for query, docs in requests]
    for _ in range(4):  # random mixes: which requests share a call, in which order
        picked = rng.sample(range(len(requests)), rng.randint(2, len(requests)))
        together = static.score_batch([requests[i] for i in picked])
        assert together == [alone[i] for i in picked]


def test_ready_onnx_file_in_the_model_folder(
    tiny_model_dir: Path, tiny_onnx: Reranker, tmp_path: Path
) -> None:
    folder = tmp_path / "model-with-onnx"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "onnx").mkdir()
    shutil.copy(tiny_onnx.engine.path, folder / "onnx" / "model.onnx")
    shipped = Reranker(folder, backend="onnx", onnx_file="onnx/model.onnx")
    assert shipped.engine.path == folder / "onnx" / "model.onnx"
    assert shipped.score(QUERY, DOCS) == tiny_onnx.score(QUERY, DOCS)
    with pytest.raises(ModelLoadError, match="no ONNX file"):
        Reranker(folder, backend="onnx", onnx_file="onnx/missing.onnx")


def test_ready_dynamic_int8_file_is_known_by_its_graph_and_never_mixes_requests(
    tiny_model_dir: Path, tiny_onnx: Reranker, tmp_path: Path
) -> None:
    """A ready-made dynamic int8 file (optimum's ``model_qint8_*.onnx``) quantises activations per
    batch whatever ``quantize`` says: its graph tells, so its requests are kept apart like int8's."""
    from crossrank.backends.onnx_backend import quantizes_per_batch

    built = Reranker(tiny_model_dir, backend="onnx", quantize="int8", threads=1)
    folder = tmp_path / "model-with-onnx"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "onnx").mkdir()
    shutil.copy(built.engine.path, folder / "onnx" / "model_qint8.onnx")
    shutil.copy(tiny_onnx.engine.path, folder / "onnx" / "model.onnx")
    assert quantizes_per_batch(folder / "onnx" / "model_qint8.onnx")
    assert not quantizes_per_batch(folder / "onnx" / "model.onnx")

    shipped = Reranker(folder, backend="onnx", onnx_file="onnx/model_qint8.onnx", threads=1)
    assert not shipped.engine.batch_invariant and shipped.batch_size == 4
    assert Reranker(folder, backend="onnx", onnx_file="onnx/model.onnx").engine.batch_invariant
    requests = [
        (QUERY, DOCS),
        ("a longer query about the fleas of cats and dogs", DOCS[::-1] * 3),
        ("x", DOCS[:1]),
    ]
    together = shipped.score_batch(requests)
    assert together == [shipped.score(query, docs) for query, docs in requests]  # bit for bit


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"backend": "torch", "quantize": "int8"}, InvalidArgumentError, "applies to backend='onnx' only"),
        ({"backend": "onnx", "quantize": "int4"}, InvalidArgumentError, "quantize: Input should be 'int8'"),
        ({"backend": "onnx", "threads": 0}, InvalidArgumentError, "threads: Input should be greater than 0"),
    ],
)
def test_bad_onnx_options(tiny_model_dir: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Reranker(tiny_model_dir, **kwargs)


def test_multi_label_model_is_refused(tiny_two_label_model_dir: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="2 output labels"):
        Reranker(tiny_two_label_model_dir, backend="onnx")


def test_export_recipe_layer_norm_gelu_and_7_bit_weights(tiny_onnx: Reranker, tiny_model_dir: Path) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(tiny_onnx.engine.path)).graph
    ops = {node.op_type for node in graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops  # slower fused kernel
    assert "Attention" in ops  # the other transformer fusions still apply
    # The tiny model has 2 layers: the first is fused, the last runs for the [CLS] token only.
    assert [node.op_type for node in graph.node].count("Attention") == 1

    assert "BiasGelu" in ops and "FastGelu" not in ops  # fp32 keeps the exact GELU
    int8 = Reranker(tiny_model_dir, backend="onnx", quantize="int8")
    int8_graph = onnx.load(str(int8.engine.path)).graph
    assert "FastGelu" in {node.op_type for node in int8_graph.node}  # int8: the tanh approximation
    weights = [
        numpy_helper.to_array(tensor)
        for tensor in int8_graph.initializer
        if tensor.data_type == onnx.TensorProto.INT8 and tensor.name.endswith("_quantized")
    ]
    assert weights, "no int8 weights found"
    # reduce_range: 7-bit weights, so the u8 x s8 kernel's 16-bit pair sums can't overflow
    assert all(np.abs(w.astype(np.int16)).max() <= 64 for w in weights)


def test_rewritten_weights_get_a_new_cache_entry(
    tiny_model_dir: Path, tiny_onnx: Reranker, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    first = Reranker(folder, backend="onnx").engine.path
    assert Reranker(folder, backend="onnx").engine.path == first  # same files: same cache entry
    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as if saved again
    assert Reranker(folder, backend="onnx").engine.path != first


def test_relative_and_absolute_paths_share_one_export(
    tiny_model_dir: Path, tiny_onnx: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_model_dir.parent)
    relative = Reranker(Path(tiny_model_dir.name), backend="onnx")
    assert relative.engine.path == tiny_onnx.engine.path


def test_whole_last_layer_export_scores_the_same(
    tiny_model_dir: Path, tiny_onnx: Reranker, tmp_path: Path
) -> None:
    import onnx

    from crossrank.backends.onnx_export import build_onnx

    config = json.loads((tiny_model_dir / "config.json").read_text())
    build_onnx(tiny_model_dir, tmp_path / "whole.onnx", config, first_token_only=False)
    assert [path.name for path in tmp_path.iterdir()] == ["whole.onnx"]  # no intermediate files left
    ops = [node.op_type for node in onnx.load(str(tmp_path / "whole.onnx")).graph.node]
    assert ops.count("Attention") == 2  # both layers fused: nothing cut to the first token
    whole = Reranker(tiny_model_dir, backend="onnx", onnx_file=str(tmp_path / "whole.onnx"))
    assert np.allclose(whole.score(QUERY, DOCS), tiny_onnx.score(QUERY, DOCS), atol=1e-5)


def test_int8_requests_are_never_mixed_so_they_score_exactly_as_alone(
    tiny_model_dir, tmp_path, monkeypatch
) -> None:
    """int8 quantises activations per batch, so batch-mates move scores: score_batch keeps each
    request's pairs to batches of their own, and a request's scores equal its scores alone, bit for bit."""
    from crossrank import ScoringStats

    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path))
    int8 = Reranker(tiny_model_dir, backend="onnx", quantize="int8")
    assert int8.engine.batch_invariant is False
    requests = [
        (q, [f"{q} {w}" * n for n in (1, 3, 9) for w in ("flea", "tea")]) for q in ("flea", "paris", "sky")
    ]
    stats = ScoringStats()
    together = int8.score_batch(requests, stats=stats)
    assert together == [int8.score(query, texts) for query, texts in requests]
    assert stats.pairs == sum(len(texts) for _, texts in requests) and stats.forward_passes >= len(requests)
