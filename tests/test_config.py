"""RerankerConfig: keyword arguments, dicts, YAML, environment variables, and clear validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from crossrank import DEFAULT_MODEL, RerankerConfig


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL", "TOP_N", "NORMALIZE", "MIN_SCORE", "BATCH_SIZE", "DEVICE", "LOCAL_FILES_ONLY"):
        monkeypatch.delenv(f"CROSSRANK_{name}", raising=False)


def test_defaults() -> None:
    cfg = RerankerConfig()
    assert cfg.model == DEFAULT_MODEL == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert (cfg.backend, cfg.precision, cfg.top_n, cfg.batch_size, cfg.normalize, cfg.min_score) == (
        "torch",
        "auto",
        3,
        None,  # the device decides: 32 on CPU, 128 on CUDA
        False,
        None,
    )


def test_keywords_and_dict() -> None:
    assert RerankerConfig(top_n=5, normalize=True).top_n == 5
    cfg = RerankerConfig.model_validate({"model": "/models/ce", "min_score": 0.25, "top_n": None})
    assert (cfg.model, cfg.min_score, cfg.top_n) == ("/models/ce", 0.25, None)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_MODEL", "/models/from-env")
    monkeypatch.setenv("CROSSRANK_TOP_N", "7")
    monkeypatch.setenv("CROSSRANK_NORMALIZE", "true")
    cfg = RerankerConfig()
    assert (cfg.model, cfg.top_n, cfg.normalize) == ("/models/from-env", 7, True)
    assert RerankerConfig(top_n=2).top_n == 2  # keywords beat the environment


def test_yaml_file_section_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "llm: {name: whatever}\n"
        "reranker:\n  model: /models/from-yaml\n  top_n: 4\n  normalize: true\n  batch_size: 8\n",
        encoding="utf-8",
    )
    cfg = RerankerConfig.from_yaml(path, section="reranker")
    assert (cfg.model, cfg.top_n, cfg.normalize, cfg.batch_size) == ("/models/from-yaml", 4, True, 8)
    monkeypatch.setenv("CROSSRANK_TOP_N", "9")
    assert RerankerConfig.from_yaml(path, section="reranker").top_n == 9  # env beats the file
    assert RerankerConfig.from_yaml(path, section="reranker", top_n=1).top_n == 1  # keywords beat both


def test_yaml_top_level(tmp_path: Path) -> None:
    path = tmp_path / "crossrank.yaml"
    path.write_text("model: /m\nmin_score: -1.5\n", encoding="utf-8")
    assert RerankerConfig.from_yaml(path).min_score == -1.5


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        RerankerConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"top_n": 0}, "top_n"),
        ({"batch_size": -1}, "batch_size"),
        ({"max_length": "long"}, "max_length"),
        ({"backend": "tpu"}, "backend"),
        ({"normalize": "maybe"}, "normalize"),
        ({"topn": 3}, "topn"),  # a typo is an error, not silently ignored
    ],
)
def test_invalid_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RerankerConfig(**values)
    assert field in str(info.value)
    assert info.value.errors()[0]["loc"][0] == field


def test_invalid_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_TOP_N", "zero")
    with pytest.raises(ValidationError, match="top_n"):
        RerankerConfig()


def test_invalid_yaml_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 0\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="batch_size"):
        RerankerConfig.from_yaml(path)


def test_from_config_validates_overrides_and_reads_env(tiny_model_dir, monkeypatch) -> None:
    from crossrank import Reranker

    with pytest.raises(ValidationError, match="top_n"):
        Reranker.from_config(RerankerConfig(model=str(tiny_model_dir)), top_n=0)
    monkeypatch.setenv("CROSSRANK_TOP_N", "2")
    reranker = Reranker.from_config({"model": str(tiny_model_dir), "device": "cpu"})
    assert reranker.top_n == 2
    monkeypatch.setenv("CROSSRANK_MODEL", str(tiny_model_dir))
    assert Reranker.from_config(device="cpu", batch_size=3).batch_size == 3
