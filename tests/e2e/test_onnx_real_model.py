"""backend="onnx" on the trained fixture model: fp32 parity with torch, int8 keeps the ranking.

The backend's other tests, on the tiny random model, are in tests/unit/test_onnx_backend.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossrank import Reranker

pytest.importorskip(
    "onnxruntime", reason="backend='onnx' needs the onnx extra"
)  # installed by scripts/test.sh


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exported models go to a temporary cache, not the user's."""
    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path / "crossrank-cache"))
    return tmp_path / "crossrank-cache"


@pytest.mark.real_model
def test_fixture_onnx_parity_and_int8_ranking(
    fixture_model_dir: Path, fixture_reranker: Reranker, dl19_top20
) -> None:
    fp32 = Reranker(fixture_model_dir, backend="onnx")
    int8 = Reranker(fixture_model_dir, backend="onnx", quantize="int8")
    static = Reranker(fixture_model_dir, backend="onnx", quantize="int8-static")
    worst, correlations, static_correlations = 0.0, [], []
    for row in dl19_top20[:8]:
        texts = [hit["text"] for hit in row["hits"]]
        reference = np.array(fixture_reranker.score(row["query"], texts))
        worst = max(worst, float(np.max(np.abs(np.array(fp32.score(row["query"], texts)) - reference))))
        correlations.append(np.corrcoef(reference, int8.score(row["query"], texts))[0, 1])
        static_correlations.append(np.corrcoef(reference, static.score(row["query"], texts))[0, 1])
    assert worst <= 1e-4
    # int8 keeps the ranking; quality is measured by crossrank eval
    assert np.mean(correlations) > 0.95 and np.mean(static_correlations) > 0.95
    requests = [(row["query"], [hit["text"] for hit in row["hits"]]) for row in dl19_top20[:12]]
    assert static.score_batch(requests) == [static.score(q, docs) for q, docs in requests]  # mixed, exact
