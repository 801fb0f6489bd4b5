"""The examples in crossrank's docstrings run and print what they claim, in every module.

The modules are found, not listed: every module of the package that imports here has its
doctests run. The examples name the hub model users load, ``cross-encoder/ms-marco-MiniLM-L6-v2``.
Here it is served, offline, from a Hugging Face cache laid out in a temporary folder whose snapshot
holds the trained fixture model: the examples run unchanged, on real rankings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules known to hold examples: each must have some found and run (a discovery that misses one,
#: or a docstring whose examples were lost, fails here).
WITH_EXAMPLES = {
    "crossrank.reranker",
    "crossrank.config",
    "crossrank.validation",
    "crossrank.rank_options",
    "crossrank.scoring",
    "crossrank.backends",
    "crossrank.encoding",
    "crossrank.selection",
    "crossrank.adapters",
    "crossrank.testing",
    "crossrank.finetune.config",
    "crossrank.server.errors",
}

#: Runs in a subprocess: walks every module of crossrank, runs its doctests, prints one JSON line.
#: A module that can't be imported for want of an optional package is reported as skipped; any
#: other import error counts as a failure. ``__main__`` modules run the command when imported.
_RUNNER = """
import doctest, importlib, json, pkgutil, sys, traceback
import crossrank

results, skipped, broken = {}, {}, {}
names = sorted(
    info.name
    for info in pkgutil.walk_packages(crossrank.__path__, "crossrank.", onerror=lambda name: None)
    if info.name.rsplit(".", 1)[-1] != "__main__"
)
for name in ["crossrank", *names]:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "crossrank":
            broken[name] = traceback.format_exc()
        else:
            skipped[name] = str(error)
        continue
    except Exception:
        broken[name] = traceback.format_exc()
        continue
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    results[name] = [outcome.attempted, outcome.failed]
print(json.dumps({"results": results, "skipped": skipped, "broken": broken}))
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
        [sys.executable, "-c", _RUNNER], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert not report["broken"], "\n".join(report["broken"].values())[-6000:]
    failed = {name: counts for name, counts in results.items() if counts[1]}
    assert not failed, done.stdout[-6000:]
    assert len(results) > len(WITH_EXAMPLES)  # the walk found the package, not only a few modules
    none_run = {
        name: report["skipped"].get(name, results.get(name, "not found"))
        for name in sorted(WITH_EXAMPLES)
        if results.get(name, [0])[0] == 0
    }
    assert not none_run, f"modules known to hold examples ran none: {none_run}"
