"""The house rules of `src/crossrank`, checked: rooms stay small, none reaches into another's privates.

* no module over 600 lines; no class over 400 lines of code (its docstrings, which hold the
  runnable examples, not counted: the Reranker front is ~275 lines of code and ~230 of docstrings);
* no ``from crossrank.x import _name`` and no ``crossrank.x._name`` across modules: what another
  module needs is public;
* bool/number confusion (``dedupe=True``, ``normalize=1``) is refused wherever options enter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from crossrank import InvalidArgumentError, RerankerConfig
from crossrank.config import check_option
from crossrank.rank_options import RANK_OPTIONS, RankOptions

SRC = Path(__file__).resolve().parents[2] / "src" / "crossrank"
MAX_MODULE_LINES = 600
MAX_CLASS_CODE_LINES = 400


def _modules() -> list[Path]:
    return sorted(path for path in SRC.rglob("*.py") if "__pycache__" not in path.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(SRC)))
def test_rooms_stay_small(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: split it"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1 - _docstring_lines(node)  # type: ignore[operator]
            assert size <= MAX_CLASS_CODE_LINES, f"{path.name}: class {node.name} has {size} lines of code"


def _docstring_lines(tree: ast.AST) -> int:
    lines = 0
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                lines += first.end_lineno - first.lineno + 1  # type: ignore[operator]
    return lines


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crossrank"):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
            if any(part.startswith("_") and part != "__main__" for part in (node.module or "").split(".")):
                found.append(f"from {node.module} import ...")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(SRC)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    assert _private_imports(path) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("dedupe", True), ("top_n", True), ("min_score", False), ("max_tokens", True), ("fusion_weight", True)],
)
def test_a_bool_is_not_a_number(name: str, value: bool) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{name}: expected a number, got {value}"):
        RerankerConfig.from_arguments(**{name: value})
    with pytest.raises(InvalidArgumentError, match=name):
        check_option(name, value)
    if name in RANK_OPTIONS:  # and per call, in rank() and the adapters
        with pytest.raises(InvalidArgumentError, match=name):
            RankOptions.resolve(RerankerConfig(), **{name: value})


@pytest.mark.parametrize("name", ["normalize", "local_files_only", "trust_remote_code"])
def test_a_number_is_not_a_bool(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{name}: expected True or False, got 1"):
        RerankerConfig.from_arguments(**{name: 1})


def test_the_environment_still_spells_bools_and_numbers_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSRANK_NORMALIZE", "1")
    monkeypatch.setenv("CROSSRANK_DEDUPE", "0.9")
    config = RerankerConfig()
    assert config.normalize is True and config.dedupe == 0.9


def test_dedupe_true_says_which_number_it_wants() -> None:
    with pytest.raises(InvalidArgumentError, match=r"dedupe: expected a number, got True \(.*0-1"):
        check_option("dedupe", True)


def test_finetune_options_refuse_a_bool_for_a_number_too() -> None:
    from crossrank.finetune import FinetuneConfig

    with pytest.raises(InvalidArgumentError, match="epochs: expected a number, got True"):
        FinetuneConfig.from_arguments(epochs=True)
    with pytest.raises(InvalidArgumentError, match="bf16: expected True or False, got 1"):
        FinetuneConfig.from_arguments(bf16=1)


def test_backend_options_come_as_json_text_from_the_command_line() -> None:
    assert RerankerConfig(backend="onnx", backend_options="{}").backend_options == {}
    with pytest.raises(ValueError, match="backend_options must be a JSON object"):
        RerankerConfig(backend_options="{nope")
