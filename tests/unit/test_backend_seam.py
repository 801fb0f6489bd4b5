"""The backend seam: a registered backend declares its options and receives exactly those.

A third backend, registered here, takes an option of its own (``hint``) through
``backend_options``; torch's and ONNX's rules live in their own options models; nothing outside a
backend branches on its name. No model files: the engine is :class:`crossrank.testing.FakeEngine`.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from crossrank import InvalidArgumentError, Reranker, RerankerConfig
from crossrank.backends import backend_names, backend_option_names, check_backend_options, register_backend
from crossrank.testing import FakeEngine

received: list[dict[str, Any]] = []


class HintOptions(BaseModel):
    """A third backend's own options: a precision hint and a cache folder for compiled models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hint: Literal["fp32", "bf16"] = "fp32"
    compiled_cache: str | None = None
    precision: Literal["auto", "fp32"] = "auto"


def _load_hinted(source: Any, *, device: str | None, **options: Any) -> FakeEngine:
    received.append(dict(options))
    engine = FakeEngine()
    engine.name = "hinted"
    return engine


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register_backend("hinted", _load_hinted, options=HintOptions)


@pytest.fixture
def model_dir(tmp_path: Any) -> str:
    (tmp_path / "config.json").write_text("{}")
    return str(tmp_path)


def test_a_third_backend_receives_its_own_option(model_dir: str) -> None:
    received.clear()
    reranker = Reranker(model_dir, backend="hinted", backend_options={"hint": "bf16"})
    assert reranker.backend == "hinted"
    (options,) = received
    assert options["hint"] == "bf16" and options["compiled_cache"] is None and options["precision"] == "auto"
    # Only its own options and the loader's common ones: never torch's or ONNX's.
    assert not {"quantize", "onnx_file", "trust_remote_code"} & set(options)
    assert reranker.rank("fleas", ["tea", "fleas live a year"], top_n=1)[0].index == 1


def test_the_third_backends_options_are_checked_by_its_model(model_dir: str) -> None:
    with pytest.raises(InvalidArgumentError, match="hint"):
        Reranker(model_dir, backend="hinted", backend_options={"hint": "int4"})
    with pytest.raises(
        InvalidArgumentError,
        match=r"colour is not an option of backend='hinted' \(its options: hint, compiled_cache, precision\)",
    ):
        Reranker(model_dir, backend="hinted", backend_options={"colour": "red"})


def test_an_option_of_another_backend_names_who_takes_it(model_dir: str) -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"quantize applies to backend='onnx' only \(backend='hinted'\)"
    ):
        Reranker(model_dir, backend="hinted", quantize="int8")
    with pytest.raises(InvalidArgumentError, match="hint applies to backend='hinted' only"):
        Reranker(model_dir, backend="torch", backend_options={"hint": "bf16"})
    with pytest.raises(InvalidArgumentError, match="both as an option and in backend_options"):
        Reranker(model_dir, backend="hinted", precision="fp32", backend_options={"precision": "fp32"})


def test_the_config_reads_backend_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_BACKEND", "hinted")
    monkeypatch.setenv("CROSSRANK_BACKEND_OPTIONS", '{"hint": "bf16"}')
    assert RerankerConfig().engine_options() == {"hint": "bf16", "compiled_cache": None, "precision": "auto"}


def test_builtin_backends_declare_their_own_rules() -> None:
    assert {"torch", "onnx", "hinted"} <= set(backend_names())
    assert set(backend_option_names("torch")) == {"precision", "trust_remote_code", "family"}
    assert set(backend_option_names("onnx")) == {"quantize", "onnx_file", "precision", "family"}
    with pytest.raises(ValueError, match="family"):  # a backend that doesn't declare it can't take it
        check_backend_options("hinted", {"family": "qwen3-reranker"})
    assert check_backend_options("onnx", {"quantize": "int8-static"})["quantize"] == "int8-static"
    with pytest.raises(ValueError, match="trust_remote_code applies to backend='torch' only"):
        check_backend_options("onnx", {"trust_remote_code": True})
    with pytest.raises(ValueError, match="backend='onnx' runs fp32"):
        check_backend_options("onnx", {"precision": "bf16"})


def test_a_ready_engine_must_declare_batch_invariance() -> None:
    class Undeclared(FakeEngine):
        def __getattribute__(self, name: str) -> Any:
            if name == "batch_invariant":
                raise AttributeError(name)
            return super().__getattribute__(name)

    with pytest.raises(InvalidArgumentError, match="lacks batch_invariant"):
        Reranker.from_backend(Undeclared())
