"""What each engine sends the LLM, against fp32: the top 3 it picks, its largest logit error, nDCG@10.

nDCG hides what a RAG user sees: two engines can score 0.56 and hand the LLM a different set of 3
chunks for 4 queries in 10. So each engine here is measured against crossrank's torch fp32 (equal
to sentence-transformers' ``CrossEncoder`` within 1e-5) on every query's BM25 top 20:

* **top-3 set**: queries whose 3 best chunks are the same set as fp32's (what reaches the LLM);
* **top-1**: queries whose best chunk is fp32's;
* **max |logit - fp32|** over every scored pair;
* **nDCG@10** against the qrels.

Engines: crossrank's ONNX fp32, int8 (dynamic) and int8-static, and the dynamic int8 files
sentence-transformers writes for hub repositories (``onnx/model_qint8_avx512_vnni.onnx``,
``_qint8_avx512``, ``_quint8_avx2``, ``_qint8_arm64``, by ``export_dynamic_quantized_onnx_model``:
what the ``cross-encoder/*`` repositories ship). Those are made for the fixture in the venv of
``benchmarks/setup_st_onnx.sh`` (optimum), then run by crossrank's ONNX backend (``onnx_file=``):
ONNX Runtime runs every one of them on any x86 CPU, only the speed depends on the instruction set.

    python benchmarks/fidelity.py                       # DL19, every engine
    python benchmarks/fidelity.py --data ../shared/data/trec-dl-2020-passage --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from crossrank import Reranker
from crossrank.cpus import cpu_summary

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
ST_ONNX_PYTHON = HERE / ".venv-st-onnx" / "bin" / "python"
#: sentence-transformers' dynamic int8 configurations, by the file each one writes.
OPTIMUM_FILES = {
    "avx512_vnni": "onnx/model_qint8_avx512_vnni.onnx",
    "avx512": "onnx/model_qint8_avx512.onnx",
    "avx2": "onnx/model_quint8_avx2.onnx",
    "arm64": "onnx/model_qint8_arm64.onnx",
}
console = Console(width=None if sys.stdout.isatty() else 150)
Scorer = Callable[[str, list[str]], list[float]]

_OPTIMUM_EXPORT = """
import shutil, sys
from sentence_transformers import CrossEncoder
from sentence_transformers.backend import export_dynamic_quantized_onnx_model
model, folder, configs = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
shutil.copytree(model, folder, dirs_exist_ok=True)
encoder = CrossEncoder(folder, backend="onnx")  # optimum exports onnx/model.onnx on first load
encoder.save_pretrained(folder)
for config in configs:
    export_dynamic_quantized_onnx_model(encoder, config, folder)
"""


def optimum_folder(model: str, st_onnx_python: Path) -> Path | None:
    """A hub-style copy of ``model`` with sentence-transformers' int8 files (made once, cached)."""
    root = Path(os.environ.get("CROSSRANK_CACHE") or Path.home() / ".cache" / "crossrank")
    folder = root / "bench" / "optimum-int8" / Path(model).name
    if all((folder / name).is_file() for name in OPTIMUM_FILES.values()):
        return folder
    if not st_onnx_python.is_file():
        console.print(f"[yellow]no {st_onnx_python}: run benchmarks/setup_st_onnx.sh for the optimum files")
        return None
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    script = textwrap.dedent(_OPTIMUM_EXPORT)
    subprocess.run(
        [str(st_onnx_python), "-c", script, model, str(folder), ",".join(OPTIMUM_FILES)],
        check=True,
        capture_output=True,
    )
    return folder


def engines(model: str, optimum: Path | None) -> dict[str, Callable[[], Scorer]]:
    """Each engine's name and how to load it (loaded one at a time: memory stays one model's)."""

    def crossrank(location: str, **options) -> Callable[[], Scorer]:
        return lambda: Reranker(location, device="cpu", **options).score

    table = {
        "torch fp32 (ref)": crossrank(model, backend="torch"),
        "onnx fp32": crossrank(model, backend="onnx"),
        "onnx int8 (crossrank)": crossrank(model, backend="onnx", quantize="int8"),
        "onnx int8-static (crossrank)": crossrank(model, backend="onnx", quantize="int8-static"),
    }
    for config, name in OPTIMUM_FILES.items() if optimum else ():
        table[f"{Path(name).name} (ST/optimum, {config})"] = crossrank(
            str(optimum), backend="onnx", onnx_file=name
        )
    return table


