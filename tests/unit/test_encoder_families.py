"""The encoder families RAG teams rerank with score on every backend as sentence-transformers does.

XLM-RoBERTa (bge-reranker-v2-m3), ModernBERT (gte-reranker-modernbert-base; mean pooling, and a
CLS-pooling variant) and DeBERTa-v2 (mxbai-rerank v1), as tiny random models of
:mod:`crossrank.families_testing`, each built once per module: torch and ONNX fp32 give
``CrossEncoder.predict``'s logits (identity activation) to 1e-4 and its order, int8 and static
int8 stay within a bound measured on these models, and ``normalize=True`` is the sigmoid of the
logits. Where transformers 5 rebuilds a tokenizer unlike its ``tokenizer.json``, ONNX (and a
``crossrank export`` folder) still tokenise as torch and sentence-transformers do.
"""

from __future__ import annotations

import doctest
import json
import math
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from crossrank import Reranker
from crossrank import families_testing as families
from crossrank.testing import SLIM_DOCUMENTS, SLIM_QUERY

# onnxruntime comes with the onnx extra, which scripts/test.sh installs.
pytest.importorskip("onnxruntime", reason="backend='onnx' needs the onnx extra")

QUERY = SLIM_QUERY
#: The slim documents (an empty one among them), longer ones (past ModernBERT's 16-token local
#: window), one cut at the models' 128 tokens, and line breaks and runs of spaces.
DOCS = [
    *SLIM_DOCUMENTS,
    "paris is the capital city of france, and the eiffel tower is in paris",
    "a cat flea can live a year on a host dog: fleas live long",
    "coffee and tea have caffeine",
    "the flea life cycle " * 40,
    "fleas live\n\ntwo to three  months\twith a host ",
]

#: family -> (builder, folder name like the real repository's, config.model_type)
FAMILIES: dict[str, tuple[Callable[..., Path], str, str]] = {
    "xlm-roberta": (families.build_tiny_xlm_roberta, "bge-reranker-v2-m3-tiny", "xlm-roberta"),
    "modernbert": (families.build_tiny_modernbert, "gte-reranker-modernbert-base-tiny", "modernbert"),
    "modernbert-cls": (
        partial(families.build_tiny_modernbert, classifier_pooling="cls"),
        "reranker-ModernBERT-base-cls-tiny",
        "modernbert",
    ),
    "deberta-v2": (families.build_tiny_deberta_v2, "mxbai-rerank-xsmall-v1-tiny", "deberta-v2"),
}

#: Largest int8 error accepted, as a share of the spread (max - min) of a model's fp32 logits on
#: DOCS. Measured on 2-core AMD EPYC, onnxruntime 1.32, with the builders' default seed (1234):
#: dynamic int8 at most 0.078 of the spread (ModernBERT with CLS pooling; XLM-R 0.059, DeBERTa
#: 0.033, ModernBERT 0.027), static int8 at most 0.110 (ModernBERT; its CLS variant 0.109, XLM-R
#: 0.047, DeBERTa 0.040). The bounds leave ~2x room for other CPUs' int8 kernels. They hold for
#: that seed, not for any: random weights of std 0.3 quantise worse than trained ones, and over 12
#: seeds the worst model reached 0.28 (dynamic) and 0.30 (static).
INT8_SHARE_OF_SPREAD = {"int8": 0.15, "int8-static": 0.2}


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ONNX exports of this module in a cache of its own."""
    cache = tmp_path_factory.mktemp("crossrank-cache")
    previous = os.environ.get("CROSSRANK_CACHE")
    os.environ["CROSSRANK_CACHE"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["CROSSRANK_CACHE"]
    else:
        os.environ["CROSSRANK_CACHE"] = previous


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(family, folder of its tiny model), built once per module."""
    builder, name, _ = FAMILIES[request.param]
    return request.param, builder(tmp_path_factory.mktemp(request.param) / name)


