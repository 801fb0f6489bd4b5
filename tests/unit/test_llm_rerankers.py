"""LLM rerankers (Qwen3-Reranker, mxbai-rerank v2) against their model cards' reference code, written
here: the prompt token for token, the score (logit(yes) - logit(no) at the last token), on torch and
ONNX, with the folded head equal to the full vocabulary head's difference.

The models are tiny random Qwen3/Qwen2 causal LMs with byte-level BPE tokenizers of Qwen's kind
(:mod:`crossrank.families_testing`): the values are random, the arithmetic is the real one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from crossrank import InvalidArgumentError, Reranker, UnsupportedModelError
from crossrank.families import FAMILIES, detect_family
from crossrank.families_testing import build_tiny_qwen2_reranker, build_tiny_qwen3_reranker

QUERY = "how long does a flea live"
DOCS = [
    "fleas live two to three months, up to a year with a host",
    "the eiffel tower is in paris",
    "1 flea: 100 days; 2 fleas? no",  # digits and punctuation right after "<Document>: "
    "\nadult fleas",  # a newline first
    "  two spaces first",
    "yes",
]
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("m") / "Qwen3-Reranker-tiny")


@pytest.fixture(scope="module")
def mxbai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_reranker(tmp_path_factory.mktemp("m") / "mxbai-rerank-tiny-v2")


def _hf_tokenizer(folder: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))


def qwen3_reference_ids(folder: Path, query: str, docs: list[str], max_length: int, instruction=None):
    """The Qwen3-Reranker model card's ``process_inputs`` (QwenLM/Qwen3-Embedding README)."""
    tokenizer = _hf_tokenizer(folder)
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
        'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    instruction = QWEN3_INSTRUCTION if instruction is None else instruction
    pairs = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}" for doc in docs]
    inputs = tokenizer(
        pairs,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    return [prefix_tokens + ids + suffix_tokens for ids in inputs["input_ids"]]


def mxbai_reference_ids(folder: Path, query: str, docs: list[str], max_length: int, instruction=None):
    """mixedbread-ai/mxbai-rerank ``MxbaiRerankV2``: pieces tokenised apart, joined as ids; the query
    (with ``instruction: ...``) and ``\\n`` + the document cut together to ``max_length``."""
    tokenizer = _hf_tokenizer(folder)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prefix = ids(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "<|im_end|>\n<|im_start|>user\n"
    )
    task = ids(
        "You are a search relevance expert who evaluates how well documents match search queries. For "
        "each query-document pair, carefully analyze the semantic relationship between them, then provide "
        "your binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
    )
    suffix, sep = ids("<|im_end|>\n<|im_start|>assistant\n"), ids("\n")
    query_text = f"instruction: {instruction}\nquery: {query}" if instruction else f"query: {query}"
    query_ids = ids(query_text)
    rows = []
    for doc in docs:
        doc_ids = ids(f"document: {doc}")
        body = (query_ids + sep + doc_ids)[:max_length]  # only_second: the document's end is cut
        rows.append(prefix + body + sep + task + suffix)
    return rows


def reference_scores(folder: Path, rows: list[list[int]], true: str, false: str) -> list[float]:
    """logit(true) - logit(false) at the last token, each row alone through the full LM head."""
    from transformers import AutoModelForCausalLM

    tokenizer = _hf_tokenizer(folder)
    true_id, false_id = tokenizer.convert_tokens_to_ids(true), tokenizer.convert_tokens_to_ids(false)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        return [
            float(logits[0, -1, true_id] - logits[0, -1, false_id])
            for logits in (model(input_ids=torch.tensor([row])).logits for row in rows)
        ]


def crossrank_ids(reranker: Reranker, query: str, docs: list[str]) -> list[list[int]]:
    return [encoding.ids for encoding in reranker.encoder.encode(query, docs).first]


CASES = {
    "qwen3-reranker": (qwen3_reference_ids, "yes", "no"),
    "mxbai-rerank-v2": (mxbai_reference_ids, "1", "0"),
}


@pytest.fixture(params=list(CASES))
def case(request, qwen3: Path, mxbai: Path):
    folder = qwen3 if request.param == "qwen3-reranker" else mxbai
    return request.param, folder, *CASES[request.param]


@pytest.mark.parametrize("instruction", [None, "Find what answers a question about insects"])
def test_the_prompt_is_the_model_cards_token_for_token(case, instruction) -> None:
    name, folder, reference, _, _ = case
    reranker = Reranker(folder, backend="torch", device="cpu", instruction=instruction)
    assert reranker.engine.family.name == name
    want = reference(folder, QUERY, DOCS, 4096, instruction)
    assert crossrank_ids(reranker, QUERY, DOCS) == want


def test_only_the_document_is_cut_as_the_reference_cuts_it(case) -> None:
    name, folder, reference, _, _ = case
    long_doc = "fleas live two to three months " * 40
    fixed = Reranker(folder, backend="torch", device="cpu").tokenizer.num_special_tokens_to_add(is_pair=True)
    # The prompt's fixed pieces, the query part (under half of the rest, so it is never cut), and
    # some of the document.
    max_length = fixed + 150
    reranker = Reranker(folder, backend="torch", device="cpu", max_length=max_length)
    got = crossrank_ids(reranker, QUERY, [long_doc, DOCS[0]])
    assert len(got[0]) == max_length and len(got[1]) < max_length
    # The reference's budget: Qwen3's counts the whole prompt; mxbai's leaves out its fixed pieces.
    ref_length = max_length if name == "qwen3-reranker" else max_length - _mxbai_fixed(folder)
    assert got == reference(folder, QUERY, [long_doc, DOCS[0]], ref_length)


def _mxbai_fixed(folder: Path) -> int:
    """The tokens of an mxbai prompt its max_length doesn't count: the prefix, and the separator, task
    and suffix after the document."""
    rows = mxbai_reference_ids(folder, QUERY, [""], 10_000)
    body = mxbai_reference_ids(folder, QUERY, [""], 10_000)[0]
    tokenizer = _hf_tokenizer(folder)
    counted = (
        len(tokenizer(f"query: {QUERY}", add_special_tokens=False)["input_ids"])
        + len(tokenizer("\n", add_special_tokens=False)["input_ids"])
        + len(tokenizer("document: ", add_special_tokens=False)["input_ids"])
    )
    assert len(rows[0]) == len(body)
    return len(body) - counted


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_scores_equal_the_reference_code(case, backend: str) -> None:
    _, folder, reference, true, false = case
    reranker = Reranker(folder, backend=backend, device="cpu", precision="fp32")
    want = reference_scores(folder, reference(folder, QUERY, DOCS, 4096), true, false)
    got = reranker.score(QUERY, DOCS)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1e-4
    assert np.argsort(got).tolist() == np.argsort(want).tolist()
    probabilities = reranker.score(QUERY, DOCS, normalize=True)  # P(yes) against P(no), as the cards
    assert probabilities == pytest.approx([1 / (1 + math.exp(-w)) for w in want], abs=1e-5)


def test_int8_onnx_stays_close_and_mixes_no_requests(case) -> None:
    _, folder, _, _, _ = case
    fp32 = Reranker(folder, backend="onnx", device="cpu").score(QUERY, DOCS)
    int8 = Reranker(folder, backend="onnx", quantize="int8", device="cpu")
    got = int8.score(QUERY, DOCS)
    assert int8.engine.batch_invariant is False
    # Tiny random weights: the logits span ~0.05, int8 moved them by at most 0.003 when measured.
    assert max(abs(a - b) for a, b in zip(got, fp32, strict=True)) < 0.02


def test_the_folded_head_equals_the_full_heads_difference(qwen3: Path) -> None:
    from transformers import AutoModelForCausalLM

    from crossrank.backends.yes_no import YesNoScore

    model = AutoModelForCausalLM.from_pretrained(qwen3).eval()
    folded = YesNoScore(model, 7, 11).eval()
    ids = torch.randint(20, 200, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding: each row is read at its own last token
    mask[2, 4:] = 0
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).logits
        last = mask.sum(dim=1) - 1
        want = torch.stack([full[row, last[row], 7] - full[row, last[row], 11] for row in range(3)])
        got = folded({"input_ids": ids, "attention_mask": mask})["scores"].squeeze(1)
    assert torch.allclose(got, want, atol=1e-5)


def test_an_unknown_causal_lm_is_refused_never_scored_without_its_prompt(qwen3: Path, tmp_path) -> None:
    import shutil

    stranger = tmp_path / "some-chat-model"
    shutil.copytree(qwen3, stranger)
    for backend in ("torch", "onnx"):
        with pytest.raises(UnsupportedModelError, match=r"causal language model .* no reranking prompt"):
            Reranker(stranger, backend=backend, device="cpu")
    # Named, it runs: the family can be given where the name doesn't say it.
    named = Reranker(stranger, backend="torch", device="cpu", family="qwen3-reranker")
    assert named.engine.family.name == "qwen3-reranker"


def test_family_and_instruction_are_checked(qwen3: Path, tiny_model_dir) -> None:
    with pytest.raises(UnsupportedModelError, match="doesn't fit"):
        Reranker(tiny_model_dir, backend="torch", device="cpu", family="qwen3-reranker")
    with pytest.raises(InvalidArgumentError, match="instruction applies to LLM rerankers"):
        Reranker(tiny_model_dir, backend="torch", device="cpu", instruction="Find answers")
    with pytest.raises(ValueError, match="unknown family"):
        Reranker(qwen3, family="qwen9")
    with pytest.raises(InvalidArgumentError, match="int8-static' is not available for LLM"):
        Reranker(qwen3, backend="onnx", quantize="int8-static", device="cpu")


def test_detection_reads_names_not_configs() -> None:
    qwen3_config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}
    assert detect_family("Qwen/Qwen3-Reranker-4B", qwen3_config).name == "qwen3-reranker"
    assert detect_family("/models/hub/models--Qwen--Qwen3-Reranker-0.6B/snapshots/abc", qwen3_config)
    qwen2_config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
    assert detect_family("mixedbread-ai/mxbai-rerank-large-v2", qwen2_config) is FAMILIES["mxbai-rerank-v2"]
    with pytest.raises(UnsupportedModelError):
        detect_family("Qwen/Qwen2.5-0.5B-Instruct", qwen2_config)
    with pytest.raises(UnsupportedModelError):  # the right name, the wrong architecture
        detect_family("Qwen/Qwen3-Reranker-0.6B", qwen2_config)


