"""Real-size LLM and multilingual rerankers on this CPU: Qwen3-Reranker-0.6B's and bge-reranker-v2-m3's
architectures next to MiniLM-L6, on 20 DL19 BM25 chunks per query.

Speed doesn't depend on the weights' values, so the two large models are built at full size from
their configurations with random weights (no hub here): Qwen3ForCausalLM as Qwen3-0.6B (28 layers,
hidden 1024, 16/8 heads, vocab 151,936, tied embeddings) and XLMRobertaForSequenceClassification as
bge-reranker-v2-m3 (24 layers, hidden 1024, vocab 250,002). Their tokenizers are trained here on the
DL19 passages (byte-level BPE of Qwen's kind, SentencePiece-style Unigram for XLM-R; 32,000
entries), so chunks take about as many tokens as with the real ones; the table says how many.

Systems per model: sentence-transformers ``CrossEncoder`` (torch fp32; for the causal LM its
``LogitScore`` head, given the same prompt text), crossrank torch fp32, ONNX fp32 and int8. Then,
for the Qwen3 architecture: the folded yes-no row against the full vocabulary head, and the cost of
one chunk at 256 / 512 / 1024 / 2048 tokens (what a long default ``max_length`` would cost).

    python benchmarks/llm_rerankers.py --queries 3 --json benchmarks/results/llm-rerankers.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from crossrank import Reranker
from crossrank.cpus import cpu_summary, usable_cpus
from crossrank.families_testing import QWEN2_SPLIT_PATTERN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from system_worker import peak_rss_mb  # the one definition (VmHWM)

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
console = Console(width=None if sys.stdout.isatty() else 160)


def corpus_texts(data: Path) -> list[str]:
    rows = [json.loads(line) for line in (data / "bm25_top100.jsonl").read_text().splitlines()]
    return [row["query"] for row in rows] + [hit["text"] for row in rows for hit in row["hits"]]


def _save_tokenizer(folder: Path, tokenizer, settings: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))


def build_qwen3(folder: Path, texts: list[str]) -> Path:
    """Qwen3-Reranker-0.6B's architecture, random weights, a Qwen-kind tokenizer trained on ``texts``."""
    if (folder / "config.json").is_file():
        return folder
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=32000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator([*texts, "yes no 1 0 " * 50], trainer)
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
        ]
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    _save_tokenizer(
        folder,
        tokenizer,
        {
            "tokenizer_class": "Qwen2Tokenizer",
            "pad_token": "<|endoftext|>",
            "eos_token": "<|im_end|>",
            "model_max_length": 40960,
        },
    )
    config = Qwen3Config(
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        rope_theta=1_000_000,
        tie_word_embeddings=True,
        architectures=["Qwen3ForCausalLM"],
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    return folder


def build_bge_m3(folder: Path, texts: list[str]) -> Path:
    """bge-reranker-v2-m3's architecture, random weights, a Unigram tokenizer trained on ``texts``."""
    if (folder / "config.json").is_file():
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=32000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    _save_tokenizer(
        folder,
        tokenizer,
        {
            "tokenizer_class": "XLMRobertaTokenizer",
            "pad_token": "<pad>",
            "model_max_length": 8192,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "unk_token": "<unk>",
        },
    )
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        max_position_embeddings=8194,
        type_vocab_size=1,
        num_labels=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    torch.manual_seed(0)
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


def time_calls(score, queries: list[tuple[str, list[str]]]) -> list[float]:
    score(queries[0][0], queries[0][1][:4])  # a first, short call: kernels picked, memory allocated
    times = []
    for query, texts in queries:
        started = time.perf_counter()
        score(query, texts)
        times.append((time.perf_counter() - started) * 1000)
    return times


def st_scorer(folder: Path, reranker: Reranker):
    """sentence-transformers' CrossEncoder on the same inputs: for an LLM reranker, the prompt's
    query part and document part (with the fixed pieces) as the pair's two texts."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(folder), device="cpu", activation_fn=torch.nn.Identity())
    prompt = reranker.engine.prompt if hasattr(reranker.engine, "prompt") else None
    if prompt is None:
        return lambda query, texts: model.predict([(query, t) for t in texts], batch_size=32)
    prefix, suffix = "".join(prompt.prefix), "".join((*prompt.between, "{}", *prompt.suffix))

    def score(query: str, texts: list[str]):
        head = prefix + prompt.query_text(query)
        return model.predict([(head, suffix.format(prompt.document_text(t))) for t in texts], batch_size=32)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019-passage"))
    parser.add_argument("--fixture", default=str(SHARED / "models" / "crossrank-fixture-minilm-l6"))
    parser.add_argument(
        "--queries", type=int, default=3, help="DL19 queries timed per system (20 chunks each)"
    )
    parser.add_argument("--models", default="minilm,qwen3,bge-m3")
    parser.add_argument("--systems", default="st,torch,onnx,int8")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "crossrank" / "bench" / "realsize"))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    data = Path(args.data)
    rows = [json.loads(line) for line in (data / "bm25_top100.jsonl").read_text().splitlines()]
    queries = [(row["query"], [hit["text"] for hit in row["hits"][:20]]) for row in rows[: args.queries + 1]]
    texts = corpus_texts(data)
    work = Path(args.work)
    with console.status("building the real-size models (random weights) and their tokenizers"):
        folders = {
            "minilm": Path(args.fixture),
            "qwen3": build_qwen3(work / "Qwen3-Reranker-0.6B-arch", texts)
            if "qwen3" in args.models
            else None,
            "bge-m3": build_bge_m3(work / "bge-reranker-v2-m3-arch", texts)
            if "bge-m3" in args.models
            else None,
        }
    figures: dict[str, dict] = {}
    for name in args.models.split(","):
        folder = folders[name]
        for system in args.systems.split(","):
            options = {
                "torch": {"backend": "torch"},
                "st": {"backend": "torch"},
                "onnx": {"backend": "onnx"},
                "int8": {"backend": "onnx", "quantize": "int8"},
            }[system]
            key = f"{name} {system}"
            console.print(f"[bold]{key}[/]")
            try:
                started = time.perf_counter()
                reranker = Reranker(folder, device="cpu", **options)
                load_s = time.perf_counter() - started
                score = st_scorer(folder, reranker) if system == "st" else reranker.score
                tokens = [len(e) for e in reranker.encoder.encode(*queries[1]).first]
                times = time_calls(score, queries[1:])
                figures[key] = {
                    "ms_per_query": statistics.median(times),
                    "docs_per_s": 20 * len(times) / (sum(times) / 1000),
                    "tokens_per_pair": statistics.mean(tokens),
                    "load_s": load_s,
                }
            except Exception as err:  # a system that can't run this model: say why in the table
                figures[key] = {"error": f"{type(err).__name__}: {str(err)[:160]}"}
            finally:
                reranker = score = None
                gc.collect()
            console.print(figures[key])

    if folders.get("qwen3") is not None:
        figures |= head_and_length(folders["qwen3"])
    figures["peak_rss_mb_process"] = peak_rss_mb()
    table = Table(
        title=f"20 DL19 chunks per query, {args.queries} queries (median), {cpu_summary()}",
        title_justify="left",
    )
    for column in ("model system", "ms / query", "docs/s", "tokens / pair", "load s"):
        table.add_column(column, justify="left" if column == "model system" else "right")
    for key, f in figures.items():
        if not isinstance(f, dict) or "ms_per_query" not in f:
            if isinstance(f, dict) and "error" in f:
                table.add_row(key, f["error"][:60], "", "", "")
            continue
        table.add_row(
            key,
            f"{f['ms_per_query']:.0f}",
            f"{f['docs_per_s']:.1f}",
            f"{f['tokens_per_pair']:.0f}",
            f"{f['load_s']:.1f}",
        )
    console.print(table)
    console.print({k: v for k, v in figures.items() if k.startswith(("head", "length"))})
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"cpu": cpu_summary(), "args": vars(args), "figures": figures}, indent=2)
        )


def head_and_length(folder: Path) -> dict:
    """The folded yes-no row against the full vocabulary head (the last position, and every
    position as a plain ``model(...).logits`` call computes), and one chunk's cost by length."""
    from transformers import AutoModelForCausalLM

    from crossrank.backends.yes_no import YesNoScore

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    folded = YesNoScore(model, 10, 11).eval()
    ids = torch.randint(100, 30000, (4, 160))
    mask = torch.ones_like(ids)
    out: dict[str, float] = {}
    torch.set_num_threads(usable_cpus())

    def timed(fn) -> float:
        fn()
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - started) * 1000)
        return statistics.median(runs)

    with torch.inference_mode():
        out["head folded ms (4 x 160 tokens)"] = timed(
            lambda: folded({"input_ids": ids, "attention_mask": mask})
        )
        out["head full vocabulary, last position ms"] = timed(
            lambda: model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits
        )
        out["head full vocabulary, every position ms"] = timed(
            lambda: model(input_ids=ids, attention_mask=mask).logits
        )
        for length in (256, 512, 1024, 2048):
            one = torch.randint(100, 30000, (1, length))
            out[f"length {length} tokens, one pair, torch fp32 ms"] = timed(
                lambda one=one: folded({"input_ids": one, "attention_mask": torch.ones_like(one)})
            )
    return out


if __name__ == "__main__":
    main()
