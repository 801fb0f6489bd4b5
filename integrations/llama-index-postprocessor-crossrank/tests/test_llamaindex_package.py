"""The package itself: LlamaIndex's namespace layout, public names, class shape. No model is loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import llama_index.postprocessor.crossrank as package
import pytest
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.postprocessor.crossrank import CrossrankRerank

from crossrank import RerankerConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_class_is_a_node_postprocessor() -> None:
    names_of_base_classes = [b.__name__ for b in CrossrankRerank.__mro__]
    assert BaseNodePostprocessor.__name__ in names_of_base_classes
    assert CrossrankRerank.class_name() == "CrossrankRerank"
    # real async, not the base class's thread wrapper around the sync method
    assert CrossrankRerank._apostprocess_nodes is not BaseNodePostprocessor._apostprocess_nodes


def test_public_names() -> None:
    assert package.__all__ == ["CrossrankRerank"]
    assert package.CrossrankRerank is CrossrankRerank


def test_namespace_layout_like_llama_index_integrations() -> None:
    """llama_index/ and llama_index/postprocessor/ are namespace packages shared with llama-index-core."""
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "postprocessor" / "__init__.py").exists()
    assert (PACKAGE_ROOT / "llama_index" / "postprocessor" / "crossrank" / "py.typed").is_file()
    pyproject = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "llama-index-postprocessor-crossrank"
    assert pyproject["tool"]["llamahub"]["import_path"] == package.__name__
    assert pyproject["tool"]["llamahub"]["class_authors"] == {"CrossrankRerank": "crossrank"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["include"] == ["llama_index/"]


def test_model_together_with_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="got `model` and `config`"):
        CrossrankRerank(config=RerankerConfig(), model="other/model")
