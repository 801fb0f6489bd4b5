"""The torch-free install, tested: every test runs its script in a fresh Python without torch.

In the slim venv that ``scripts/test.sh`` builds (``pip install crossrank[server]`` and the three
framework packages, no torch) the scripts run as they are; in the full venv a meta-path finder
makes torch, transformers, sentence-transformers and onnx unimportable first, so the same tests
hold there too. Either way each script also asserts that none of them was imported.

The folders scored (``crossrank export`` output, a hub-style ONNX folder, weights only) and the
full install's scores come from :func:`crossrank.testing.build_torch_free_fixtures`, built where
torch is: by ``scripts/test.sh`` before the slim run (``CROSSRANK_TORCH_FREE_FIXTURES``), or here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Packages the torch-free install must never import.
HEAVY = ("torch", "transformers", "sentence_transformers", "onnx")

_PRELUDE = f"""
import importlib.abc, json, sys
HEAVY = {HEAVY!r}

class _TorchFree(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a torch-free install)", name=name)
        return None

sys.meta_path.insert(0, _TorchFree())

from crossrank.testing import SLIM_DOCUMENTS, SLIM_QUERY as QUERY
DOCS = list(SLIM_DOCUMENTS)

def done(result):
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
    print(json.dumps({{"result": result, "heavy_imported": heavy}}))
"""


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CROSSRANK_TORCH_FREE_FIXTURES")
    if given:
        return Path(given)
    from crossrank.testing import build_torch_free_fixtures

    return build_torch_free_fixtures(tmp_path_factory.mktemp("torch-free"))


@pytest.fixture(scope="session")
def expected(fixtures: Path) -> dict:
    return json.loads((fixtures / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def torch_free(fixtures: Path):
    """``torch_free(script)``: run ``script`` without torch; it calls ``done(result)``; returns ``result``."""

    def run(script: str, *, timeout_s: float = 180) -> object:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        code = _PRELUDE + f"\nFIXTURES = {str(fixtures)!r}\n" + textwrap.dedent(script)
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env
        )
        assert done.returncode == 0, done.stderr[-4000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["heavy_imported"] == [], report
        return report["result"]

    return run
