"""The torch backend on a CUDA GPU: fp16 autocast by default, wider batches.

Runs only where a GPU is (CI machines have none); the CPU paths are covered everywhere else.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrank import Reranker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_defaults_to_fp16_and_wide_batches(tiny_model_dir) -> None:
    reranker = Reranker(tiny_model_dir, device="cuda")
    assert reranker.device.startswith("cuda")
    assert reranker.engine.precision == "fp16" and reranker.batch_size == 128
    scores = reranker.score("how long does a flea live", ["fleas live a year", "paris is in france"])
    assert all(type(s) is float and np.isfinite(s) for s in scores)


@pytest.mark.real_model
def test_fp16_keeps_the_fixture_ranking(fixture_model_dir, dl19_top20) -> None:
    fp16 = Reranker(fixture_model_dir, device="cuda")
    fp32 = Reranker(fixture_model_dir, device="cuda", precision="fp32")
    cpu = Reranker(fixture_model_dir, device="cpu")
    for row in dl19_top20[:10]:
        texts = [hit["text"] for hit in row["hits"]]
        reference = np.array(cpu.score(row["query"], texts))
        assert np.max(np.abs(np.array(fp32.score(row["query"], texts)) - reference)) < 1e-3
        half = np.array(fp16.score(row["query"], texts))
        assert np.max(np.abs(half - reference)) < 0.05
        assert np.corrcoef(half, reference)[0, 1] > 0.999
