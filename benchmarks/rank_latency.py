"""Every CPU reranker side by side: latency, throughput, start-up, memory and nDCG@10, in one run.

Inputs: the 43 TREC DL 2019 queries with their BM25 top 20 (latency) and top 100 (throughput),
scored by the trained MiniLM-L6 fixture in every system:

* ``st``        sentence-transformers ``CrossEncoder``, torch fp32: the reference
* ``st-bf16``   the same with bf16 weights (``model_kwargs={"dtype": torch.bfloat16}``): the fair
  anchor on CPUs with native bf16 (AMX, AVX512-BF16); elsewhere torch emulates bf16, slowly
* ``st-onnx``   sentence-transformers ``CrossEncoder(backend="onnx")`` (needs the separate venv of
  ``benchmarks/setup_st_onnx.sh``: optimum-onnx pins transformers < 5; ``--st-onnx-python``)
* ``st-openvino`` sentence-transformers ``CrossEncoder(backend="openvino")`` at OpenVINO's default
  precision for the CPU (bf16 where native; venv of ``benchmarks/setup_st_openvino.sh``)
* ``flashrank`` FlashRank 0.2.10, given an int8 ONNX file of the fixture in its local model
  layout: crossrank's int8 recipe with the whole last layer, as standard exports have it (its
  own models are zip files on a hub these machines can't reach)
* ``fastembed`` fastembed 0.9 ``TextCrossEncoder`` on the fixture exported whole as
  ``onnx/model.onnx`` fp32 (``add_custom_model`` + ``specific_model_path``)
* ``auto``      crossrank as it comes: ``backend="auto"``, the per-CPU choice (``crossrank.backends.choice``)
* ``torch``, ``torch-bf16``, ``onnx``, ``int8``, ``int8-static``, ``openvino``, ``openvino-bf16``
  crossrank's backends and precisions, timed through ``Reranker.rank``; ``openvino-int8`` is
  OpenVINO on the int8-static (QDQ) file of a ``crossrank export`` folder
* ``slim``, ``slim-int8``  crossrank's torch-free install (``pip install crossrank``, no extras)
  on the folder ``crossrank export`` writes (exported here first), fp32 and int8

``st-onnx`` and ``st-openvino`` run from the venvs ``benchmarks/setup_st_onnx.sh`` and
``setup_st_openvino.sh`` build; ``slim``, ``flashrank`` and
``fastembed`` from the torch-free venvs ``benchmarks/setup_torch_free.sh`` builds (``--*-python``
points elsewhere), so each one's site-packages is its own install alone. Their files are prepared
here, in the full venv, where torch can export.

Each system lives in its own process (``system_worker.py``), started after its one-off export:

1. cold start: a new process -> first ranking of 20 passages returned, ``--cold-starts`` times
   (median); the page cache is warm, as on a worker that restarts;
2. latency: every query's top 20, each system in turn (the order rotates per query), for
   ``--rounds`` passes; median and p95 per query, timed inside the worker. Calls are ``--gap-ms``
   apart: torch's OpenMP and ONNX Runtime's thread pools spin for a while after a call, and in
   one shared machine that would steal the cores from the next system's call, which a reranker
   alone in its worker never suffers;
   Fidelity, against the reference: the largest logit difference, and the queries whose top-3
   *set* is the reference's (what reaches the LLM; nDCG@10 hides a swapped chunk);
3. throughput: every query's top 100, the same way, once; docs/s = passages / scoring time;
4. peak RSS of each process after the top-20 passes, and again after the top-100 one;
5. the size of each system's site-packages (the venv its Python runs in).

    python benchmarks/rank_latency.py                               # every system available
    python benchmarks/rank_latency.py --systems st,int8 --rounds 1  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ir_measures
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from crossrank.cpus import cpu_summary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import top  # one rule for "the best k", ties to the earlier chunk

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WORKER = HERE / "system_worker.py"
LABELS = {
    "st": "ST torch fp32 (ref)",
    "st-bf16": "ST torch bf16 weights",
    "st-onnx": "ST onnx fp32",
    "st-openvino": "ST openvino",
    "flashrank": "FlashRank 0.2.10 int8",
    "fastembed": "fastembed 0.9 fp32",
    "auto": "crossrank auto (the default)",
    "torch": "crossrank torch fp32",
    "torch-bf16": "crossrank torch bf16 weights",
    "onnx": "crossrank onnx fp32",
    "int8": "crossrank onnx int8",
    "int8-static": "crossrank onnx int8-static",
    "openvino": "crossrank openvino fp32",
    "openvino-bf16": "crossrank openvino bf16",
    "openvino-int8": "crossrank openvino int8-static file",
    "slim": "crossrank slim (no torch) fp32",
    "slim-int8": "crossrank slim (no torch) int8",
}
#: Systems that run from a venv of their own: (its --option, how to build it).
OWN_VENV = {
    "st-onnx": ("st_onnx_python", "run benchmarks/setup_st_onnx.sh (optimum-onnx pins transformers < 5)"),
    "st-openvino": (
        "st_openvino_python",
        "run benchmarks/setup_st_openvino.sh (optimum-intel pins transformers < 5)",
    ),
    "slim": ("slim_python", "run benchmarks/setup_torch_free.sh"),
    "slim-int8": ("slim_python", "run benchmarks/setup_torch_free.sh"),
    "flashrank": ("flashrank_python", "run benchmarks/setup_torch_free.sh"),
    "fastembed": ("fastembed_python", "run benchmarks/setup_torch_free.sh"),
}
#: Where benchmarks/setup_*.sh put each venv (the --*-python defaults).
VENV_PYTHONS = {
    "st_onnx_python": HERE / ".venv-st-onnx" / "bin" / "python",
    "st_openvino_python": HERE / ".venv-st-openvino" / "bin" / "python",
    "slim_python": HERE / ".venv-slim" / "bin" / "python",
    "slim_server_python": HERE / ".venv-slim-server" / "bin" / "python",
    "flashrank_python": HERE / ".venv-flashrank" / "bin" / "python",
    "fastembed_python": HERE / ".venv-fastembed" / "bin" / "python",
}
console = Console(width=None if sys.stdout.isatty() else 150)


class Worker:
    """A system's process: send a request, read one JSON reply."""

    def __init__(self, python: str, system: str, model: str) -> None:
        self.system = system
        self.process = subprocess.Popen(
            [python, str(WORKER), "--system", system, "--model", model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=os.environ | {"TOKENIZERS_PARALLELISM": "false"},
        )

    def ask(self, request: dict) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.system} worker died (rerun it alone to see its error)")
        return json.loads(line)

    def score(self, query: str, texts: list[str]) -> dict:
        return self.ask({"op": "score", "query": query, "texts": texts})

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def available(systems: list[str], venvs: dict[str, Path]) -> tuple[dict[str, str], dict[str, str]]:
    """Python interpreter per runnable system, and why the others can't run.

    A system in :data:`OWN_VENV` runs from its venv's Python (``venvs``), so that its site-packages
    is its own install alone; the others run here, in the full venv.
    """
    pythons, missing = {}, {}
    for system in systems:
        if system not in OWN_VENV:
            pythons[system] = sys.executable
            continue
        python = venvs[OWN_VENV[system][0]]
        if python.is_file():
            pythons[system] = str(python)
        else:
            missing[system] = f"no {python}: {OWN_VENV[system][1]}"
    return pythons, missing


