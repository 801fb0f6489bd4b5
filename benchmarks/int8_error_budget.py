"""Where int8's ranking error comes from, and what it would take to send the LLM fp32's top 3.

ONNX Runtime's dynamic int8 changes the top-3 set of 17 of DL19's 43 queries (BM25 top 20, the
fixture MiniLM-L6). This script splits that error by simulating each quantisation step in torch
("fake quantisation": round to the int8 grid, compute in fp32) on every ``nn.Linear`` of the
encoder, so each step's effect is measured alone, without a kernel that implements it:

* weights: 8-bit or 7-bit (levels -63..63; ORT's ``reduce_range`` has -64..64, which
  ``fake_weights(..., reduce_range=True)`` rounds to) symmetric, one scale per output channel;
  ``--gptq`` also tries GPTQ's error-compensating rounding (calibrated on DL20, not the test set);
* activations: one scale for the whole batch (what ORT's ``DynamicQuantizeLinear`` does), or one
  scale and zero point per token (asymmetric or symmetric), or one for the batch with the
  ``[CLS]`` rows left in fp32: a table shows which token holds each layer's largest input value
  (the value that sets the batch's grid), and by how much;
* SmoothQuant (``--smoothquant``): each input channel j of a layer divided by
  ``s_j = max|x_j|^alpha / max|W_j|^(1-alpha)`` and its weight row multiplied by it (the same
  product in exact arithmetic), with ``max|x_j|`` from DL20 (not the test set): it moves channel
  outliers from the activations into the weights before both are rounded;

then, from crossrank's real int8 scores, a **cascade**: int8 scores all 20, fp32 rescores the
int8 top k (or those within a margin of int8's third score), fp32's order picks the 3.

Each row: top-3 set = fp32's (of 43), largest and median |logit - fp32|.

    python benchmarks/int8_error_budget.py --smoothquant --json benchmarks/results/int8-error-budget.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from crossrank import Reranker
from crossrank.cpus import cpu_summary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import agreement, padded_batches, read_queries, top

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 150)


#: The activation roundings tried after SmoothQuant: (label, fake_activations mode).
SMOOTHQUANT_ACTIVATIONS = (
    ("per batch", "tensor"),
    ("per token, asym", "token"),
    ("per token, sym", "token-sym"),
)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass (the same values as ``torch.round``), identity in the backward
    pass (straight-through), so a simulation can also be trained through (``int8_qat.py``)."""
    return x + (torch.round(x) - x).detach()


def fake_weights(
    weight: torch.Tensor, bits: int, *, reduce_range: bool = False, per_channel: bool = True
) -> torch.Tensor:
    """Symmetric rounding of an ``nn.Linear`` weight (``[out, in]``) to ``bits`` bits, one scale per
    output channel (or one for the tensor). ``reduce_range``: ONNX Runtime's 8-bit weights with
    ``reduce_range=True`` (levels -64..64, scale max|w| / 64), what crossrank's int8 file holds."""
    top = 64 if reduce_range else 2 ** (bits - 1) - 1
    absmax = weight.detach().abs()
    absmax = absmax.amax(dim=1, keepdim=True) if per_channel else absmax.amax()
    scale = absmax.clamp(min=1e-12) / top
    return round_ste(weight / scale).clamp(-top, top) * scale


def fake_activations(x: torch.Tensor, mode: str) -> torch.Tensor:
    """8-bit rounding of a layer's input: one grid per batch (``tensor``: ONNX Runtime's
    ``DynamicQuantizeLinear``, uint8 with a zero point), per token, or per batch without the
    ``[CLS]`` rows."""
    if mode == "none":
        return x
    if mode == "tensor-cls":  # the [CLS] rows as they are, every other token on one grid
        return torch.cat([x[:, :1], fake_activations(x[:, 1:], "tensor")], dim=1)
    if mode == "token-sym":
        scale = x.detach().abs().amax(-1, keepdim=True) / 127
        return round_ste(x / scale) * scale
    axis = None if mode == "tensor" else -1
    held = x.detach()
    low = (held.amin() if axis is None else held.amin(axis, keepdim=True)).clamp(max=0)
    high = (held.amax() if axis is None else held.amax(axis, keepdim=True)).clamp(min=0)
    scale = (high - low).clamp(min=1e-12) / 255
    zero = torch.round(-low / scale)
    return (torch.clamp(round_ste(x / scale) + zero, 0, 255) - zero) * scale