def test_an_exported_llm_reranker_keeps_its_family(qwen3: Path, tmp_path) -> None:
    """`crossrank export` writes fp32 and int8 (no int8-static) and records the family, which the
    folder's new name no longer says; the folder scores as the model did on ONNX."""
    from crossrank.export import export_model

    result = export_model(qwen3, tmp_path / "exported")
    assert set(result.files) == {"fp32", "int8"}
    for quantize in (None, "int8"):
        exported = Reranker(result.folder, backend="onnx", quantize=quantize, device="cpu")
        original = Reranker(qwen3, backend="onnx", quantize=quantize, device="cpu")
        assert exported.family == "qwen3-reranker"
        assert exported.score(QUERY, DOCS) == original.score(QUERY, DOCS)
    with pytest.raises(InvalidArgumentError, match="no int8-static recipe"):
        export_model(qwen3, tmp_path / "static", recipes=("int8-static",))


def test_the_default_max_length_is_the_models_limit_capped() -> None:
    """LLM rerankers declare 32-40k positions: the default stops at 8,192 (their own default)."""
    from crossrank.config import DEFAULT_MAX_LENGTH_CAP
    from crossrank.testing import FakeEngine

    assert Reranker.from_backend(FakeEngine(max_positions=40960)).max_length == DEFAULT_MAX_LENGTH_CAP == 8192
    assert Reranker.from_backend(FakeEngine(max_positions=512)).max_length == 512
    assert Reranker.from_backend(FakeEngine(max_positions=40960), max_length=16384).max_length == 16384


def test_windows_mode_scores_an_llm_rerankers_long_chunks(qwen3: Path) -> None:
    """long_documents="windows" on an LLM reranker: each window goes through the prompt (the fixed
    pieces around it); a chunk that fits scores as in truncate mode, bit for bit."""
    fixed = Reranker(qwen3, backend="torch", device="cpu").tokenizer.num_special_tokens_to_add(is_pair=True)
    options = {"backend": "torch", "device": "cpu", "max_length": fixed + 120}
    long_doc = "fleas live two to three months, up to a year with a host. " * 30
    cut = Reranker(qwen3, **options).score(QUERY, [DOCS[1], long_doc])
    windows = Reranker(qwen3, long_documents="windows", **options)
    scores = windows.score(QUERY, [DOCS[1], long_doc])
    assert scores[0] == cut[0]
    pairs = windows.encoder.encode(QUERY, [long_doc], windows=True)
    assert pairs.extra and all(len(window) <= fixed + 120 for window in pairs.extra)
    assert all(window.ids[-3:] == pairs.first[0].ids[-3:] for window in pairs.extra)  # the suffix closes each
