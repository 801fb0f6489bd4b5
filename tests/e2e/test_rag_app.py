"""examples/rag_app: a RAG app built from one YAML file; switching the reranker is a config edit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crossrank import Reranker

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "rag_app"
QUESTION = "How does a cross-encoder score a passage?"

pytestmark = pytest.mark.real_model


def _app_module():
    spec = importlib.util.spec_from_file_location("rag_app", APP_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["rag_app"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_app_passes_the_rerankers_top_3_to_the_llm(fixture_model_dir, monkeypatch) -> None:
    monkeypatch.setenv("CROSSRANK_MODEL", str(fixture_model_dir))  # the hub can't be reached here
    app = _app_module().RagApp.from_yaml(APP_DIR / "app.yaml")
    settings = yaml.safe_load((APP_DIR / "app.yaml").read_text())["reranker"]
    assert (app.reranker.backend, app.reranker.quantize, app.reranker.top_n) == ("onnx", "int8", 3)
    answer, chunks = app.ask(QUESTION)
    retrieved = [d.text for d in app.retriever.retrieve(QUESTION)]
    assert len(retrieved) == 20 == chunks.num_candidates
    expected = Reranker(fixture_model_dir, backend="onnx", quantize="int8").rank(
        QUESTION, retrieved, top_n=3, normalize=True, min_score=settings["min_score"]
    )
    assert [c.text for c in chunks] == [hit.text for hit in expected] and len(chunks) == 3
    assert chunks[0].text[:60] in answer  # the echo LLM quoted the best chunk it was given


def test_switching_reranker_settings_is_a_config_edit(fixture_model_dir, tiny_model_dir, tmp_path) -> None:
    settings = yaml.safe_load((APP_DIR / "app.yaml").read_text())
    settings["reranker"].update(
        model=str(tiny_model_dir), backend="torch", quantize=None, top_n=2, normalize=False
    )
    settings["reranker"]["min_score"] = None
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSRANK_")}
    done = subprocess.run(
        [sys.executable, str(APP_DIR / "app.py"), QUESTION, "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(payload["chunks"]) == 2 and payload["question"] == QUESTION
    reranker = Reranker(tiny_model_dir, device="cpu", top_n=2)
    app = _app_module().RagApp.from_yaml(config)
    retrieved = [d.text for d in app.retriever.retrieve(QUESTION)]
    assert [chunk["text"] for chunk in payload["chunks"]] == [
        hit.text for hit in reranker.rank(QUESTION, retrieved)
    ]
