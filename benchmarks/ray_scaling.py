"""crossrank on Ray: pairs/s of one process against Ray Data actors and Ray Serve replicas, in one run.

Workload: the 43 TREC DL 2019 queries with their BM25 top ``--depth`` passages, scored by the
trained MiniLM-L6 fixture on CPU. Every system scores the same pairs through the same seam
(``Reranker.score_batch``); on a 2-core machine the threads are split so that each system uses
both cores (``threads = cores / actors``). In turns, ``--rounds`` times, so the machine's noise
falls on every system alike:

* ``single process``: ``Reranker.score_batch`` over all requests, in calls of 1,024 pairs (what
  ``crossrank eval`` and each batch actor do), ``threads=2``;
* ``Ray Data, N actor(s)``: :func:`crossrank.ray.batch.rerank_batch` on a JSONL of the same
  requests, an ``ActorPoolStrategy(size=N)`` pool on a local Ray. Reported twice: end to end (actor
  start and model load included, as a short job pays them) and steady state (pairs finished after
  the first shard, over the time after it: what a long job approaches);
* ``crossrank serve (uvicorn)``: the single-process server, ``--clients`` concurrent clients each
  sending one TEI request after another;
* ``Ray Serve, N replica(s)``: the same app as Serve replicas behind Ray's proxy, same clients.

It prints medians and the ratio of each to the single process, Ray's overhead per pair
(``1/rate - 1/single``, in ms), and writes the figures to ``benchmarks/results/``.

    python benchmarks/ray_scaling.py                        # ~8 minutes on 2 idle cores
    python benchmarks/ray_scaling.py --depth 20 --rounds 1  # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CROSSRANK_SHARED", HERE.parent.parent / "shared"))
MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
console = Console(width=None if sys.stdout.isatty() else 160)


def load_requests(depth: int) -> list[dict]:
    with (SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [{**row, "hits": row["hits"][:depth]} for row in rows]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def single_process(reranker, requests: list[tuple[str, list[str]]]) -> float:
    """Seconds of ``score_batch`` over every request, in calls of up to 1,024 pairs."""
    started = time.perf_counter()
    chunk: list[tuple[str, list[str]]] = []
    for request in requests:
        if chunk and sum(len(t) for _, t in chunk) + len(request[1]) > 1024:
            reranker.score_batch(chunk)
            chunk = []
        chunk.append(request)
    reranker.score_batch(chunk)
    return time.perf_counter() - started


def ray_data(input_path: Path, actors: int, cores: int, shard_pairs: int) -> tuple[float, float, int]:
    """(end-to-end seconds, steady-state pairs/s, pairs) of one rerank_batch run."""
    from crossrank import RerankerConfig
    from crossrank.ray import RayConfig
    from crossrank.ray.batch import rerank_batch

    marks: list[tuple[float, int]] = []
    output = Path(tempfile.mkdtemp()) / "out.jsonl"
    started = time.perf_counter()
    report = rerank_batch(
        input_path,
        output,
        reranker=RerankerConfig(model=str(MODEL), device="cpu", threads=max(1, cores // actors)),
        # Ray's reservations only schedule: the replicas of the Serve rows stay deployed meanwhile, so
        # each copy reserves a sliver of a CPU, and its threads (above) say what it really uses.
        ray_config=RayConfig(actors=actors, num_cpus=0.25, shard_pairs=shard_pairs),
        progress=lambda done, total, pairs: marks.append((time.perf_counter(), pairs)),
    )
    end_to_end = time.perf_counter() - started
    scored = [(t, p) for t, p in marks if p > 0]
    (t_first, p_first), (t_last, p_last) = scored[0], scored[-1]
    steady = (p_last - p_first) / (t_last - t_first) if t_last > t_first else float("nan")
    return end_to_end, steady, report.pairs


async def drive(url: str, requests: list[tuple[str, list[str]]], clients: int) -> float:
    """Seconds to send every request once, ``clients`` at a time (TEI shape), all answered 200."""
    queue = list(requests)
    async with httpx.AsyncClient(timeout=300) as client:

        async def worker() -> None:
            while queue:
                query, texts = queue.pop()
                response = await client.post(f"{url}/rerank", json={"query": query, "texts": texts})
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started


def start_uvicorn_server(cores: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "crossrank", "serve", "--model", str(MODEL), "--device", "cpu"]
    command += ["--threads", str(cores), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"crossrank serve did not start: {process.stderr.read()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates per query (43 queries).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cores", type=int, default=2, help="CPUs of the local Ray and the threads to split."
    )
    parser.add_argument("--shard-pairs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8, help="Concurrent HTTP clients for the servers.")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from crossrank import Reranker, RerankerConfig
    from crossrank.ray import RayConfig
    from crossrank.ray.serving import build_app
    from crossrank.server import ServerConfig

    rows = load_requests(args.depth)
    requests = [(row["query"], [hit["text"] for hit in row["hits"]]) for row in rows]
    pairs = sum(len(texts) for _, texts in requests)
    input_path = Path(tempfile.mkdtemp()) / "dl19.jsonl"
    input_path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    console.print(
        f"{len(requests)} queries x BM25 top {args.depth} = {pairs} pairs, {args.rounds} rounds, "
        f"{args.cores} cores, load average at start {os.getloadavg()[0]:.1f}"
    )

    reranker = Reranker(MODEL, device="cpu", threads=args.cores)
    single_process(reranker, requests[:4])  # warm-up
    ray.init(address="local", num_cpus=args.cores, include_dashboard=False, _node_ip_address="127.0.0.1")
    uvicorn_process, uvicorn_url = start_uvicorn_server(args.cores)
    serve_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve_urls = {}
    for replicas in (1, 2):
        config = RerankerConfig(model=str(MODEL), device="cpu", threads=max(1, args.cores // replicas))
        app = build_app(config, ServerConfig(), RayConfig(replicas=replicas, num_cpus=0.1))
        serve.run(app, name=f"r{replicas}", route_prefix=f"/r{replicas}", blocking=False)
        serve_urls[replicas] = f"http://127.0.0.1:{serve_port}/r{replicas}"
    for url in [uvicorn_url, *serve_urls.values()]:  # warm every replica and the server
        asyncio.run(drive(url, requests[:8], args.clients))

    times: dict[str, list[float]] = {}
    steady: dict[str, list[float]] = {}
    try:
        for round_ in range(args.rounds):
            times.setdefault("single process (score_batch)", []).append(single_process(reranker, requests))
            for actors in (1, 2):
                name = f"Ray Data, {actors} actor{'s' if actors > 1 else ''}"
                total, rate, written = ray_data(input_path, actors, args.cores, args.shard_pairs)
                assert written == pairs
                times.setdefault(name, []).append(total)
                steady.setdefault(name, []).append(rate)
            times.setdefault("crossrank serve (uvicorn)", []).append(
                asyncio.run(drive(uvicorn_url, requests, args.clients))
            )
            for replicas, url in serve_urls.items():
                name = f"Ray Serve, {replicas} replica{'s' if replicas > 1 else ''}"
                times.setdefault(name, []).append(asyncio.run(drive(url, requests, args.clients)))
            console.print(f"round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}")
    finally:
        uvicorn_process.terminate()
        serve.shutdown()
        ray.shutdown()

    base = pairs / statistics.median(times["single process (score_batch)"])
    table = Table(
        title=f"pairs/s, {pairs} DL19 pairs (MiniLM-L6 fixture, CPU), median of {args.rounds}, "
        f"{args.cores} cores",
        title_justify="left",
    )
    for column in (
        "system",
        "pairs/s",
        "vs single process",
        "overhead ms/pair",
        "steady pairs/s",
        "steady vs single",
    ):
        table.add_column(column, justify="left" if column == "system" else "right")
    results = {}
    for name, seconds in times.items():
        rate = pairs / statistics.median(seconds)
        row = {
            "pairs_per_s": rate,
            "ratio": rate / base,
            "overhead_ms_per_pair": (1 / rate - 1 / base) * 1000,
        }
        cells = [f"{rate:.1f}", f"{rate / base:.2f}", f"{row['overhead_ms_per_pair']:+.2f}", "", ""]
        if name in steady:
            steady_rate = statistics.median(steady[name])
            row |= {"steady_pairs_per_s": steady_rate, "steady_ratio": steady_rate / base}
            cells[3:] = [f"{steady_rate:.1f}", f"{steady_rate / base:.2f}"]
        row |= {"seconds": seconds, "steady_samples": steady.get(name, [])}
        results[name] = row
        table.add_row(name, *cells)
    console.print(table)
    output = args.output or HERE / "results" / f"ray_scaling-{datetime.date.today()}-cpu{args.cores}.json"
    output.write_text(
        json.dumps(
            {
                "pairs": pairs,
                "depth": args.depth,
                "rounds": args.rounds,
                "cores": args.cores,
                "clients": args.clients,
                "shard_pairs": args.shard_pairs,
                "load_average_end": os.getloadavg(),
                "results": results,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    console.print(f"written to {output}")


if __name__ == "__main__":
    main()
