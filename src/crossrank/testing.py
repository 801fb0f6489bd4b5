"""Test helpers for crossrank and its integration packages.

* :func:`build_tiny_cross_encoder`: a tiny random cross-encoder built in seconds. It has the
  layout of a real one (a BERT with one output logit and a WordPiece tokenizer saved with
  ``save_pretrained``), so every backend loads it; its scores are random, so tests use it for
  invariants (order, mutation, parity between paths), and the trained fixture for real rankings.
* :class:`FakeEngine`: a :class:`~crossrank.backends.Backend` with no model file and no torch,
  whose logit is a pure function of its own row (the share of query words the document holds), so
  unit tests of the scoring path, the server's batcher and the adapters run in milliseconds,
  can inject latency and failures, and know each score in advance.
* :data:`SERVING_ENGINES`: the engines the server and adapter suites run on, each test once per
  engine.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.encoding import EncodedBatch

__all__ = [
    "CHARACTERS",
    "SERVING_ENGINES",
    "SLIM_DOCUMENTS",
    "SLIM_QUERY",
    "WORDS_TEXT",
    "FakeEngine",
    "build_tiny_cross_encoder",
    "build_torch_free_fixtures",
    "engine_id",
    "fake_tokenizer",
]

#: The ``backend=`` values the server and adapter test suites run every test on: the default (what
#: this CPU's ``auto`` picks) and OpenVINO, a backend ``auto`` picks only on CPUs with native bf16,
#: so that its serving and adapter paths are tested on every CPU.
SERVING_ENGINES: tuple[str, ...] = ("auto", "openvino")


def engine_id(engine: str) -> str:
    """The test id of one engine of :data:`SERVING_ENGINES`, for ``pytest.fixture(ids=engine_id)``.

    >>> engine_id("openvino")
    'engine=openvino'
    """
    return f"engine={engine}"


#: The words and characters the tiny test tokenizers know (here and in crossrank.families_testing).
WORDS_TEXT = (
    "the a an of to in is and for on with what how why when does do long flea fleas live life "
    "cycle year years host dog cat paris tower eiffel france capital city bread dough rest "
    "yeast coffee tea caffeine sun light earth minutes sky blue cross encoder query passage "
    "score rank document model search retrieval chunk token tokens long short hello world"
)
CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,?!'-"


def build_tiny_cross_encoder(
    directory: str | os.PathLike[str], *, num_labels: int = 1, extra_characters: str = ""
) -> Path:
    """Save a 2-layer BERT cross-encoder (hidden 32, max 128 tokens, seeded random weights) in ``directory``.

    Args:
        directory: Where to save it (created if missing).
        num_labels: Output labels; 2 makes an NLI-style classifier, which crossrank refuses.
        extra_characters: Characters added to the vocabulary (e.g. ``":"``).

    Example:
        >>> import tempfile
        >>> from crossrank import Reranker
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_cross_encoder(folder)
        ...     len(Reranker(model, device="cpu").score("flea", ["fleas live a year", "tea"]))
        2
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = Path(directory)
    letters = list(CHARACTERS + extra_characters)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *letters,
        *(f"##{c}" for c in letters),
        *WORDS_TEXT.split(),
    ]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True, model_max_length=128
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(1234)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder


