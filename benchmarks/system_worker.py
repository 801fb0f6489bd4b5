"""One reranker in its own process, driven by ``rank_latency.py`` over stdin/stdout (JSON lines).

Own process per system, so start-up time and peak memory are each system's alone, and so a
system can run under another Python (sentence-transformers' ONNX and OpenVINO backends need
``optimum-onnx`` / ``optimum-intel``, which pin transformers < 5: they run from the venvs that
``setup_st_onnx.sh`` and ``setup_st_openvino.sh`` build).
This file imports only the standard library at the top: each system imports what it needs.

    python benchmarks/system_worker.py --system int8 --model DIR --prepare   # export / lay out files
    (the ``slim``, ``flashrank`` and ``fastembed`` systems run in torch-free venvs of their own, on
    files prepared in the full venv: a ``crossrank export`` folder, or a whole-model ONNX file)
    python benchmarks/system_worker.py --system int8 --model DIR             # serve requests

Requests: ``{"op": "score", "query": str, "texts": [str]}`` -> ``{"ms": float, "scores": [float]}``
(``ms`` is the call alone, timed inside the worker); ``{"op": "rss"}`` -> ``{"peak_rss_mb": float}``;
``{"op": "quit"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

Scorer = Callable[[str, list[str]], list[float]]

#: crossrank's int8-static file in a ``crossrank export`` folder.
_INT8_STATIC = "onnx/model_qint8_static_crossrank.onnx"
#: What FlashRank reads next to its ONNX file.
_MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def _work_dir(system: str, model: str) -> Path:
    """Where a system's prepared files live (under the crossrank cache, next to its ONNX exports).

    Mirrors ``crossrank.backends.onnx_backend.onnx_cache_dir`` rather than calling it: the
    st-onnx worker runs in a venv without crossrank.
    """
    root = Path(os.environ.get("CROSSRANK_CACHE") or Path.home() / ".cache" / "crossrank")
    return root / "bench" / system / Path(model).name


def _crossrank(model: str, **options) -> Scorer:
    from crossrank import Reranker

    reranker = Reranker(model, device="cpu", **options)

    def score(query: str, texts: list[str]) -> list[float]:
        ranking = reranker.rank(query, texts, top_n=None)  # rank(), what users call, end to end
        scores = [0.0] * len(texts)
        for hit in ranking:
            scores[hit.index] = hit.score
        return scores

    return score


def _sentence_transformers(model: str, backend: str, **model_kwargs) -> Scorer:
    import torch
    from sentence_transformers import CrossEncoder

    # ST's ONNX and OpenVINO backends load the files their prepare step saved (see prepare)
    location = str(_work_dir(f"st-{backend}", model)) if backend in ("onnx", "openvino") else model
    cross_encoder = CrossEncoder(
        location,
        backend=backend,
        device="cpu",
        activation_fn=torch.nn.Identity(),
        model_kwargs=model_kwargs or None,
    )
    return lambda query, texts: cross_encoder.predict([(query, t) for t in texts]).tolist()


def _flashrank(model: str) -> Scorer:
    import flashrank.Config
    from flashrank import Ranker, RerankRequest

    folder = _work_dir("flashrank", model)
    # FlashRank knows models by name -> file; register the prepared folder's file under its name.
    flashrank.Config.model_file_map[folder.name] = "model.onnx"
    ranker = Ranker(model_name=folder.name, cache_dir=str(folder.parent), max_length=512, log_level="WARNING")

    def score(query: str, texts: list[str]) -> list[float]:
        passages = [{"id": i, "text": t} for i, t in enumerate(texts)]
        scores = [0.0] * len(texts)
        for hit in ranker.rerank(RerankRequest(query=query, passages=passages)):
            scores[hit["id"]] = float(hit["score"])
        return scores

    return score


def _fastembed(model: str) -> Scorer:
    from fastembed.common.model_description import ModelSource
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    folder, name = _work_dir("fastembed", model), "crossrank-bench/fixture"
    # fastembed's own way to run a model it doesn't list: register it, then point at a local folder.
    TextCrossEncoder.add_custom_model(name, sources=ModelSource(hf=name), model_file="onnx/model.onnx")
    encoder = TextCrossEncoder(name, specific_model_path=str(folder))
    return lambda query, texts: [float(s) for s in encoder.rerank(query, texts)]


def _whole_model_file(model: str, folder: Path, onnx_file: str, quantize: str | None) -> None:
    """A standard export, as the other runtimes' own files are: the whole model (last layer
    included), next to the tokenizer files they read."""
    from crossrank.backends.onnx_export import build_onnx

    (folder / onnx_file).parent.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    build_onnx(Path(model), folder / onnx_file, config, quantize=quantize, first_token_only=False)
    for name in _MODEL_FILES:
        if (Path(model) / name).is_file():
            shutil.copy(Path(model) / name, folder / name)


def _flashrank_file(model: str, folder: Path) -> None:
    """FlashRank's layout: its int8 ONNX file next to the tokenizer files.

    FlashRank's own files are standard int8 exports of whole models. So it gets crossrank's int8
    recipe (fusions, 7-bit weights, FastGelu) with the last layer kept whole: the one part of
    crossrank's graph that standard exports don't have (the first-token last layer) is left out.
    """
    _whole_model_file(model, folder, "model.onnx", "int8")


def load(system: str, model: str) -> Scorer:
    """The scorer of ``system`` for ``model``: texts in, one score per text out, in input order."""
    if system == "st":
        return _sentence_transformers(model, "torch")
    if system == "st-bf16":  # the fair anchor on CPUs with native bf16: bf16 weights
        import torch

        return _sentence_transformers(model, "torch", dtype=torch.bfloat16)
    if system == "st-onnx":
        return _sentence_transformers(model, "onnx")
    if system == "st-openvino":  # OpenVINO's default precision for this CPU: bf16 where native
        return _sentence_transformers(model, "openvino")
    if system == "flashrank":
        return _flashrank(model)
    if system == "fastembed":
        return _fastembed(model)
    if system == "auto":  # backend="auto", the default: what this CPU gets
        return _crossrank(model)
    if system == "torch":
        return _crossrank(model, backend="torch", precision="fp32")
    if system == "torch-bf16":
        return _crossrank(model, backend="torch", precision="bf16")
    if system == "int8-static":
        return _crossrank(model, backend="onnx", quantize="int8-static")
    if system == "openvino-bf16":
        return _crossrank(model, backend="openvino", precision="bf16")
    if system == "openvino-int8":  # OpenVINO on crossrank's int8-static (QDQ) file, from an export
        return _crossrank(str(_work_dir("slim", model)), backend="openvino", onnx_file=_INT8_STATIC)
    if system == "onnx":
        return _crossrank(model, backend="onnx")
    if system == "int8":
        return _crossrank(model, backend="onnx", quantize="int8")
    if system == "openvino":
        return _crossrank(model, backend="openvino", precision="fp32")
    if system in ("slim", "slim-int8"):  # the torch-free install, on a `crossrank export` folder
        return _crossrank(str(_work_dir("slim", model)), quantize="int8" if system == "slim-int8" else None)
    raise SystemExit(f"unknown system {system!r}")


def prepare(system: str, model: str) -> None:
    """One-off work that is not part of a cold start: exports and file layouts."""
    if system in ("auto", "torch", "torch-bf16", "onnx", "int8", "int8-static", "openvino", "openvino-bf16"):
        load(system, model)  # exports to crossrank's ONNX cache (and compiles) on first use
    elif system == "flashrank":
        _flashrank_file(model, _work_dir("flashrank", model))
        return  # run by the driver in the full venv (it exports with torch); FlashRank's has none
    elif system == "fastembed":  # fp32, as fastembed's own cross-encoder files are
        _whole_model_file(model, _work_dir("fastembed", model), "onnx/model.onnx", None)
        return
    elif system in ("slim", "slim-int8", "openvino-int8"):  # an export folder, made with torch
        from crossrank.export import export_model

        folder = _work_dir("slim", model)
        if not (folder / "crossrank-export.json").is_file():
            export_model(model, folder, overwrite=True)
        if system != "openvino-int8":
            return
    elif system in ("st-onnx", "st-openvino"):
        import torch
        from sentence_transformers import CrossEncoder

        backend = system.removeprefix("st-")
        folder = _work_dir(system, model)
        saved = {"onnx": "onnx/model.onnx", "openvino": "openvino/openvino_model.xml"}[backend]
        if not (folder / saved).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(model, folder)
            # ST exports with optimum on first load; saving keeps the exported files for later loads.
            CrossEncoder(str(folder), backend=backend, activation_fn=torch.nn.Identity()).save_pretrained(
                str(folder)
            )
    load(system, model)("warm the page cache", ["one short text"])


def peak_rss_mb() -> float:
    """This process's peak resident size, in MB.

    Linux's ``VmHWM`` starts afresh at ``exec``; ``getrusage``'s ``ru_maxrss`` does not: a worker
    forked from a 500 MB parent reports at least 500 MB however small it stays. So ``VmHWM`` where
    there is one (Linux), ``ru_maxrss`` elsewhere.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(system: str, model: str) -> None:
    """Answer requests on stdin until ``quit``; only protocol lines go to stdout."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints can't corrupt the protocol
    scorer = load(system, model)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "score":
            started = time.perf_counter()
            scores = scorer(request["query"], request["texts"])
            reply = {"ms": (time.perf_counter() - started) * 1000, "scores": [float(s) for s in scores]}
        elif request["op"] == "rss":
            reply = {"peak_rss_mb": peak_rss_mb()}
        else:
            break
        protocol.write(json.dumps(reply) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--system", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prepare", action="store_true")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.system, args.model)
    else:
        serve(args.system, args.model)


if __name__ == "__main__":
    main()
