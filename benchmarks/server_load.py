"""`crossrank serve` under load: docs/s and latency against concurrent clients, batching on and off.

For each backend (auto: the per-CPU default; torch fp32, onnx int8 dynamic, onnx int8 static) the
script first measures the **offline ceiling** in this process: the 43 TREC DL 2019 queries x BM25
top 20 scored with ``Reranker.score_batch`` (docs/s). Then, for each setting, it starts ``crossrank
serve`` as its own process on a free loopback port, and drives it for ``--seconds`` with 1, 8 and 32
concurrent clients, each sending one 20-document DL19 request (TEI shape) after another. It reports
docs/s, p50/p99 latency, errors, and the ratio to the ceiling, then draws throughput and p99 against
clients.

    python benchmarks/server_load.py                       # ~9 minutes on 2 cores
    python benchmarks/server_load.py --backends int8 --clients 1,8 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CROSSRANK_SHARED", HERE.parent.parent / "shared"))
#: Each backend's Reranker options; the server's command-line flags are derived from them.
BACKENDS: dict[str, dict[str, str]] = {
    "auto": {},  # the default: crossrank.backends.choice picks per CPU
    "torch": {"backend": "torch"},
    "int8": {"backend": "onnx", "quantize": "int8"},
    "int8-static": {"backend": "onnx", "quantize": "int8-static"},
}
console = Console(width=None if sys.stdout.isatty() else 160)
COLORS = {"auto": "tab:purple", "torch": "tab:red", "int8": "tab:blue", "int8-static": "tab:green"}


def flags(backend: str) -> list[str]:
    return [arg for name, value in BACKENDS[backend].items() for arg in (f"--{name}", value)]


def load_requests(depth: int = 20) -> list[tuple[str, list[str]]]:
    with (SHARED / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [(row["query"], [hit["text"] for hit in row["hits"][:depth]]) for row in rows]


def offline_ceiling(model: str, backend: str, requests, rounds: int = 3) -> float:
    """docs/s of ``score_batch`` over all requests at once: what the server can at best approach."""
    from crossrank import Reranker

    reranker = Reranker(model, device="cpu", **BACKENDS[backend])
    reranker.score_batch(requests[:4])  # warm-up
    docs = sum(len(texts) for _, texts in requests)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        reranker.score_batch(requests)
        times.append(time.perf_counter() - started)
    return docs / statistics.median(times)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, backend: str, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "crossrank", "serve", "--model", model, "--port", str(port)]
    command += [*flags(backend), "--batching" if batching else "--no-batching"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start: {process.stderr.read() if process.stderr else ''}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


async def drive(url: str, requests, clients: int, seconds: float) -> dict:
    """``clients`` loops, each sending one request after another, for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    docs = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one_client(offset: int) -> None:
            nonlocal errors, docs
            i = offset
            while time.perf_counter() < stop_at:
                query, texts = requests[i % len(requests)]
                i += clients
                started = time.perf_counter()
                try:
                    response = await client.post(f"{url}/rerank", json={"query": query, "texts": texts})
                    ok = response.status_code == 200 and len(response.json()) == len(texts)
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                    docs += len(texts)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile_ms(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "docs_per_s": docs / elapsed,
        "p50_ms": percentile_ms(0.50),
        "p99_ms": percentile_ms(0.99),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in sorted({(r["backend"], r["batching"]) for r in results}):
        rows = sorted(
            (r for r in results if (r["backend"], r["batching"]) == key), key=lambda r: r["clients"]
        )
        label = f"{key[0]}, batching {'on' if key[1] else 'off'}"
        style = {"color": COLORS.get(key[0], "black"), "linestyle": "-" if key[1] else "--"}
        style["marker"] = "o" if key[1] else "s"
        left.plot([r["clients"] for r in rows], [r["docs_per_s"] for r in rows], label=label, **style)
        right.plot([r["clients"] for r in rows], [r["p99_ms"] for r in rows], label=label, **style)
    for backend in sorted({r["backend"] for r in results}):
        ceiling = next(r["ceiling_docs_per_s"] for r in results if r["backend"] == backend)
        left.axhline(ceiling, linestyle=":", color="gray")
        left.annotate(f"{backend} score_batch ceiling", (1, ceiling), fontsize=8, va="bottom")
    left.set(xscale="log", xlabel="concurrent clients", ylabel="documents / s", title="throughput")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent clients",
        ylabel="p99 latency (ms)",
        title="p99 latency",
    )
    for axis in (left, right):
        axis.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        axis.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("crossrank serve, 20-document DL19 requests, 2-core CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=20.0, help="load per setting")
    parser.add_argument(
        "--no-batching-for", default=",".join(BACKENDS), help="backends also run with batching off"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="write the plot (PNG) here")
    args = parser.parse_args()

    requests = load_requests()
    clients = [int(c) for c in args.clients.split(",")]
    results = []
    for backend in args.backends.split(","):
        ceiling = offline_ceiling(args.model, backend, requests)
        console.print(f"[bold]{backend}[/]: score_batch ceiling {ceiling:.0f} docs/s")
        settings = [True] + ([False] if backend in args.no_batching_for.split(",") else [])
        for batching in settings:
            process, url = start_server(args.model, backend, batching)
            try:
                asyncio.run(drive(url, requests, 1, 2.0))  # warm-up
                for n in clients:
                    row = asyncio.run(drive(url, requests, n, args.seconds))
                    row.update(backend=backend, batching=batching, ceiling_docs_per_s=ceiling)
                    row["ratio_to_ceiling"] = row["docs_per_s"] / ceiling
                    results.append(row)
                    console.print(row)
            finally:
                stop_server(process)

    table = Table(title=f"crossrank serve: 20-document DL19 requests, {args.seconds:.0f} s per row")
    for column in (
        "backend",
        "batching",
        "clients",
        "docs/s",
        "of ceiling",
        "p50 ms",
        "p99 ms",
        "requests",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("backend", "batching") else "right")
    for r in results:
        table.add_row(
            r["backend"],
            "on" if r["batching"] else "off",
            str(r["clients"]),
            f"{r['docs_per_s']:.0f}",
            f"{r['ratio_to_ceiling']:.0%}",
            f"{r['p50_ms']:.0f}",
            f"{r['p99_ms']:.0f}",
            str(r["requests"]),
            str(r["errors"]),
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