def fake_tokenizer(extra_words: str = "") -> Any:
    """A lower-casing WordPiece tokenizer with BERT's pair template, built in memory (no files, no torch).

    Example:
        >>> fake_tokenizer().encode("how long do fleas live").tokens
        ['[CLS]', 'how', 'long', 'do', 'fleas', 'live', '[SEP]']
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    letters = list(CHARACTERS)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *letters, *(f"##{c}" for c in letters)]
    vocab += (WORDS_TEXT + " " + extra_words).split()
    ids = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    tokenizer = Tokenizer(WordPiece(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return tokenizer


class FakeEngine:
    """A deterministic engine for unit tests: a row's logit is ``4 * overlap - 2 - length / 1000``.

    ``overlap`` is the share of the query's distinct tokens found in the document, ``length`` the
    document's token count: documents holding the query's words rank first, shorter ones break
    ties. A row's logit depends on that row alone, so it is the same in any batch
    (``batch_invariant``), bit for bit.

    Args:
        delay_s: Seconds each ``logits`` call sleeps (a slow model, to test queues and timeouts).
        fail_word: A word whose presence in a document makes its row's logit NaN (crossrank then
            raises :class:`~crossrank.ScoringError` for that request only).
        batch_invariant: What the engine declares (False makes the scoring path keep requests apart).
        max_positions, default_batch_size: As :class:`~crossrank.backends.Backend`.

    Attributes:
        batches: The row count of every ``logits`` call, in order (thread-safe).

    Example:
        >>> from crossrank import Reranker
        >>> reranker = Reranker.from_backend(FakeEngine())
        >>> reranker.rank("fleas", ["tea", "fleas live a year"], top_n=1)[0].index
        1
    """

    name = "fake"
    device = "cpu"
    pad_token_id = 0
    uses_token_type_ids = True
    batch_overhead_tokens = 16

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        fail_word: str | None = None,
        batch_invariant: bool = True,
        max_positions: int = 128,
        default_batch_size: int = 8,
    ) -> None:
        self.tokenizer = fake_tokenizer(fail_word or "")
        self.delay_s = delay_s
        self.batch_invariant = batch_invariant
        self.max_positions = max_positions
        self.default_batch_size = default_batch_size
        self._fail_id = None if fail_word is None else self.tokenizer.token_to_id(fail_word.lower())
        self._special = {self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]"), 0}
        self._lock = threading.Lock()
        self.batches: list[int] = []

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """One logit per row, from that row's tokens only."""
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.batches.append(len(batch.input_ids))
        segments = batch.token_type_ids
        if segments is None:
            raise ValueError("FakeEngine reads the document segment from token_type_ids")
        out = np.empty(len(batch.input_ids), dtype=np.float32)
        for row, (ids, types, mask) in enumerate(
            zip(batch.input_ids, segments, batch.attention_mask, strict=True)
        ):
            real = mask.astype(bool)
            query = {int(t) for t in ids[real & (types == 0)]} - self._special
            document = [int(t) for t in ids[real & (types == 1)] if int(t) not in self._special]
            overlap = len(query & set(document)) / max(len(query), 1)
            out[row] = 4.0 * overlap - 2.0 - len(document) / 1000.0
            if self._fail_id is not None and self._fail_id in document:
                out[row] = np.nan
        return out


#: The query and documents the torch-free tests score, against scores recorded by the full install.
SLIM_QUERY = "how long does a flea live"
SLIM_DOCUMENTS = (
    "fleas live two to three months, up to a year with a host",
    "the eiffel tower is in paris",
    "bread dough rests before baking",
    "the flea life cycle: egg, larva, pupa and adult",
    "",
)


def build_torch_free_fixtures(directory: str | os.PathLike[str]) -> Path:
    """What the torch-free tests load, made where torch is installed: run once before them.

    In ``directory``: ``exported/`` (``crossrank export`` of the tiny model: fp32, int8,
    int8-static), ``hub/`` (the layout of a hub repository that ships ONNX: ``onnx/model.onnx`` and
    an optimum-style int8 file for this CPU, no manifest), ``hub-fp32/`` (a hub repository that
    ships only a plain whole-model ``onnx/model.onnx``, as optimum exports it: int8 is quantised
    from it), ``weights-only/`` (the tiny model's torch files, no ONNX) and ``expected.json``: the
    full install's scores of :data:`SLIM_DOCUMENTS` (torch fp32, ONNX fp32/int8/int8-static on
    ``exported/``, and ``hub-fp32 <recipe>`` on ``hub-fp32/``), which the torch-free install must
    reproduce.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     root = build_torch_free_fixtures(folder)
        ...     sorted(path.name for path in root.iterdir())
        ['expected.json', 'exported', 'hub', 'hub-fp32', 'weights-only']
    """
    import json
    import shutil

    from crossrank import Reranker
    from crossrank.backends.onnx_export import export_onnx
    from crossrank.backends.onnx_files import EXPORTED_FILES, INT8_FILES
    from crossrank.cpus import cpu_features
    from crossrank.export import export_model

    root = Path(directory)
    weights = build_tiny_cross_encoder(root / "weights-only")
    exported = export_model(weights, root / "exported").folder
    hub = root / "hub"
    (hub / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(exported / name, hub / name)
    shutil.copyfile(exported / EXPORTED_FILES["fp32"], hub / "onnx" / "model.onnx")
    features = cpu_features()
    variant = next((name for name, needs in INT8_FILES if needs <= features), None)
    if variant is not None:  # what optimum's file for this CPU would be: a dynamic int8 graph
        shutil.copyfile(exported / EXPORTED_FILES["int8"], hub / variant)
    plain = root / "hub-fp32"
    (plain / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(exported / name, plain / name)
    export_onnx(weights, plain / "onnx" / "model.onnx", first_token_only=False)
    documents = list(SLIM_DOCUMENTS)
    expected = {
        "torch": Reranker(weights, backend="torch", device="cpu").score(SLIM_QUERY, documents),
        "int8_variant": variant,
    }
    for recipe in EXPORTED_FILES:
        quantize = None if recipe == "fp32" else recipe
        engine = Reranker(exported, backend="onnx", quantize=quantize, device="cpu")
        expected[recipe] = engine.score(SLIM_QUERY, documents)
        quantised = Reranker(plain, backend="onnx", quantize=quantize, device="cpu")
        expected[f"hub-fp32 {recipe}"] = quantised.score(SLIM_QUERY, documents)
    (root / "expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    return root
