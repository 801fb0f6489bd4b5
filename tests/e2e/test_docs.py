"""The examples in crossrank's docstrings run and print what they claim.

The examples name the hub model users load, ``cross-encoder/ms-marco-MiniLM-L6-v2``. Here it is
served, offline, from a Hugging Face cache laid out in a temporary folder whose snapshot holds
the trained fixture model: the examples run unchanged, on real rankings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Every module whose docstrings hold examples.
MODULES = [
    "crossrank.reranker",
    "crossrank.config",
    "crossrank.errors",
    "crossrank.corpus",
    "crossrank.encoding",
    "crossrank.backends",
    "crossrank.adapters",
    "crossrank.results",
    "crossrank.selection",
    "crossrank.server.config",
    "crossrank.testing",
    "crossrank.finetune.config",
    "crossrank.finetune.data",
    "crossrank.finetune.train",
]

_RUNNER = """
import doctest, importlib, json, sys
results = {}
for name in sys.argv[1:]:
    outcome = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    results[name] = [outcome.attempted, outcome.failed]
print(json.dumps(results))
"""


def _hub_cache_with(model_dir: Path, repo: str, root: Path) -> Path:
    """A Hugging Face hub cache in which ``repo`` resolves, offline, to the files of ``model_dir``."""
    commit = "0" * 40
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for file in model_dir.iterdir():
        (snapshot / file.name).symlink_to(file)
    return root


@pytest.mark.real_model
def test_docstring_examples(fixture_model_dir: Path, tmp_path: Path) -> None:
    cache = _hub_cache_with(fixture_model_dir, "cross-encoder/ms-marco-MiniLM-L6-v2", tmp_path / "hub")
    env = os.environ | {
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "CROSSRANK_CACHE": str(tmp_path / "crossrank-cache"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *MODULES], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    failed = {name: counts for name, counts in results.items() if counts[1]}
    assert not failed, done.stdout[-6000:]
    assert all(attempted > 0 for attempted, _ in results.values()), results