@pytest.fixture(scope="module")
def reference(family: tuple[str, Path]) -> np.ndarray:
    """sentence-transformers' raw logits of (QUERY, DOCS)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(family[1]), device="cpu", activation_fn=torch.nn.Identity())
    return np.asarray(model.predict([(QUERY, doc) for doc in DOCS]), dtype=np.float64)


@pytest.fixture(scope="module")
def fp32_onnx(family: tuple[str, Path]) -> Reranker:
    return Reranker(family[1], backend="onnx", device="cpu")


def _ranks(scores: object) -> list[int]:
    return list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))


def _distinct(scores: np.ndarray, gap: float) -> None:
    """The order of ``scores`` means something: no two closer than ``gap``."""
    ordered = np.sort(scores)
    assert np.min(np.diff(ordered)) > gap, f"near-ties in the reference logits {scores}: pick other DOCS"


def test_folder_is_the_family(family: tuple[str, Path]) -> None:
    """What the builder saved loads as the family's own classes, and tokenises alike both ways."""
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    name, folder = family
    model_type = FAMILIES[name][2]
    assert AutoConfig.from_pretrained(folder).model_type == model_type
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.num_labels == 1
    if model_type == "modernbert":
        assert model.config.classifier_pooling == ("cls" if name == "modernbert-cls" else "mean")
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    hf = AutoTokenizer.from_pretrained(folder)
    expected_class = {
        "xlm-roberta": "XLMRobertaTokenizer",
        "modernbert": "PreTrainedTokenizerFast",
        "deberta-v2": "DebertaV2Tokenizer",
    }[model_type]
    assert settings["tokenizer_class"] == expected_class
    plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # transformers 5 rebuilds the SentencePiece families' pipelines from its own classes: the
    # folder is made so that both agree, whitespace runs and line breaks included.
    hf_ids = hf([QUERY] * len(DOCS), DOCS)["input_ids"]
    assert [e.ids for e in plain.encode_batch([(QUERY, doc) for doc in DOCS])] == hf_ids
    assert hf.pad_token_id == model.config.pad_token_id


def test_torch_scores_equal_sentence_transformers(family: tuple[str, Path], reference: np.ndarray) -> None:
    reranker = Reranker(family[1], backend="torch", device="cpu", precision="fp32")
    scores = reranker.score(QUERY, DOCS)
    assert all(type(score) is float for score in scores)
    assert np.max(np.abs(np.subtract(scores, reference))) <= 1e-4
    _distinct(reference, 1e-3)
    assert _ranks(scores) == _ranks(reference)


def test_onnx_fp32_scores_equal_sentence_transformers(
    family: tuple[str, Path], reference: np.ndarray, fp32_onnx: Reranker
) -> None:
    scores = fp32_onnx.score(QUERY, DOCS)
    assert fp32_onnx.backend == "onnx"
    assert np.max(np.abs(np.subtract(scores, reference))) <= 1e-4
    _distinct(reference, 1e-3)
    assert _ranks(scores) == _ranks(reference)


@pytest.mark.parametrize("quantize", ["int8", "int8-static"])
def test_onnx_int8_stays_near_fp32(family: tuple[str, Path], fp32_onnx: Reranker, quantize: str) -> None:
    fp32 = np.asarray(fp32_onnx.score(QUERY, DOCS))
    reranker = Reranker(family[1], backend="onnx", quantize=quantize, device="cpu")
    scores = np.asarray(reranker.score(QUERY, DOCS))
    bound = INT8_SHARE_OF_SPREAD[quantize] * float(np.ptp(fp32))
    assert np.max(np.abs(scores - fp32)) <= bound
    # Hence documents more than twice the bound apart in fp32 keep their order.
    for i, j in ((i, j) for i in range(len(DOCS)) for j in range(len(DOCS))):
        if fp32[i] - fp32[j] > 2 * bound:
            assert scores[i] > scores[j], (i, j)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_normalize_is_the_sigmoid_of_the_logits(family: tuple[str, Path], backend: str) -> None:
    reranker = Reranker(family[1], backend=backend, device="cpu")
    logits = reranker.score(QUERY, DOCS)
    probabilities = reranker.score(QUERY, DOCS, normalize=True)
    assert all(0.0 < p < 1.0 for p in probabilities)
    expected = [1.0 / (1.0 + math.exp(-logit)) for logit in logits]
    assert np.max(np.abs(np.subtract(probabilities, expected))) <= 1e-6