def run_passes(
    workers: dict[str, Worker], queries: list, depth: int, rounds: int, gap_s: float, progress: Progress
):
    """Score each query's top ``depth`` with every worker in turn; returns times and scores per system."""
    names = list(workers)
    times: dict[str, list[float]] = {name: [] for name in names}
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    task = progress.add_task(f"top {depth}", total=rounds * len(queries))
    for round_ in range(rounds):
        for i, (qid, query, hits) in enumerate(queries):
            texts = [hit["text"] for hit in hits[:depth]]
            shift = (i + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                time.sleep(gap_s)  # let the previous call's spinning threads go idle
                reply = workers[name].score(query, texts)
                times[name].append(reply["ms"])
                scores[name][qid] = reply["scores"]
            progress.advance(task)
    return times, scores


def site_packages_mib(python: str) -> float:
    """The size of the site-packages a Python runs with, pip and setuptools (and its pkg_resources)
    left out (MiB)."""
    where = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    total = 0
    for path in Path(where).rglob("*"):
        top = path.relative_to(where).parts[0].lower()
        if path.is_file() and not top.startswith(("pip", "setuptools", "_distutils_hack", "pkg_resources")):
            total += path.stat().st_size
    return total / 2**20


def ndcg10(scores: dict[str, list[float]], queries: list, depth: int, qrels: list) -> float:
    run = {
        qid: {hit["docid"]: s for hit, s in zip(hits[:depth], scores[qid], strict=True)}
        for qid, _, hits in queries
    }
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--systems", default=",".join(LABELS), help=", ".join(LABELS))
    parser.add_argument("--rounds", type=int, default=3, help="top-20 passes over the queries")
    parser.add_argument("--cold-starts", type=int, default=3, help="fresh processes per system")
    parser.add_argument("--throughput-depth", type=int, default=100, help="0 skips the throughput pass")
    parser.add_argument("--gap-ms", type=float, default=100, help="pause before each timed call")
    parser.add_argument("--max-queries", type=int, help="use the first N queries only (a quick look)")
    for option, default in VENV_PYTHONS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=Path, default=default)
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()

    with open(Path(args.data) / "bm25_top100.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    queries = [(row["qid"], row["query"], row["hits"]) for row in rows][: args.max_queries]
    used = {qid for qid, _, _ in queries}
    qrels = [q for q in ir_measures.read_trec_qrels(str(Path(args.data) / "qrels.txt")) if q.query_id in used]
    requested = [s.strip() for s in args.systems.split(",") if s.strip()]
    if requested[0] != "st":
        requested = ["st", *[s for s in requested if s != "st"]]  # the reference is always there
    venvs = {option: getattr(args, option) for option in VENV_PYTHONS}
    pythons, missing = available(requested, venvs)
    for system, why in missing.items():
        console.print(f"[yellow]skipping {system}:[/] {why}")
    names = list(pythons)
    first_query, first_texts = queries[0][1], [hit["text"] for hit in queries[0][2][:20]]

    with Progress(console=console) as progress:
        task = progress.add_task("prepare (exports, layouts)", total=len(names))
        for name in names:
            # exports need torch: only ST's own venvs (ONNX, OpenVINO) prepare their own files
            preparer = pythons[name] if name in ("st-onnx", "st-openvino") else sys.executable
            subprocess.run(
                [preparer, str(WORKER), "--system", name, "--model", args.model, "--prepare"],
                check=True,
                capture_output=True,
            )
            progress.advance(task)

        task = progress.add_task("cold starts", total=args.cold_starts * len(names))
        cold: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.cold_starts):
            for name in names:
                time.sleep(args.gap_ms / 1000)
                started = time.perf_counter()
                worker = Worker(pythons[name], name, args.model)
                worker.score(first_query, first_texts)
                cold[name].append(time.perf_counter() - started)
                worker.close()
                progress.advance(task)

        workers = {name: Worker(pythons[name], name, args.model) for name in names}
        for worker in workers.values():  # load, and let first calls allocate and pick kernels
            for _, query, hits in queries[:3]:
                worker.score(query, [hit["text"] for hit in hits[:20]])
        gap = args.gap_ms / 1000
        times, scores = run_passes(workers, queries, 20, args.rounds, gap, progress)
        rss20 = {name: worker.ask({"op": "rss"})["peak_rss_mb"] for name, worker in workers.items()}
        if args.throughput_depth:
            big_times, big_scores = run_passes(workers, queries, args.throughput_depth, 1, gap, progress)
            rss100 = {name: worker.ask({"op": "rss"})["peak_rss_mb"] for name, worker in workers.items()}
        for worker in workers.values():
            worker.close()

    reference = statistics.median(times["st"])
    figures: dict[str, dict] = {}
    for name in names:
        diffs = [np.max(np.abs(np.subtract(scores[name][q], scores["st"][q]))) for q in scores[name]]
        same_top3 = sum(set(top(scores[name][q], 3)) == set(top(scores["st"][q], 3)) for q in scores[name])
        figures[name] = {
            "system": LABELS[name],
            "median_ms": statistics.median(times[name]),
            "p95_ms": float(np.percentile(times[name], 95)),
            "docs_per_s_top20": 20 * len(times[name]) / (sum(times[name]) / 1000),
            "ndcg@10_top20": ndcg10(scores[name], queries, 20, qrels),
            "max_abs_diff": None if name == "flashrank" else float(max(diffs)),  # FlashRank: sigmoid
            "top3_same_as_ref": same_top3,
            "speedup": reference / statistics.median(times[name]),
            "cold_start_s": statistics.median(cold[name]),
            "peak_rss_mb_top20": rss20[name],
            "site_packages_mib": site_packages_mib(pythons[name]),
        }
        if args.throughput_depth:
            figures[name] |= {
                "docs_per_s_top100": args.throughput_depth * len(queries) / (sum(big_times[name]) / 1000),
                "ndcg@10_top100": ndcg10(big_scores[name], queries, args.throughput_depth, qrels),
                "peak_rss_mb_top100": rss100[name],
            }
    sizes = {option: site_packages_mib(str(python)) for option, python in venvs.items() if python.is_file()}
    print_tables(figures, args, len(queries))
    console.print(
        "site-packages MiB of each venv: "
        + ", ".join(f"{option.removesuffix('_python')} {mib:.0f}" for option, mib in sizes.items())
        + f"; this one (full) {site_packages_mib(sys.executable):.0f}"
    )
    if args.json_out:
        settings = vars(args) | {option: str(python) for option, python in venvs.items()}
        report = {"args": settings, "cpu": cpu_summary(), "figures": figures, "site_packages_mib": sizes}
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


