"""The torch-free install, tested: every test runs its script in a fresh Python without torch.

In the slim venv that ``scripts/test.sh`` builds (``pip install crossrank[server,onnx]`` and the
three framework packages, no torch) and in the full venv alike, each script first makes torch,
transformers, sentence-transformers and onnx (all but those it ``allow``s) look uninstalled
(``sys.modules[name] = None``), and asserts at the end that none of them was imported.

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

_PRELUDE = """
import json, sys
HEAVY = {heavy!r}

# As if not installed: `import torch` raises ModuleNotFoundError and importlib.util.find_spec
# returns None (a finder that raised would break find_spec, which libraries call to probe).
for name in HEAVY:
    sys.modules[name] = None

from crossrank.testing import SLIM_DOCUMENTS, SLIM_QUERY as QUERY
DOCS = list(SLIM_DOCUMENTS)

def done(result):
    heavy = sorted({{m.split(".")[0] for m, module in sys.modules.items() if module}} & set(HEAVY))
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

    def run(script: str, *, timeout_s: float = 180, allow: tuple[str, ...] = ()) -> object:
        """``allow``: packages of :data:`HEAVY` the script may import (``onnx``, an extra)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        heavy = tuple(name for name in HEAVY if name not in allow)
        prelude = _PRELUDE.format(heavy=heavy)
        code = prelude + f"\nFIXTURES = {str(fixtures)!r}\n" + textwrap.dedent(script)
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env
        )
        assert done.returncode == 0, done.stderr[-4000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["heavy_imported"] == [], report
        return report["result"]

    return run