def test_only_xlm_roberta_runs_the_first_token_last_layer(family: tuple[str, Path]) -> None:
    """first_token.FIRST_TOKEN_MODEL_TYPES holds XLM-R; ModernBERT and DeBERTa-v2 keep their layers."""
    from crossrank.backends.first_token import FirstTokenLastLayer

    name, folder = family
    model = Reranker(folder, backend="torch", device="cpu", precision="fp32").engine.cross_encoder.model
    swapped = any(isinstance(module, FirstTokenLastLayer) for module in model.modules())
    assert swapped == (name == "xlm-roberta")


def test_onnx_tokenises_like_torch_when_transformers_rebuilds_the_tokenizer(
    tmp_path: Path,
) -> None:
    builder, name, _ = FAMILIES["xlm-roberta"]
    folder = builder(tmp_path / name)
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    whitespace_split, metaspace = tokenizer_json["pre_tokenizer"]["pretokenizers"]
    assert whitespace_split == {"type": "WhitespaceSplit"}
    tokenizer_json["pre_tokenizer"] = metaspace
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    docs = ["paris is the capital", "paris  is the capital", "paris is the capital ", "paris\nis the capital"]
    torch_reranker = Reranker(folder, backend="torch", device="cpu", precision="fp32")
    torch_scores = torch_reranker.score("capital of france", docs)
    onnx_scores = Reranker(folder, backend="onnx", device="cpu").score("capital of france", docs)
    assert np.max(np.abs(np.subtract(onnx_scores, torch_scores))) <= 1e-4
    # A `crossrank export` folder carries transformers' tokenizer, so it scores the same anywhere.
    from crossrank.export import export_model

    exported = export_model(folder, tmp_path / "exported", recipes=("fp32",)).folder
    exported_scores = Reranker(exported, backend="onnx", device="cpu").score("capital of france", docs)
    assert np.max(np.abs(np.subtract(exported_scores, torch_scores))) <= 1e-4


def test_builders_doctests(tmp_path: Path) -> None:
    """The builders' examples (every family, the Qwen ones included) run as written."""
    outcome = doctest.testmod(families, optionflags=doctest.ELLIPSIS, verbose=False)
    assert outcome.attempted >= 5 and outcome.failed == 0


@pytest.mark.parametrize(
    ("builder", "name", "model_type"),
    [
        (families.build_tiny_qwen3_reranker, "Qwen3-Reranker-tiny", "qwen3"),
        (families.build_tiny_qwen2_reranker, "mxbai-rerank-base-v2-tiny", "qwen2"),
    ],
)
def test_qwen_folders_load_and_tokenise_alike(
    tmp_path: Path, builder: Callable[..., Path], name: str, model_type: str
) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = builder(tmp_path / name)
    assert folder == tmp_path / name
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == model_type and model.config.tie_word_embeddings
    plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(folder)
    assert type(hf).__name__ == "Qwen2Tokenizer"
    assert len(hf) <= model.config.vocab_size
    for answer in ("yes", "no", "1", "0"):
        assert plain.token_to_id(answer) is not None
        assert hf.convert_tokens_to_ids(answer) == plain.token_to_id(answer)
    chat = "<|im_start|>system\nyes no 1 0<|im_end|>"
    assert hf(chat).input_ids == plain.encode(chat).ids
    tokens = ["<|im_start|>", "system", "Ċ", "yes", "Ġno", "Ġ", "1", "Ġ", "0", "<|im_end|>"]
    assert plain.encode(chat).tokens == tokens
    for text in [*DOCS, "<think>\n\n</think>\n\n", "  two spaces\tand a tab\r\n"]:
        assert hf(text).input_ids == plain.encode(text).ids
    assert hf.pad_token == "<|endoftext|>" and hf.eos_token == "<|im_end|>" and hf.bos_token is None
    thinking = "<think>" in hf.get_vocab()
    assert thinking == (model_type == "qwen3")
    if thinking:
        assert not hf.added_tokens_decoder[hf.convert_tokens_to_ids("<think>")].special
    with torch.inference_mode():
        logits = model(**hf([chat], return_tensors="pt")).logits
    assert logits.shape[-1] == model.config.vocab_size
