"""The benchmark's worker protocol, so `benchmarks/rank_latency.py` doesn't rot between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossrank import Reranker

WORKER = Path(__file__).resolve().parents[1] / "benchmarks" / "system_worker.py"


@pytest.mark.parametrize("system", ["torch", "onnx"])
def test_worker_scores_like_the_reranker_and_reports_memory(
    system: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    requests = [
        {"op": "score", "query": "how long does a flea live", "texts": ["fleas live a year", "paris"]},
        {"op": "rss"},
        {"op": "quit"},
    ]
    env = os.environ | {"CROSSRANK_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(WORKER), "--system", system, "--model", str(tiny_model_dir)],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    scored, memory = (json.loads(line) for line in done.stdout.splitlines())  # protocol lines only
    expected = Reranker(tiny_model_dir, device="cpu").score(requests[0]["query"], requests[0]["texts"])
    assert scored["scores"] == pytest.approx(expected, abs=1e-4) and scored["ms"] > 0
    assert memory["peak_rss_mb"] > 10
