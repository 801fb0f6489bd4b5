"""Ready ONNX files and ``crossrank export`` in the full install (torch present).

The torch-free install itself is tested in ``tests/slim``; here, what must also hold where torch is
installed: a folder of ONNX files alone runs them (it has no weights to export from), ``auto``
follows the options given, the int8 file for this CPU is picked by a pure rule, and an export
never destroys what it replaces.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from crossrank import InvalidArgumentError, Reranker, RerankerConfig
from crossrank.backends import default_backend
from crossrank.backends.choice import choose_backend
from crossrank.backends.onnx_files import (
    EXPORT_MANIFEST,
    INT8_FILES,
    hub_patterns,
    pick_int8_file,
    ready_file,
)
from crossrank.export import export_model


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_model_dir, tmp_path_factory.mktemp("export") / "tiny-onnx").folder


def test_an_exported_folder_runs_its_own_files_where_torch_is_installed(
    exported: Path, tiny_model_dir: Path
) -> None:
    manifest = json.loads((exported / EXPORT_MANIFEST).read_text())
    assert set(manifest["files"]) == {"fp32", "int8", "int8-static"}
    # no weights: auto -> onnx (OpenVINO on CPUs with native bf16, where it is installed)
    assert RerankerConfig(model=str(exported)).resolved_backend() == choose_backend(str(exported), {}).backend
    for quantize in (None, "int8", "int8-static"):
        from_folder = Reranker(exported, backend="onnx" if quantize is None else "auto", quantize=quantize)
        from_weights = Reranker(tiny_model_dir, backend="onnx", quantize=quantize)
        assert from_folder.backend == "onnx" and from_folder.to_config().backend == "onnx"
        docs = ["fleas live a year", "tea", "paris", ""]
        assert from_folder.score("flea", docs) == from_weights.score("flea", docs)  # the same recipe
        assert from_folder.engine.batch_invariant is (quantize != "int8")


def test_auto_follows_the_options_only_one_backend_takes(tiny_model_dir: Path) -> None:
    assert default_backend(str(tiny_model_dir), {"quantize": "int8"}) == "onnx"
    assert default_backend(str(tiny_model_dir), {"onnx_file": "onnx/model.onnx"}) == "onnx"
    assert default_backend(str(tiny_model_dir), {"precision": "bf16"}) == "torch"
    # both take it: the rule for this CPU decides
    assert default_backend(str(tiny_model_dir), {"precision": "fp32"}) == default_backend(str(tiny_model_dir))
    assert Reranker(tiny_model_dir, quantize="int8").backend == "onnx"
    # auto stays auto in the config, so a config with another model resolves for that model
    config = RerankerConfig(model=str(tiny_model_dir))
    assert config.backend == "auto" and "backend" not in config.model_fields_set


def test_the_int8_file_for_this_cpu_is_the_best_it_runs() -> None:
    names = [name for name, _ in INT8_FILES]
    assert pick_int8_file(names, {"avx2", "avx512f", "avx512_vnni"}) == "onnx/model_qint8_avx512_vnni.onnx"
    assert pick_int8_file(names, {"avx2", "avx512f"}) == "onnx/model_qint8_avx512.onnx"
    assert pick_int8_file(names, {"avx2"}) == "onnx/model_quint8_avx2.onnx"
    assert pick_int8_file(names, {"arm64"}) == "onnx/model_qint8_arm64.onnx"
    assert pick_int8_file(names[1:], {"avx512f", "avx512_vnni"}) == "onnx/model_qint8_avx512.onnx"
    assert pick_int8_file(names, {"sse4_2"}) is None
    assert hub_patterns(None, exporting=True) == [EXPORT_MANIFEST]  # the weights, not the ONNX files


def test_ready_file_says_what_it_chose(exported: Path, tmp_path: Path) -> None:
    chosen = ready_file(exported, "int8", exporting=True)
    assert chosen is not None and chosen.per_batch_scales and "crossrank export" in chosen.why
    hub = tmp_path / "hub"
    (hub / "onnx").mkdir(parents=True)
    (hub / "onnx" / "model.onnx").write_bytes((exported / "onnx" / "model.onnx").read_bytes())
    assert ready_file(hub, None, exporting=True) is None  # crossrank exports its own where it can
    fp32 = ready_file(hub, None, exporting=False)
    assert fp32 is not None and fp32.path.name == "model.onnx" and not fp32.per_batch_scales
    assert ready_file(hub, "int8-static", exporting=False) is None


def test_export_refuses_to_replace_and_never_eats_the_model(exported: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="not empty"):
        export_model(tiny_model_dir, exported, recipes=("fp32",))
    with pytest.raises(InvalidArgumentError, match="replace the model's own folder"):
        export_model(tiny_model_dir, tiny_model_dir, recipes=("fp32",), overwrite=True)
    with pytest.raises(InvalidArgumentError, match="recipes must be some of"):
        export_model(tiny_model_dir, exported, recipes=("int4",), overwrite=True)
    assert (tiny_model_dir / "config.json").is_file()


def test_export_overwrite_replaces_the_whole_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    export_model(tiny_model_dir, target)
    (target / "stale.txt").write_text("from before")
    result = export_model(tiny_model_dir, target, recipes=("fp32",), overwrite=True)
    assert result.files == {"fp32": "onnx/model.onnx"} and not (target / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # nothing staged or aside left


def test_configs_pickle_and_equal_a_constructed_one() -> None:
    config = RerankerConfig.from_arguments(top_n=2, backend="onnx", quantize="int8")
    assert (
        pickle.loads(pickle.dumps(config))
        == config
        == RerankerConfig(top_n=2, backend="onnx", quantize="int8")
    )
    assert type(config) is RerankerConfig


def test_rank_logits_refuses_logits_that_dont_fit(tiny_reranker: Reranker) -> None:
    options = tiny_reranker.rank_options()
    with pytest.raises(InvalidArgumentError, match=r"logits has 1 value\(s\) for 2 documents"):
        tiny_reranker.rank_logits(["a", "b"], [0.5], options)
    for bad, message in (
        ([1.0, float("nan")], r"logits\[1\] must be a finite number"),  # NaN would rank anywhere
        ([float("inf"), 1.0], r"logits\[0\] must be a finite number"),
        (np.array([[0.1], [0.2]]), r"logits\[0\] must be a finite number"),  # one column per text
        (["x", 1.0], r"logits\[0\] must be a finite number"),
        ("ab", "logits must be a list of numbers"),
    ):
        with pytest.raises(InvalidArgumentError, match=message):
            tiny_reranker.rank_logits(["a", "b"], bad, options)
    with pytest.raises(InvalidArgumentError, match="options must be"):
        tiny_reranker.rank_logits(["a", "b"], [0.5, 2.0], None)
    ranking = tiny_reranker.rank_logits(["a", "b"], [0.5, 2.0], options)
    assert [hit.index for hit in ranking] == [1, 0]


def test_an_onnx_only_hub_repository_runs_its_file_where_torch_is_installed(
    exported: Path, tmp_path: Path
) -> None:
    """From the hub cache (offline), ``backend="onnx"`` on a repository with no weights runs its own
    ``onnx/model.onnx`` instead of trying to export."""
    import os
    import subprocess
    import sys

    snapshot = tmp_path / "hub" / "models--org--onnx-only" / "snapshots" / ("0" * 40)
    (snapshot / "onnx").mkdir(parents=True)
    (tmp_path / "hub" / "models--org--onnx-only" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--onnx-only" / "refs" / "main").write_text("0" * 40)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"):
        (snapshot / name).write_bytes((exported / name).read_bytes())
    code = (
        "from crossrank import Reranker; r = Reranker('org/onnx-only', backend='onnx'); "
        "print(r.engine.path.name, r.score('flea', ['fleas live a year', 'tea']))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Reranker(exported, backend="onnx").score("flea", ["fleas live a year", "tea"])
    assert done.stdout.split(" ", 1) == ["model.onnx", f"{expected}\n"]