def read_queries(data: Path, depth: int = 20) -> dict[str, tuple[str, list[str]]]:
    """Each query of ``data`` (a folder with ``bm25_top100.jsonl``) with its BM25 top ``depth`` texts."""
    rows = [json.loads(line) for line in (data / "bm25_top100.jsonl").read_text().splitlines()]
    return {row["qid"]: (row["query"], [hit["text"] for hit in row["hits"][:depth]]) for row in rows}


def padded_batches(tokenizer, queries: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
    """One batch per query, padded to its longest pair: how the torch simulations score them."""
    return {
        qid: tokenizer([q] * len(t), t, truncation=True, max_length=512, padding=True, return_tensors="pt")
        for qid, (q, t) in queries.items()
    }


def agreement(scores: dict[str, list[float]], reference: dict[str, list[float]]) -> dict[str, float]:
    """Queries whose top-3 set is the reference's, and the largest and median |logit - reference|."""
    diffs = [np.abs(np.subtract(scores[q], reference[q])) for q in reference]
    return {
        "top3_same": sum(set(top(scores[q], 3)) == set(top(reference[q], 3)) for q in reference),
        "max_abs": float(max(d.max() for d in diffs)),
        "median_abs": float(statistics.median(float(np.median(d)) for d in diffs)),
    }


def top(scores: list[float], k: int) -> list[int]:
    """The indexes of the ``k`` best scores, ties to the earlier one (as crossrank ranks)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def measure(
    scores: dict[str, list[float]], reference: dict[str, list[float]], run: dict, qrels: list
) -> dict[str, float]:
    """One engine's fidelity to the reference and its nDCG@10."""
    queries = list(reference)
    return {
        "top3_set": sum(set(top(scores[q], 3)) == set(top(reference[q], 3)) for q in queries),
        "top1": sum(top(scores[q], 1) == top(reference[q], 1) for q in queries),
        "max_abs_logit_diff": float(
            max(np.max(np.abs(np.subtract(scores[q], reference[q]))) for q in queries)
        ),
        "ndcg@10": ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10],
        "queries": len(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--depth", type=int, default=20, help="rerank each query's BM25 top N")
    parser.add_argument("--st-onnx-python", type=Path, default=ST_ONNX_PYTHON)
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()

    with open(Path(args.data) / "bm25_top100.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    queries = {row["qid"]: (row["query"], row["hits"][: args.depth]) for row in rows}
    qrels_file = str(Path(args.data) / "qrels.txt")
    qrels = [q for q in ir_measures.read_trec_qrels(qrels_file) if q.query_id in queries]

    optimum = optimum_folder(args.model, args.st_onnx_python)
    scores: dict[str, dict[str, list[float]]] = {}
    for name, load in engines(args.model, optimum).items():
        score = load()
        scores[name] = {
            qid: score(query, [hit["text"] for hit in hits])
            for qid, (query, hits) in track(queries.items(), description=name, console=console)
        }
        del score

    reference = scores["torch fp32 (ref)"]
    figures = {}
    for name, per_query in scores.items():
        run = {
            qid: {hit["docid"]: s for hit, s in zip(queries[qid][1], per_query[qid], strict=True)}
            for qid in queries
        }
        figures[name] = measure(per_query, reference, run, qrels)

    table = Table(
        title=f"{len(queries)} queries of {Path(args.data).name} x BM25 top {args.depth}, {cpu_summary()}, "
        f"model {Path(args.model).name}: each engine against torch fp32",
        title_justify="left",
    )
    for column in ("engine", "top-3 set = fp32's", "top-1 = fp32's", "max |logit - fp32|", "nDCG@10"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for name, f in figures.items():
        table.add_row(
            name,
            f"{f['top3_set']}/{f['queries']}",
            f"{f['top1']}/{f['queries']}",
            f"{f['max_abs_logit_diff']:.2g}",
            f"{f['ndcg@10']:.4f}",
        )
    console.print(table)
    if args.json_out:
        report = {"args": vars(args) | {"st_onnx_python": str(args.st_onnx_python)}, "cpu": cpu_summary()}
        Path(args.json_out).write_text(json.dumps(report | {"figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
