"""RerankerConfig: keyword arguments, dicts, YAML, environment variables, and clear validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from crossrank import DEFAULT_MODEL, RerankerConfig


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RerankerConfig.model_fields:
        monkeypatch.delenv(f"CROSSRANK_{name.upper()}", raising=False)


def test_defaults() -> None:
    cfg = RerankerConfig()
    assert cfg.model == DEFAULT_MODEL == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert (cfg.backend, cfg.precision, cfg.top_n, cfg.batch_size, cfg.normalize, cfg.min_score) == (
        "auto",  # resolved with the model, the options and the CPU (crossrank.backends.choice)
        "auto",
        3,
        None,  # the device decides: 32 on CPU, 128 on CUDA
        False,
        None,
    )
    from crossrank.backends.choice import choose_backend

    assert cfg.resolved_backend() == choose_backend(cfg.model, {}).backend


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
    from crossrank import InvalidArgumentError, Reranker

    with pytest.raises(InvalidArgumentError, match="top_n"):
        Reranker.from_config(RerankerConfig(model=str(tiny_model_dir)), top_n=0)
    monkeypatch.setenv("CROSSRANK_TOP_N", "2")
    reranker = Reranker.from_config({"model": str(tiny_model_dir), "device": "cpu"})
    assert reranker.top_n == 2
    monkeypatch.setenv("CROSSRANK_MODEL", str(tiny_model_dir))
    assert Reranker.from_config(device="cpu", batch_size=3).batch_size == 3


def test_missing_yaml_section_is_a_clear_error(tmp_path: Path) -> None:
    from crossrank import InvalidArgumentError

    path = tmp_path / "app.yaml"
    path.write_text("llm: {name: x}\nretriever: {k: 20}\n", encoding="utf-8")
    with pytest.raises(InvalidArgumentError, match=r"no section 'reranker'.*llm, retriever"):
        RerankerConfig.from_yaml(path, section="reranker")


def test_the_constructor_takes_exactly_the_config_fields() -> None:
    """One declaration: Reranker(...)'s keywords and defaults are RerankerConfig's fields (plus the
    two loader pass-throughs that are not settings), so neither can drift from the other."""
    import inspect

    from crossrank import Reranker

    parameters = dict(inspect.signature(Reranker.__init__).parameters)
    parameters.pop("self")
    assert set(parameters) - set(RerankerConfig.model_fields) == {"token", "model_kwargs"}
    assert set(RerankerConfig.model_fields) - set(parameters) == set()
    for name, field in RerankerConfig.model_fields.items():
        assert parameters[name].default == field.default, name


def test_to_config_holds_every_field(tiny_model_dir) -> None:
    from crossrank import Reranker

    reranker = Reranker(tiny_model_dir, device="cpu", long_documents="windows", stride=8, top_n=None)
    config = reranker.to_config()
    assert isinstance(config, RerankerConfig) and config.model_fields_set >= {"stride", "top_n"}
    assert (config.stride, config.top_n, config.batch_size, config.max_length) == (8, None, 32, 128)
    again = Reranker.from_config(config)
    assert again.to_config() == config


def test_code_is_explicit_configuration_reads_the_environment(tiny_model_dir, monkeypatch) -> None:
    """The rule for CROSSRANK_*: RerankerConfig (and so from_config, the CLI, YAML) reads it;
    a Reranker(...) call in code takes its arguments only."""
    from crossrank import Reranker

    monkeypatch.setenv("CROSSRANK_TOP_N", "7")
    monkeypatch.setenv("CROSSRANK_NORMALIZE", "true")
    assert Reranker(tiny_model_dir, device="cpu").top_n == 3
    assert Reranker(tiny_model_dir, device="cpu").normalize is False
    assert Reranker.from_config(model=str(tiny_model_dir), device="cpu").top_n == 7


def test_the_readme_lists_every_option() -> None:
    """The README's table of options is options_table()'s output: it can't miss a field."""
    from crossrank.config import OPTION_GROUPS, options_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert options_table() in readme
    assert sorted(name for names in OPTION_GROUPS.values() for name in names) == sorted(
        RerankerConfig.model_fields
    )


def test_onnx_file_and_quantize_are_one_or_the_other() -> None:
    from crossrank import InvalidArgumentError

    # The file runs as it is: an int8 ask on top of it would be silently fp32.
    with pytest.raises(InvalidArgumentError, match="quantize='int8' would not apply"):
        RerankerConfig.from_arguments(backend="onnx", quantize="int8", onnx_file="onnx/model.onnx")
    assert RerankerConfig.from_arguments(backend="onnx", onnx_file="onnx/model_int8.onnx").quantize is None


def test_min_score_takes_the_same_bounds_as_a_default_as_per_call() -> None:
    from crossrank import InvalidArgumentError
    from crossrank.validation import check_min_score

    # ±inf are bounds per call (-inf keeps all, inf none): so they are as a default.
    for bound in (float("-inf"), float("inf")):
        assert RerankerConfig.from_arguments(min_score=bound).min_score == check_min_score(bound) == bound
    with pytest.raises(InvalidArgumentError, match="NaN"):
        RerankerConfig.from_arguments(min_score=float("nan"))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        check_min_score(float("nan"))
