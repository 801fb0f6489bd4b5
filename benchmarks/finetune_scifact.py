"""Domain adaptation on SciFact: fine-tune the fixture with `crossrank.finetune`, measure before/after.

For each training-set size (default: all 809 SciFact train queries, then 100 and 300 for the learning
curve) a child process runs :func:`crossrank.finetune.finetune` on the fixture model
(``../shared/models/crossrank-fixture-minilm-l6``) with BM25 hard negatives, evaluates base and
fine-tuned on SciFact test (300 queries, BM25 top 20) and TREC DL 2019 (BM25 top 20) with
``crossrank.evaluation.evaluate`` (the code of ``crossrank eval``), and reports its wall time and peak
RSS. The largest model is also scored through ``Reranker(DIR, backend="onnx", quantize="int8")``.
The results go to ``benchmarks/results/finetune-scifact-*.json`` and the learning curve to
``docs/finetune_learning_curve.png``.

    python benchmarks/finetune_scifact.py --bf16                # ~100 min on 2 idle CPU cores
    python benchmarks/finetune_scifact.py --sizes 100 --no-plot # one point, ~19 min with --bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CROSSRANK_SHARED", HERE.parent.parent / "shared"))
FIXTURE = SHARED / "models" / "crossrank-fixture-minilm-l6"
SCIFACT = SHARED / "data" / "beir-scifact"
ALL = 0  # --sizes value meaning "every training query"


def one_run(args: argparse.Namespace) -> None:
    """Child: one fine-tuning run; prints its JSON result on the last stdout line."""
    from crossrank import Reranker
    from crossrank.evaluation import evaluate, load_dataset
    from crossrank.finetune import finetune

    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if time.monotonic() - last[0] > 30 or done == total:
            last[0] = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] {stage}: {done}/{total}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    result = finetune(
        args.dataset,
        args.model,
        args.output,
        also_evaluate=args.also_evaluate,
        data_dir=SHARED / "data",
        num_negatives=args.num_negatives,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        bf16=args.bf16,
        max_minutes=args.max_minutes,
        max_train_queries=args.size or None,
        evaluate_base=args.evaluate_base,
        seed=args.seed,
        overwrite=True,
        progress=progress,
    )
    record = result.to_dict()
    record["wall_seconds"] = time.perf_counter() - started
    if args.onnx_int8:
        test = load_dataset(args.dataset, depth=20)
        report = evaluate(
            test,
            {"fine-tuned onnx int8": Reranker(args.output, backend="onnx", quantize="int8")},
            depths=(20,),
        )
        record["onnx_int8"] = report.to_dict()
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["load_average_at_end"] = os.getloadavg()  # 1, 5, 15 min: was the machine shared?
    print(json.dumps(record))


def plot(points: list[dict], baselines: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: p["train_queries"])
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, label in (
        (axes[0], "train_queries", "SciFact training queries"),
        (axes[1], "train_minutes", "training minutes (2 CPU cores)"),
    ):
        xs = [p[key] for p in points]
        axis.plot(xs, [p["scifact"] for p in points], "o-", label="fine-tuned, SciFact test")
        axis.plot(xs, [p["dl19"] for p in points], "s--", label="fine-tuned, TREC DL 2019")
        for name, value, style in (
            ("BM25, SciFact", baselines["bm25_scifact"], ":"),
            ("base model, SciFact", baselines["base_scifact"], "-."),
            ("base model, DL19", baselines["base_dl19"], (0, (1, 3))),
        ):
            axis.axhline(value, color="grey", linestyle=style, linewidth=1)
            axis.annotate(name, (axis.get_xlim()[0], value), fontsize=7, color="grey", va="bottom")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("nDCG@10 (BM25 top 20 reranked)")
    axes[0].legend(fontsize=8, loc="center right")
    figure.suptitle("crossrank finetune: fixture MiniLM-L6 on SciFact")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=str(SCIFACT))
    parser.add_argument("--model", default=str(FIXTURE))
    parser.add_argument("--sizes", default="0,100,300", help="training queries per run; 0 = all")
    parser.add_argument("--also-evaluate", nargs="*", default=["trec-dl-2019"])
    from crossrank.finetune import FinetuneConfig

    # The training settings, with FinetuneConfig's defaults and help (the time budget is this benchmark's).
    for name, kind in (
        ("num_negatives", int),
        ("epochs", float),
        ("batch_size", int),
        ("learning_rate", float),
        ("max_length", int),
        ("seed", int),
    ):
        setting = FinetuneConfig.model_fields[name]
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=setting.default, help=setting.description)
    parser.add_argument("--bf16", action="store_true", help=FinetuneConfig.model_fields["bf16"].description)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--models-dir", default="/tmp/crossrank-finetune-models")
    parser.add_argument(
        "--results", default=str(HERE / "results" / f"finetune-scifact-{time.strftime('%Y-%m-%d')}-cpu2.json")
    )
    parser.add_argument("--plot", default=str(HERE.parent / "docs" / "finetune_learning_curve.png"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--plot-from", nargs="+", metavar="RESULTS", help="only draw the curve of earlier results files"
    )
    parser.add_argument(
        "--no-base", action="store_true", help="don't score the base model (in the first run)"
    )
    parser.add_argument("--no-int8", action="store_true", help="no ONNX int8 check (first run)")
    # child mode
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=ALL, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--evaluate-base", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-int8", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot_from:
        runs = [run for name in args.plot_from for run in json.loads(Path(name).read_text())["runs"]]
        summarize(runs)
        draw(runs, Path(args.plot))
        return
    if args.one:
        one_run(args)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    for index, size in enumerate(sizes):
        output = Path(args.models_dir) / f"scifact-{size or 'all'}"
        command = [
            sys.executable, __file__, "--one", "--size", str(size), "--output", str(output),
            "--dataset", args.dataset, "--model", args.model, "--num-negatives", str(args.num_negatives),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--learning-rate", str(args.learning_rate), "--max-length", str(args.max_length),
            "--max-minutes", str(args.max_minutes), "--seed", str(args.seed),
            "--also-evaluate", *args.also_evaluate,
        ] + (["--bf16"] if args.bf16 else [])  # fmt: skip
        if index == 0 and not args.no_base:
            command += ["--evaluate-base"]
        if index == 0 and not args.no_int8:
            command += ["--onnx-int8"]
        print(f"[{time.strftime('%H:%M:%S')}] run {index + 1}/{len(sizes)}: size {size or 'all'}", flush=True)
        started = time.perf_counter()
        finished = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, timeout=3 * 3600)
        record = json.loads(finished.stdout.strip().splitlines()[-1])
        record["process_seconds"] = time.perf_counter() - started
        runs.append(record)
        Path(args.results).write_text(json.dumps({"runs": runs, "machine": machine()}, indent=2) + "\n")
        summarize(runs)

    if not args.no_plot:
        draw(runs, Path(args.plot))


def draw(runs: list[dict], path: Path) -> None:
    """The learning curve of ``runs``; the base model's lines come from the run that scored it."""
    with_base = [r for r in runs if "base" in next(iter(r["evaluation"].values()))["metrics"]["20"]]
    if len(runs) < 2 or not with_base:
        print("learning curve: needs two runs and one that scored the base model (drop --no-base)")
        return
    base = with_base[0]["evaluation"]
    scifact_name = next(name for name in base if "trec" not in name)
    baselines = {
        "bm25_scifact": base[scifact_name]["metrics"]["20"]["stage 1"]["nDCG@10"],
        "base_scifact": base[scifact_name]["metrics"]["20"]["base"]["nDCG@10"],
        "base_dl19": base["trec-dl-2019"]["metrics"]["20"]["base"]["nDCG@10"],
    }
    points = [
        {
            "train_queries": r["train_queries"],
            "train_minutes": r["train_seconds"] / 60,
            "scifact": r["evaluation"][scifact_name]["metrics"]["20"]["fine-tuned"]["nDCG@10"],
            "dl19": r["evaluation"]["trec-dl-2019"]["metrics"]["20"]["fine-tuned"]["nDCG@10"],
        }
        for r in runs
    ]
    plot(points, baselines, path)
    print(f"learning curve: {path}")


def machine() -> dict:
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_at_end": os.getloadavg(),
    }


def summarize(runs: list[dict]) -> None:
    for r in runs:
        cells = [
            f"queries {r['train_queries']}",
            f"steps {r['steps']}",
            f"train {r['train_seconds'] / 60:.1f} min",
        ]
        for name, report in r["evaluation"].items():
            for system, values in report["metrics"]["20"].items():
                cells.append(f"{name}/{system} {values['nDCG@10']:.4f}")
        if "onnx_int8" in r:
            cells.append(f"int8 {r['onnx_int8']['metrics']['20']['fine-tuned onnx int8']['nDCG@10']:.4f}")
        cells.append(f"wall {r['wall_seconds'] / 60:.1f} min, peak RSS {r['peak_rss_mib']:.0f} MiB")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
