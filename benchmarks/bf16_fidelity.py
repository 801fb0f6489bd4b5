"""Which parts of the model in bf16 keep fp32's top 3: the residual stream's precision matters most.

bf16 keeps fp32's range but only 8 bits of mantissa, so where the rounding happens decides how far
the logits move. Each variant runs the fixture in torch on DL19's BM25 top 20 (one padded batch of
20 per query) against ONNX fp32 (= torch fp32 within 2e-5):

* **everything bf16**: weights, embeddings, LayerNorm and the residual stream (what
  ``model.to(torch.bfloat16)`` and sentence-transformers' ``model_kwargs={"torch_dtype":
  torch.bfloat16}`` do, and crossrank's torch ``precision="bf16"`` today);
* **bf16 linear layers, fp32 stream**: each ``nn.Linear`` has bf16 weights and takes its input
  rounded to bf16; its output, the residual adds, LayerNorm, softmax and GELU stay fp32;
* the same with the classifier head (pooler and classifier) in fp32;
* **autocast**: ``torch.autocast("cpu", dtype=torch.bfloat16)`` over fp32 weights (linear layers
  and attention's matrix products in bf16, the rest fp32).

bf16 arithmetic gives the same numbers with or without native bf16 (products of bf16 values are
exact in fp32; accumulation order aside), so the fidelity holds on any CPU; the time printed is
this CPU's and means nothing where bf16 is emulated (``crossrank.cpus.native_bf16``).

    python benchmarks/bf16_fidelity.py --json benchmarks/results/bf16-fidelity.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from crossrank import Reranker
from crossrank.cpus import cpu_summary, native_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import agreement, padded_batches, read_queries, top

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 150)
VARIANTS = {
    "everything bf16 (weights, LayerNorm, residual stream)": "all",
    "bf16 linear layers, fp32 residual stream and LayerNorm": "linear",
    "bf16 encoder linear layers, fp32 stream and head": "encoder-linear",
    "bf16 autocast over fp32 weights": "autocast",
}


def bf16_linear(module: torch.nn.Linear) -> None:
    """bf16 weights, input rounded to bf16, output back to fp32: the stream around it stays fp32."""
    module.weight.data = module.weight.data.to(torch.bfloat16)
    if module.bias is not None:
        module.bias.data = module.bias.data.to(torch.bfloat16)
    module.register_forward_pre_hook(lambda _module, inputs: (inputs[0].to(torch.bfloat16),))
    module.register_forward_hook(lambda _module, _inputs, output: output.float())


def prepare(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    if variant == "all":
        return model.to(torch.bfloat16)
    for name, module in model.named_modules():
        in_scope = variant == "linear" or (
            variant == "encoder-linear" and name.split(".")[1:2] == ["encoder"]
        )
        if isinstance(module, torch.nn.Linear) and in_scope:
            bf16_linear(module)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "trec-dl-2019-passage")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    queries = read_queries(args.data)
    batches = padded_batches(AutoTokenizer.from_pretrained(args.model), queries)
    fp32 = Reranker(args.model, backend="onnx", device="cpu")
    reference = {qid: fp32.score(q, t) for qid, (q, t) in queries.items()}
    figures: dict[str, dict] = {}
    for label, variant in VARIANTS.items():
        model = prepare(AutoModelForSequenceClassification.from_pretrained(args.model).eval(), variant)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if variant == "autocast" else contextlib.nullcontext()
        )
        started = time.perf_counter()
        with autocast:
            scores = {qid: model(**batch).logits[:, 0].float().tolist() for qid, batch in batches.items()}
        seconds = time.perf_counter() - started
        figures[label] = {
            **agreement(scores, reference),
            "top1_same": sum(top(scores[q], 1) == top(reference[q], 1) for q in queries),
            "ms_per_query": seconds * 1000 / len(queries),
        }
        console.print(label, figures[label])

    native = native_bf16()
    table = Table(
        title=f"bf16: what reaches the LLM, {args.data.name} BM25 top 20 ({len(queries)} queries), "
        f"{cpu_summary()}",
        title_justify="left",
    )
    for column in (
        "what runs in bf16",
        "top-3 = fp32",
        "top-1 = fp32",
        "max |Δlogit|",
        "median |Δlogit|",
        "ms / query",
    ):
        table.add_column(column, justify="left" if column == "what runs in bf16" else "right")
    for label, f in figures.items():
        table.add_row(
            label,
            f"{f['top3_same']}/{len(queries)}",
            f"{f['top1_same']}/{len(queries)}",
            f"{f['max_abs']:.3f}",
            f"{f['median_abs']:.4f}",
            f"{f['ms_per_query']:.0f}" + ("" if native else " (emulated)"),
        )
    console.print(table)
    if args.json_out:
        report = {"cpu": cpu_summary(), "native_bf16": native, "figures": figures}
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
