"""An exact cut: a fast engine ranks, fp32 rescores only the chunks whose place in the top 3 is in doubt.

int8 and bf16 move each logit by a little (median 0.02-0.3) and the top-3 set by a lot, because
the third and fourth chunks are often close (9 of DL19's 43 queries within 0.05 logits). If each
fast logit is within ``eps`` of fp32's, most chunks' fate is certain from the fast scores alone:

* **surely in**: fewer than ``k`` other chunks could score above it (``fast_j + eps > fast_i - eps``);
* **surely out**: at least ``k`` other chunks surely score above it (``fast_j - eps > fast_i + eps``);
* **in doubt**: the rest, rescored in fp32.

Replacing the in-doubt logits by fp32's gives the same top-``k`` set as fp32 whenever every fast
logit is within ``eps`` (:func:`exact_cut`'s example; ``tests/unit/test_exact_cut_benchmark.py``
checks it on random scores). ``eps`` is calibrated on DL20 (quantiles of ``|fast - fp32|`` over
every pair), then the cut is measured on DL19: top-3 set = fp32's, fp32 pairs rescored per query,
and the time of the fast engine on 20 plus fp32 on the in-doubt chunks, measured in the same run
as each engine alone and as the fixed cascade (fp32 rescores the fast engine's top ``k``).

Fast engines: crossrank's ONNX int8 (dynamic), and torch with bf16 weights (``--bf16``): on a CPU
without native bf16 (``crossrank.cpus.native_bf16``) bf16 is emulated, so its fidelity and
rescore counts hold but its times don't (they are printed as not native). fp32 is ONNX fp32
(torch fp32 within 2e-5).

    python benchmarks/exact_cut.py --bf16 --json benchmarks/results/exact-cut.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from crossrank import Reranker
from crossrank.cpus import cpu_summary, native_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import read_queries, top

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 160)
Queries = dict[str, tuple[str, list[str]]]
#: Quantiles of the calibration set's |fast - fp32| tried as eps (1.0 = its largest error).
EPS_QUANTILES = (0.99, 0.999, 1.0)


def exact_cut(fast: Sequence[float], k: int, eps: float) -> tuple[list[int], list[int]]:
    """The chunks surely in the top ``k`` and those in doubt, if each score is within ``eps``.

    Cost: O(n log n) for n chunks. What remains (neither list) is surely out.

    Example:
        >>> exact_cut([5.0, 4.9, 3.0, 2.95, 0.0], k=3, eps=0.1)  # 3.0 vs 2.95: only fp32 can say
        ([0, 1], [2, 3])
        >>> exact_cut([5.0, 4.0, 3.0, 2.0], k=3, eps=0.1)
        ([0, 1, 2], [])
    """
    scores = np.asarray(fast, dtype=np.float64)
    lower, upper = scores - eps, scores + eps
    uppers = np.sort(upper)
    lowers = np.sort(lower)
    # Others that could score above i (upper_j > lower_i; i itself counts there when eps > 0), and
    # others that surely do (lower_j > upper_i; never i itself).
    could = len(scores) - np.searchsorted(uppers, lower, side="right") - (upper > lower)
    surely = len(scores) - np.searchsorted(lowers, upper, side="right")
    sure_in = [i for i in range(len(scores)) if could[i] < k]
    doubt = [i for i in range(len(scores)) if could[i] >= k and surely[i] < k]
    return sure_in, doubt


def timed(call, *args) -> float:
    """Milliseconds one call takes."""
    started = time.perf_counter()
    call(*args)
    return (time.perf_counter() - started) * 1000


def add_times(
    rows: dict, plans: dict, engine: Reranker, exact: Reranker, test: Queries, rounds: int, name: str
) -> None:
    """Adds each row's ms per query (and its x fp32), measured interleaved per query in one run.

    A cut's time is the fast engine's median on the query's 20 chunks plus the mean time fp32
    takes on the chunks that cut sends it (0 where there are none).
    """
    times: dict[str, list[float]] = {label: [] for label in ("fast", "fp32", *plans)}
    for _ in track(range(rounds), f"{name} (timing)", console=console):
        for q, (query, texts) in test.items():
            times["fast"].append(timed(engine.score, query, texts))
            times["fp32"].append(timed(exact.score, query, texts))
            for label, plan in plans.items():
                chunks = [texts[i] for i in plan[q]]
                times[label].append(timed(exact.score, query, chunks) if chunks else 0.0)
    fast_ms, fp32_ms = statistics.median(times["fast"]), statistics.median(times["fp32"])
    for label, row in rows.items():
        row["ms"] = (
            fp32_ms if label.startswith("fp32") else fast_ms + statistics.mean(times.get(label, [0.0]))
        )
        row["x_fp32"] = fp32_ms / row["ms"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "trec-dl-2019-passage")
    parser.add_argument("--calibration", type=Path, default=SHARED / "data" / "trec-dl-2020-passage")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--k", type=int, default=3, help="the top k that reaches the LLM")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the test queries")
    parser.add_argument("--bf16", action="store_true", help="also torch bf16 weights (slow where emulated)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    test, calibration = read_queries(args.data, args.depth), read_queries(args.calibration, args.depth)

    exact = Reranker(args.model, backend="onnx", device="cpu")
    fast_engines = {"onnx int8": Reranker(args.model, backend="onnx", quantize="int8", device="cpu")}
    if args.bf16:
        fast_engines["torch bf16 weights"] = Reranker(
            args.model, backend="torch", precision="bf16", device="cpu"
        )

    def score_all(engine: Reranker, queries: Queries, label: str) -> dict[str, list[float]]:
        return {
            q: engine.score(query, texts)
            for q, (query, texts) in track(queries.items(), label, console=console)
        }

    reference = {
        "test": score_all(exact, test, "fp32 (test)"),
        "calibration": score_all(exact, calibration, "fp32 (calibration)"),
    }
    figures: dict[str, dict] = {}
    for name, engine in fast_engines.items():
        timing_is_native = name != "torch bf16 weights" or native_bf16()
        fast_cal = score_all(engine, calibration, f"{name} (calibration)")
        errors = np.concatenate(
            [np.abs(np.subtract(fast_cal[q], reference["calibration"][q])) for q in calibration]
        )
        fast = score_all(engine, test, f"{name} (test)")
        test_errors = np.concatenate([np.abs(np.subtract(fast[q], reference["test"][q])) for q in test])
        ref = reference["test"]
        rows: dict[str, dict] = {
            name: {
                "top3_same": sum(set(top(fast[q], args.k)) == set(top(ref[q], args.k)) for q in test),
                "rescored": 0.0,
                "max_abs": float(test_errors.max()),
            },
        }
        plans: dict[str, dict[str, list[int]]] = {}  # row -> query -> chunks fp32 rescores
        for quantile in EPS_QUANTILES:
            eps = float(np.quantile(errors, quantile))
            which = "max" if quantile == 1.0 else f"p{quantile * 100:g}"
            label = f"{name} + exact cut, eps = calibration {which} ({eps:.3f})"
            plans[label] = {}
            same = 0
            for q in test:
                sure_in, doubt = exact_cut(fast[q], args.k, eps)
                plans[label][q] = doubt
                chosen = sure_in + sorted(doubt, key=lambda i, q=q: (-ref[q][i], i))[: args.k - len(sure_in)]
                same += set(chosen) == set(top(ref[q], args.k))
            counts = [len(plan) for plan in plans[label].values()]
            rows[label] = {
                "eps": eps,
                "eps_quantile": quantile,
                "top3_same": same,
                "rescored": float(np.mean(counts)),
                "rescored_max": max(counts),
                "no_rescore_queries": sum(c == 0 for c in counts),
            }
        for k in (args.k + 2, args.k + 3):
            label = f"{name} + fp32 on its top {k} (cascade)"
            plans[label] = {q: top(fast[q], k) for q in test}
            rows[label] = {
                "top3_same": sum(
                    set(sorted(plans[label][q], key=lambda i, q=q: (-ref[q][i], i))[: args.k])
                    == set(top(ref[q], args.k))
                    for q in test
                ),
                "rescored": float(k),
            }
        rows[f"fp32 ({name} run)"] = {"top3_same": len(test), "rescored": float(args.depth)}
        if timing_is_native:
            add_times(rows, plans, engine, exact, test, args.rounds, name)
        else:
            console.print(f"[yellow]{name}: no native bf16 on this CPU, so emulated: not timed")
        figures.update(rows)

    table = Table(
        title=f"Exact cut on {args.data.name} BM25 top {args.depth} ({len(test)} queries; eps from "
        f"{args.calibration.name}), {cpu_summary()}",
        title_justify="left",
    )
    for column in ("engine", f"top-{args.k} = fp32", "fp32 pairs / query", "ms / query", "x fp32"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for label, row in figures.items():
        timed_here = "ms" in row
        table.add_row(
            label,
            f"{row['top3_same']}/{len(test)}",
            f"{row['rescored']:.2f}",
            f"{row['ms']:.1f}" if timed_here else "not timed",
            f"{row['x_fp32']:.2f}" if timed_here else "",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "cpu": cpu_summary(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "figures": figures,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
