"""The benchmark's worker protocol, so `benchmarks/rank_latency.py` doesn't rot between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossrank import Reranker

WORKER = Path(__file__).resolve().parents[2] / "benchmarks" / "system_worker.py"


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
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "--system", system, "--model", str(tiny_model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        replies = []
        for request in requests[:2]:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
            replies.append(json.loads(worker.stdout.readline()))  # protocol lines only on stdout
        # The kernel's own peak resident size of the live worker, read while it waits for input.
        status = Path(f"/proc/{worker.pid}/status").read_text()
        kernel_peak_mb = (
            int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
        )
        worker.stdin.write(json.dumps(requests[2]) + "\n")
        worker.stdin.flush()
        assert worker.wait(timeout=300) == 0
    finally:
        worker.kill()
    scored, memory = replies
    expected = Reranker(tiny_model_dir, device="cpu").score(requests[0]["query"], requests[0]["texts"])
    assert scored["scores"] == pytest.approx(expected, abs=1e-4) and scored["ms"] > 0
    assert memory["peak_rss_mb"] == pytest.approx(kernel_peak_mb, rel=0.02)