def print_tables(figures: dict[str, dict], args: argparse.Namespace, num_queries: int) -> None:
    ref = figures["st"]
    latency = Table(
        title=f"{num_queries} DL19 queries x BM25 top 20 x {args.rounds} rounds, {cpu_summary()}, "
        f"model {Path(args.model).name}",
        title_justify="left",
    )
    # the other anchors issue 27 sets: ST with bf16 weights and ST's own OpenVINO backend, when run
    anchors = {
        label: figures[s]
        for s, label in (("st-bf16", "x ST bf16"), ("st-openvino", "x ST OV"))
        if s in figures
    }
    columns = ["system", "median ms", "p95 ms", "docs/s", "nDCG@10", "max |Δ| vs ref", "top-3 = ref"]
    columns += ["speed-up", *anchors]
    for column in columns:
        latency.add_column(column, justify="left" if column == "system" else "right")
    for f in figures.values():
        latency.add_row(
            f["system"],
            f"{f['median_ms']:.1f}",
            f"{f['p95_ms']:.1f}",
            f"{f['docs_per_s_top20']:.0f}",
            f"{f['ndcg@10_top20']:.4f}",
            "sigmoid" if f["max_abs_diff"] is None else f"{f['max_abs_diff']:.1e}",
            f"{f['top3_same_as_ref']}/{num_queries}",
            f"{ref['median_ms'] / f['median_ms']:.2f}x",
            *(f"{anchor['median_ms'] / f['median_ms']:.2f}x" for anchor in anchors.values()),
        )
    console.print(latency)
    footprint = Table(
        title=f"start-up, memory (median of {args.cold_starts} cold starts) and throughput "
        f"(top {args.throughput_depth})",
        title_justify="left",
    )
    columns = ["system", "site-packages MiB", "cold start s", "vs ref", "peak RSS MB", "vs ref"]
    if args.throughput_depth:
        columns += ["docs/s", "vs ref", "nDCG@10", "peak RSS MB"]
    for column in columns:
        footprint.add_column(column, justify="left" if column == "system" else "right")
    for f in figures.values():
        row = [
            f["system"],
            f"{f['site_packages_mib']:.0f}",
            f"{f['cold_start_s']:.2f}",
            f"{f['cold_start_s'] / ref['cold_start_s']:.2f}x",
            f"{f['peak_rss_mb_top20']:.0f}",
            f"{f['peak_rss_mb_top20'] / ref['peak_rss_mb_top20']:.2f}x",
        ]
        if args.throughput_depth:
            row += [
                f"{f['docs_per_s_top100']:.0f}",
                f"{f['docs_per_s_top100'] / ref['docs_per_s_top100']:.2f}x",
                f"{f['ndcg@10_top100']:.4f}",
                f"{f['peak_rss_mb_top100']:.0f}",
            ]
        footprint.add_row(*row)
    console.print(footprint)


if __name__ == "__main__":
    main()