def outlier_tokens(
    model, tokenizer, calibration: list[tuple[str, list[str]]], batch: int = 4
) -> dict[str, dict]:
    """For each encoder ``nn.Linear``: which token holds its input's largest |value| in each batch
    of ``batch`` pairs (the value that sets ONNX Runtime's per-batch grid), and how much larger
    it is than the median real token's largest |value|."""
    found: dict[str, dict] = {}
    state: dict[str, torch.Tensor] = {}

    def see(name: str, x: torch.Tensor) -> None:
        peaks = x.abs().amax(-1)  # [pairs, tokens]
        at = divmod(int(peaks.argmax()), peaks.shape[1])
        token = tokenizer.convert_ids_to_tokens(int(state["ids"][at]))
        entry = found.setdefault(name, {"batches": 0, "by": {}, "ratios": []})
        entry["batches"] += 1
        entry["by"][token] = entry["by"].get(token, 0) + 1
        entry["ratios"].append(float(peaks.max() / peaks[state["mask"]].median()))

    hooks = [
        module.register_forward_pre_hook(lambda _m, inputs, name=name: see(name, inputs[0]))
        for name, module in encoder_linears(model).items()
    ]
    for query, texts in calibration:
        for start in range(0, len(texts), batch):
            encoded = tokenizer(
                [query] * len(texts[start : start + batch]),
                texts[start : start + batch],
                truncation=True,
                max_length=512,
                padding=True,
                return_tensors="pt",
            )
            state.update(ids=encoded["input_ids"], mask=encoded["attention_mask"].bool())
            model(**encoded)
    for hook in hooks:
        hook.remove()
    return {
        name: {
            "top_token": max(entry["by"], key=entry["by"].get),
            "top_token_share": max(entry["by"].values()) / entry["batches"],
            "median_ratio": float(np.median(entry["ratios"])),
        }
        for name, entry in found.items()
    }


def encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """Every ``nn.Linear`` of the encoder (what the simulations round), by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "encoder" in n}


def each_input(model, tokenizer, calibration: list[tuple[str, list[str]]], see) -> None:
    """Run ``calibration`` through ``model`` and call ``see(name, rows)`` with the real (unpadded)
    token rows entering each encoder ``nn.Linear``; the inputs themselves are left as they are."""
    mask: list[torch.Tensor] = []
    hooks = [
        module.register_forward_pre_hook(lambda _m, inputs, name=name: see(name, inputs[0][mask[0]]))
        for name, module in encoder_linears(model).items()
    ]
    for query, texts in calibration:
        batch = tokenizer([query] * len(texts), texts, truncation=True, padding=True, return_tensors="pt")
        mask[:] = [batch["attention_mask"].bool()]
        model(**batch)
    for hook in hooks:
        hook.remove()


def gptq(model, tokenizer, calibration: list[tuple[str, list[str]]], bits: int) -> None:
    """GPTQ rounding of every encoder ``nn.Linear`` (per-channel scales), from fp32 inputs."""
    linears = encoder_linears(model)
    hessians = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for n, m in linears.items()}

    def accumulate(name: str, rows: torch.Tensor) -> None:
        rows = rows.double()
        hessians[name].add_(rows.T @ rows)

    each_input(model, tokenizer, calibration, accumulate)
    top = 2 ** (bits - 1) - 1
    for name, module in linears.items():
        weight, hessian = module.weight.data.double().clone(), hessians[name]
        scale = weight.abs().amax(1) / top
        hessian += 0.01 * hessian.diag().mean() * torch.eye(len(hessian), dtype=hessian.dtype)
        inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
        for i in range(weight.shape[1]):
            q = torch.round(weight[:, i] / scale).clamp(-top, top) * scale
            error = (weight[:, i] - q) / inverse[i, i]
            weight[:, i] = q
            weight[:, i + 1 :] -= error[:, None] * inverse[i, i + 1 :][None, :]
        module.weight.data = weight.float()


def input_ranges(model, tokenizer, calibration: list[tuple[str, list[str]]]) -> dict[str, torch.Tensor]:
    """Largest |input| per input channel of every encoder ``nn.Linear``, over real (unpadded) tokens."""
    ranges = {n: torch.zeros(m.in_features) for n, m in encoder_linears(model).items()}

    def widen(name: str, rows: torch.Tensor) -> None:
        ranges[name] = torch.maximum(ranges[name], rows.abs().amax(0))

    each_input(model, tokenizer, calibration, widen)
    return ranges


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--calibration", default=str(SHARED / "data" / "trec-dl-2020-passage"))
    parser.add_argument("--gptq", action="store_true", help="also GPTQ weights (5 minutes on 2 cores)")
    parser.add_argument("--smoothquant", action="store_true", help="also SmoothQuant (alpha 0.5 and 0.65)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    queries = read_queries(Path(args.data))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    batches = padded_batches(tokenizer, queries)
    fp32_engine = Reranker(args.model, backend="onnx", device="cpu")  # = torch fp32 within 2e-5
    reference = {qid: fp32_engine.score(q, t) for qid, (q, t) in queries.items()}
    figures: dict[str, dict] = {}

    def record(name: str, scores: dict[str, list[float]], **extra) -> None:
        figures[name] = {**agreement(scores, reference), **extra}
        console.print(name, figures[name])

    calibration_rows = [json.loads(line) for line in (Path(args.calibration) / "bm25_top100.jsonl").open()]
    calibration = [(r["query"], [h["text"] for h in r["hits"][:20]]) for r in calibration_rows[:40]]
    ranges: dict[str, torch.Tensor] = {}

    def simulate(
        name: str,
        weight_bits: int | None,
        activations: str,
        use_gptq: bool = False,
        alpha: float | None = None,
    ) -> None:
        model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
        if use_gptq:
            gptq(model, tokenizer, calibration, 8)
        if alpha is not None and not ranges:
            ranges.update(input_ranges(model, tokenizer, calibration))
        for module_name, module in encoder_linears(model).items():
            smooth = torch.ones(module.in_features)
            if alpha is not None:
                weight_range = module.weight.data.abs().amax(0).clamp(min=1e-5)
                smooth = ranges[module_name].clamp(min=1e-5) ** alpha / weight_range ** (1 - alpha)
                module.weight.data = module.weight.data * smooth[None, :]
            if weight_bits and not use_gptq:
                module.weight.data = fake_weights(module.weight.data, weight_bits)
            module.register_forward_pre_hook(
                lambda _m, inp, smooth=smooth: (fake_activations(inp[0] / smooth, activations),)
            )
        record(name, {qid: model(**batch).logits[:, 0].tolist() for qid, batch in batches.items()})

    simulate("weights 8-bit per channel, activations fp32", 8, "none")
    simulate("weights 7-bit per channel (reduce_range), activations fp32", 7, "none")
    simulate("activations 8-bit per batch (ORT dynamic), weights fp32", None, "tensor")
    simulate("activations 8-bit per token, symmetric, weights fp32", None, "token-sym")
    simulate("activations 8-bit per token, asymmetric, weights fp32", None, "token")
    simulate("weights 8-bit + activations per batch", 8, "tensor")
    simulate("weights 8-bit + activations per token, asymmetric", 8, "token")
    simulate("weights 8-bit + activations per token, symmetric", 8, "token-sym")
    simulate("activations per batch, [CLS] rows apart (fp32), weights fp32", None, "tensor-cls")
    simulate("weights 8-bit + activations per batch, [CLS] rows apart (fp32)", 8, "tensor-cls")
    simulate("weights 7-bit + activations per batch, [CLS] rows apart (fp32)", 7, "tensor-cls")
    if args.smoothquant:
        for alpha in (0.5, 0.65):
            for label, mode in SMOOTHQUANT_ACTIVATIONS:
                simulate(f"SmoothQuant {alpha}, weights 8-bit + activations {label}", 8, mode, alpha=alpha)
    if args.gptq:
        simulate("GPTQ weights 8-bit, activations fp32", 8, "none", use_gptq=True)
        simulate("GPTQ weights 8-bit + activations per token", 8, "token", use_gptq=True)

    outliers = outlier_tokens(
        AutoModelForSequenceClassification.from_pretrained(args.model).eval(), tokenizer, calibration[:10]
    )
    table = Table(
        title="which token sets each layer's int8 grid (DL20, batches of 4 pairs)", title_justify="left"
    )
    for column in ("input of", "token with the largest |value|", "in batches", "x median token's"):
        table.add_column(column, justify="left" if column == "input of" else "right")
    for name, entry in outliers.items():
        table.add_row(
            name.removeprefix("bert.encoder."),
            entry["top_token"],
            f"{entry['top_token_share']:.0%}",
            f"{entry['median_ratio']:.1f}",
        )
    console.print(table)

    int8_engine = Reranker(args.model, backend="onnx", quantize="int8", device="cpu")
    int8 = {qid: int8_engine.score(q, t) for qid, (q, t) in queries.items()}
    record("crossrank int8 (ORT dynamic, 7-bit weights)", int8)
    per_doc_ms = {}
    for label, engine in (("fp32", fp32_engine), ("int8", int8_engine)):
        started = time.perf_counter()
        for q, t in queries.values():
            engine.score(q, t)
        per_doc_ms[label] = (time.perf_counter() - started) * 1000 / (20 * len(queries))
    for k in (4, 5, 6, 7):
        same = 0
        for qid in queries:
            shortlist = np.argsort(-np.asarray(int8[qid]), kind="stable")[:k]
            chosen = shortlist[np.argsort(-np.asarray(reference[qid])[shortlist], kind="stable")[:3]]
            same += set(chosen.tolist()) == set(top(reference[qid], 3))
        cost = 20 * per_doc_ms["int8"] + k * per_doc_ms["fp32"]
        figures[f"cascade: int8 on 20, fp32 on int8's top {k}"] = {
            "top3_same": same,
            "estimated_ms": cost,
            "int8_ms": 20 * per_doc_ms["int8"],
            "fp32_ms": 20 * per_doc_ms["fp32"],
        }
        console.print(k, figures[f"cascade: int8 on 20, fp32 on int8's top {k}"])

    table = Table(title=f"int8's error budget, DL19 BM25 top 20, {cpu_summary()}", title_justify="left")
    for column in ("what is quantised", "top-3 = fp32", "max |Δlogit|", "median |Δlogit|", "ms / query"):
        table.add_column(column, justify="left" if column == "what is quantised" else "right")
    for name, f in figures.items():
        table.add_row(
            name,
            f"{f['top3_same']}/{len(queries)}",
            f"{f['max_abs']:.3f}" if "max_abs" in f else "",
            f"{f['median_abs']:.3f}" if "median_abs" in f else "",
            f"{f['estimated_ms']:.0f} (int8 {f['int8_ms']:.0f}, fp32 {f['fp32_ms']:.0f})"
            if "estimated_ms" in f
            else "",
        )
    console.print(table)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"cpu": cpu_summary(), "figures": figures, "outliers": outliers}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
