"""Tiny random models of the reranker families RAG teams run, built in seconds with no download.

Each builder saves a hub-style folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``) that ``transformers.AutoTokenizer``,
``AutoModelForSequenceClassification`` / ``AutoModelForCausalLM`` and sentence-transformers'
``CrossEncoder`` load. The weights are seeded random (tens of thousands of parameters), so tests
use these folders for invariants (parity between backends, order, loading), never for real
rankings.

The tokenizers are of each family's own type, made with the ``tokenizers`` library and laid out as
the family's hub ``tokenizer.json`` is:

* :func:`build_tiny_xlm_roberta` (bge-reranker-v2-m3): SentencePiece Unigram, ``WhitespaceSplit``
  + ``Metaspace``, ``<s> A </s></s> B </s>``, ``<pad>`` = 1;
* :func:`build_tiny_modernbert` (gte-reranker-modernbert-base): byte-level BPE,
  ``[CLS] A [SEP] B [SEP]``;
* :func:`build_tiny_deberta_v2` (mxbai-rerank v1): SentencePiece Unigram, ``Strip``, ``Metaspace``,
  ``[CLS] A [SEP] B [SEP]`` with segment ids;
* :func:`build_tiny_qwen3_reranker`, :func:`build_tiny_qwen2_reranker` (Qwen3-Reranker,
  mxbai-rerank v2): causal LMs that score "yes" against "no" as the next token, with Qwen2's
  byte-level BPE (its split regex, no BOS/EOS added) and its chat tokens.

None has SentencePiece's precompiled normalisation table (``Precompiled``, made by
``sentencepiece`` from Unicode data); where a family's pipeline relies on it for whitespace
(DeBERTa-v2: tabs and line breaks become spaces), a ``Replace`` stands in. transformers 5 rebuilds
the SentencePiece families' normaliser and pre-tokeniser from its own tokenizer classes instead of
reading them from ``tokenizer.json``; these folders are made so that both give the same ids,
whitespace runs, tabs and line breaks included (each builder checks a pair, the tests many).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from crossrank.testing import CHARACTERS, SLIM_DOCUMENTS, SLIM_QUERY, WORDS_TEXT

__all__ = [
    "QWEN2_SPLIT_PATTERN",
    "TINY_CORPUS",
    "build_tiny_deberta_v2",
    "build_tiny_modernbert",
    "build_tiny_qwen2_reranker",
    "build_tiny_qwen3_reranker",
    "build_tiny_xlm_roberta",
]

#: Qwen2's pre-tokeniser pattern (the ``Split`` in its ``tokenizer.json``, also Qwen3's).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

#: The text the BPE vocabularies are trained on: crossrank.testing's words, the slim query and
#: documents, and the answers and digits an LLM reranker reads ("yes", "no", "0"-"9").
TINY_CORPUS = "\n".join(
    [
        WORDS_TEXT,
        SLIM_QUERY,
        *SLIM_DOCUMENTS,
        "Judge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".',
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query",
        "<Query>: what is the capital of france",
        "<Document>: paris is the capital city of france",
        "system user assistant",
        *(["yes", "no", "Yes", "No", "yes no", "no yes", " yes", " no"] * 20),
        *([" ".join("0123456789")] * 5),
        "0 1 2 3 4 5 6 7 8 9 10 12 20 100 2024",
    ]
)

_SPACE = "\u2581"  # SentencePiece's word-start mark
#: Standard deviation of the random weights: wider than the 0.02 of real inits, so that a tiny
#: model's logits spread over a range tests can order (with 0.02 they agree to 1e-4).
_INITIALIZER_RANGE = 0.3
_PUNCTUATION = ':;"()/'  # beyond crossrank.testing.CHARACTERS: what the slim documents need


def _words() -> list[str]:
    """The distinct words of the slim texts and crossrank.testing's word list, in first-seen order."""
    text = " ".join([WORDS_TEXT, SLIM_QUERY, *SLIM_DOCUMENTS])
    return list(dict.fromkeys(re.findall(r"[a-z0-9]+", text.lower())))


def _unigram_pieces() -> list[tuple[str, float]]:
    """SentencePiece-style pieces with log-probability scores: whole words (``▁word``) beat letters.

    Every character of :data:`crossrank.testing.CHARACTERS` is a piece, alone and word-initial,
    so any text of those characters has a segmentation; others become the unknown token.
    """
    pieces: dict[str, float] = {_SPACE: -3.0}
    for rank, word in enumerate(_words()):
        pieces.setdefault(_SPACE + word, -6.0 - rank / 1000)
    for character in CHARACTERS + _PUNCTUATION:
        pieces.setdefault(_SPACE + character, -9.0)
        pieces.setdefault(character, -10.0)
    return list(pieces.items())


def _added_token(token: Any) -> dict[str, Any]:
    """The ``added_tokens_decoder`` entry of ``tokenizer_config.json`` for a ``tokenizers.AddedToken``."""
    names = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    return {name: getattr(token, name) for name in names}


def _save_tokenizer(
    folder: Path, tokenizer: Any, settings: dict[str, Any], special_map: dict[str, str]
) -> None:
    """Write ``tokenizer.json``, and ``tokenizer_config.json`` / ``special_tokens_map.json`` as
    hub repositories carry them (the added tokens listed by id)."""
    tokenizer.save(str(folder / "tokenizer.json"))
    added = {
        str(index): _added_token(token)
        for index, token in sorted(tokenizer.get_added_tokens_decoder().items())
    }
    config = {"added_tokens_decoder": added, **settings}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps(special_map, indent=2) + "\n", encoding="utf-8"
    )


def _save_model(folder: Path, model_class: type, config: Any, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(folder)


def _padded(size: int, multiple: int = 64) -> int:
    """``size`` rounded up to ``multiple``: the embedding rows real checkpoints keep past the vocabulary."""
    return -(-size // multiple) * multiple


def _sentencepiece_tokenizer(
    pieces: list[tuple[str, float]],
    *,
    unk_id: int,
    special: list[str],
    pair: str,
    single: str,
    whitespace_split: bool,
    mask: str,
) -> Any:
    """A Unigram tokenizer with Metaspace, as transformers writes SentencePiece models, and the
    family's template; its special tokens are added tokens, as in the hub files."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(pieces, unk_id=unk_id, byte_fallback=False))
    metaspace = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    if whitespace_split:  # whitespace runs, tabs and line breaks dropped first (XLM-R, CamemBERT)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([metaspace])
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    ids = {piece: index for index, (piece, _) in enumerate(pieces)}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(token, ids[token]) for token in special]
    )
    added = [piece for piece, _ in pieces if piece.startswith(("<", "[")) and piece.endswith((">", "]"))]
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False, lstrip=token == mask) for token in added]
    )
    return tokenizer


def build_tiny_xlm_roberta(directory: str | os.PathLike[str], *, seed: int = 1234) -> Path:
    """Save a tiny bge-reranker-v2-m3: ``XLMRobertaForSequenceClassification``, one logit.

    2 layers, hidden 32, 128 tokens at most (``max_position_embeddings`` 130: RoBERTa's positions
    start after the padding index), seeded random weights; a SentencePiece Unigram tokenizer laid
    out as XLM-R's ``tokenizer.json`` (``WhitespaceSplit`` + ``Metaspace``, ``<s> A </s></s> B </s>``,
    ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` last), ``tokenizer_class``
    ``XLMRobertaTokenizer``.

    Args:
        directory: Where to save it (created if missing); name it like the real repository, e.g.
            ``.../bge-reranker-v2-m3-tiny``.
        seed: torch's seed for the weights.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_xlm_roberta(Path(folder) / "bge-reranker-v2-m3-tiny")
        ...     tokenizer = AutoTokenizer.from_pretrained(model)
        ...     tokenizer.convert_ids_to_tokens(tokenizer("flea", "fleas live").input_ids)
        ['<s>', '▁flea', '</s>', '</s>', '▁fleas', '▁live', '</s>']
    """
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [*specials, *_unigram_pieces(), ("<mask>", 0.0)]
    tokenizer = _sentencepiece_tokenizer(
        pieces,
        unk_id=3,
        special=["<s>", "</s>"],
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        whitespace_split=True,
        mask="<mask>",
    )
    positions = 130
    names = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "sep": "</s>", "pad": "<pad>", "cls": "<s>"}
    special_map = {f"{key}_token": value for key, value in names.items()} | {"mask_token": "<mask>"}
    _save_tokenizer(
        folder,
        tokenizer,
        {
            **special_map,
            "clean_up_tokenization_spaces": True,
            "model_max_length": positions - 2,
            "sp_model_kwargs": {},
            "tokenizer_class": "XLMRobertaTokenizer",
        },
        special_map,
    )
    config = XLMRobertaConfig(
        vocab_size=len(pieces),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        initializer_range=_INITIALIZER_RANGE,
    )
    _save_model(folder, XLMRobertaForSequenceClassification, config, seed)
    _check_tokenizer(folder)
    return folder


def build_tiny_deberta_v2(directory: str | os.PathLike[str], *, seed: int = 1234) -> Path:
    """Save a tiny mxbai-rerank v1 (DeBERTa-v3): ``DebertaV2ForSequenceClassification``, one logit.

    2 layers, hidden 32, 128 tokens at most, DeBERTa-v3's attention (relative positions in log
    buckets, ``c2p`` and ``p2c``, no absolute positions, no segment embeddings), seeded random
    weights; a SentencePiece Unigram tokenizer laid out as DeBERTa-v3's ``tokenizer.json``
    (``Strip`` and ``Metaspace``, ``[CLS] A [SEP] B [SEP]`` with segment ids 0 then 1, ``[PAD]`` 0,
    ``[CLS]`` 1, ``[SEP]`` 2, ``[UNK]`` 3, ``[MASK]`` last), ``tokenizer_class``
    ``DebertaV2Tokenizer``.

    Args:
        directory: Where to save it (created if missing), e.g. ``.../mxbai-rerank-xsmall-v1-tiny``.
        seed: torch's seed for the weights.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_deberta_v2(Path(folder) / "mxbai-rerank-xsmall-v1-tiny")
        ...     tokenizer = AutoTokenizer.from_pretrained(model)
        ...     encoded = tokenizer("flea", "fleas live")
        ...     tokenizer.convert_ids_to_tokens(encoded.input_ids), encoded.token_type_ids
        (['[CLS]', '▁flea', '[SEP]', '▁fleas', '▁live', '[SEP]'], [0, 0, 0, 1, 1, 1])
    """
    from tokenizers import Regex, normalizers
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    specials = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0)]
    pieces = [*specials, *_unigram_pieces(), ("[MASK]", 0.0)]
    tokenizer = _sentencepiece_tokenizer(
        pieces,
        unk_id=3,
        special=["[CLS]", "[SEP]"],
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        whitespace_split=False,
        mask="[MASK]",
    )
    # DeBERTa-v3's normaliser (strip, SentencePiece's table, runs of spaces made one), with tabs
    # and line breaks made spaces in place of the table (which does that, among much else).
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Strip(),
            normalizers.Replace(Regex("[\n\r\t]"), " "),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    positions = 128
    names = {"bos": "[CLS]", "eos": "[SEP]", "unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]"}
    special_map = {f"{key}_token": value for key, value in names.items()} | {"mask_token": "[MASK]"}
    _save_tokenizer(
        folder,
        tokenizer,
        {
            **special_map,
            "clean_up_tokenization_spaces": True,
            "do_lower_case": False,
            "model_max_length": positions,
            "split_by_punct": False,
            "sp_model_kwargs": {},
            "tokenizer_class": "DebertaV2Tokenizer",
            "vocab_type": "spm",
        },
        special_map,
    )
    config = DebertaV2Config(
        vocab_size=len(pieces),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        pad_token_id=0,
        num_labels=1,
        initializer_range=_INITIALIZER_RANGE,
    )
    _save_model(folder, DebertaV2ForSequenceClassification, config, seed)
    _check_tokenizer(folder)
    return folder


def _byte_level_bpe(*, vocab_size: int, qwen_split: bool) -> Any:
    """A byte-level BPE trained on :data:`TINY_CORPUS`.

    ``qwen_split``: Qwen2's pre-tokeniser (its regex ``Split``, then ``ByteLevel`` without its own
    regex) and NFC; otherwise GPT-2's (``ByteLevel`` with its regex), as ModernBERT has.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(BPE())
    tokenizer.normalizer = normalizers.NFC()
    if qwen_split:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TINY_CORPUS.splitlines(), trainer=trainer)
    return tokenizer


def build_tiny_modernbert(
    directory: str | os.PathLike[str], *, classifier_pooling: str = "mean", seed: int = 1234
) -> Path:
    """Save a tiny gte-reranker-modernbert-base: ``ModernBertForSequenceClassification``, one logit.

    3 layers (global, local with a 16-token window, global: ModernBERT alternates them, and its
    last layer is global), hidden 32, 128 tokens at most, seeded random weights; a byte-level BPE
    tokenizer as ModernBERT's (GPT-2's byte-level split, ``[CLS] A [SEP] B [SEP]``, no segment
    ids; ``[UNK] [CLS] [SEP] [PAD] [MASK]`` after the BPE vocabulary), ``tokenizer_class``
    ``PreTrainedTokenizerFast``.

    Args:
        directory: Where to save it (created if missing), e.g. ``.../gte-reranker-modernbert-base-tiny``.
        classifier_pooling: ``"mean"`` (ModernBERT-base's setting, which its fine-tunes such as
            gte-modernbert-base keep) or ``"cls"``.
        seed: torch's seed for the weights.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_modernbert(Path(folder) / "gte-reranker-modernbert-base-tiny")
        ...     tokenizer = AutoTokenizer.from_pretrained(model)
        ...     tokenizer.convert_ids_to_tokens(tokenizer("flea", "fleas live").input_ids)
        ['[CLS]', 'flea', '[SEP]', 'fleas', 'Ġlive', '[SEP]']
    """
    from tokenizers import AddedToken, processors
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    if classifier_pooling not in ("cls", "mean"):
        raise ValueError(f"classifier_pooling must be 'cls' or 'mean', not {classifier_pooling!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _byte_level_bpe(vocab_size=2000, qwen_split=False)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False, lstrip=token == "[MASK]") for token in specials]
    )
    ids = {token: tokenizer.token_to_id(token) for token in specials}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    positions = 128
    names = {"cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "pad": "[PAD]", "mask": "[MASK]"}
    special_map = {f"{key}_token": value for key, value in names.items()}
    _save_tokenizer(
        folder,
        tokenizer,
        {
            **special_map,
            "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": positions,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
        special_map,
    )
    config = ModernBertConfig(
        vocab_size=_padded(tokenizer.get_vocab_size()),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        max_position_embeddings=positions,
        global_attn_every_n_layers=2,
        local_attention=16,
        classifier_pooling=classifier_pooling,
        pad_token_id=ids["[PAD]"],
        cls_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
        num_labels=1,
        initializer_range=_INITIALIZER_RANGE,
    )
    _save_model(folder, ModernBertForSequenceClassification, config, seed)
    _check_tokenizer(folder)
    return folder


def _build_tiny_qwen(folder: Path, *, family: str, seed: int) -> Path:
    from tokenizers import AddedToken, processors
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _byte_level_bpe(vocab_size=2000, qwen_split=True)
    for answer in ("yes", "no", "1", "0"):
        if tokenizer.token_to_id(answer) is None:  # the reranker reads these tokens' logits
            raise AssertionError(f"{answer!r} is not one token of the tiny Qwen vocabulary")
    tokenizer.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False)
            for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
        ]
    )
    if family == "qwen3":  # Qwen3's thinking marks: added tokens, but not special ones
        tokenizer.add_tokens(
            [AddedToken(token, special=False, normalized=False) for token in ("<think>", "</think>")]
        )
    # Qwen adds no BOS/EOS: its tokenizer.json's post-processor is a plain ByteLevel (offsets only).
    tokenizer.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    positions = 512
    special_map = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    _save_tokenizer(
        folder,
        tokenizer,
        {
            "add_prefix_space": False,
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": positions,
            "pad_token": "<|endoftext|>",
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
        special_map | {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]},
    )
    sizes = {
        "vocab_size": _padded(tokenizer.get_vocab_size()),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": positions,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),
        "pad_token_id": tokenizer.token_to_id("<|endoftext|>"),
    }
    if family == "qwen3":
        _save_model(folder, Qwen3ForCausalLM, Qwen3Config(head_dim=8, **sizes), seed)
    else:
        _save_model(folder, Qwen2ForCausalLM, Qwen2Config(**sizes), seed)
    _check_tokenizer(folder, chat=True)
    return folder


def build_tiny_qwen3_reranker(directory: str | os.PathLike[str], *, seed: int = 1234) -> Path:
    """Save a tiny Qwen3-Reranker: ``Qwen3ForCausalLM`` that scores "yes" against "no" as next token.

    2 layers, hidden 32, 4 query heads sharing 2 key/value heads (head size 8), tied input and
    output embeddings, 512 tokens at most, seeded random weights; Qwen2's byte-level BPE tokenizer
    (its regex split, NFC, no BOS/EOS added), trained on :data:`TINY_CORPUS` so that ``yes``,
    ``no``, ``1`` and ``0`` are single tokens; ``<|endoftext|>`` (padding), ``<|im_start|>`` and
    ``<|im_end|>`` (end of sequence) special, ``<think>`` and ``</think>`` added;
    ``tokenizer_class`` ``Qwen2Tokenizer``.

    Args:
        directory: Where to save it (created if missing), e.g. ``.../Qwen3-Reranker-tiny``.
        seed: torch's seed for the weights.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_qwen3_reranker(Path(folder) / "Qwen3-Reranker-tiny")
        ...     tokenizer = AutoTokenizer.from_pretrained(model)
        ...     tokenizer.convert_ids_to_tokens(tokenizer("<|im_start|>user\\nyes<think>").input_ids)
        ['<|im_start|>', 'user', 'Ċ', 'yes', '<think>']
    """
    return _build_tiny_qwen(Path(directory), family="qwen3", seed=seed)


def build_tiny_qwen2_reranker(directory: str | os.PathLike[str], *, seed: int = 1234) -> Path:
    """Save a tiny Qwen2 reranker (mxbai-rerank v2): ``Qwen2ForCausalLM``, "yes"/"no" as next token.

    As :func:`build_tiny_qwen3_reranker` (same sizes and tokenizer), with Qwen2's layers (no
    query/key norms, biased query/key/value projections) and without the ``<think>`` tokens.

    Args:
        directory: Where to save it (created if missing), e.g. ``.../mxbai-rerank-base-v2-tiny``.
        seed: torch's seed for the weights.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForCausalLM
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = build_tiny_qwen2_reranker(Path(folder) / "mxbai-rerank-base-v2-tiny")
        ...     type(AutoModelForCausalLM.from_pretrained(model)).__name__
        'Qwen2ForCausalLM'
    """
    return _build_tiny_qwen(Path(directory), family="qwen2", seed=seed)


#: What each builder's check tokenises: a pair (encoders), or a chat turn (Qwen).
_CHECK_PAIR = (SLIM_QUERY, SLIM_DOCUMENTS[0])
_CHECK_CHAT = (
    "<|im_start|>system\nyes no 1 0<|im_end|>\n<|im_start|>user\n" + SLIM_DOCUMENTS[3] + "<|im_end|>"
)


def _check_tokenizer(folder: Path, *, chat: bool = False) -> None:
    """transformers' tokenizer of ``folder`` gives the ids ``tokenizer.json`` alone gives (and no
    unknown token): transformers 5 rebuilds some families' tokenizers from its own classes."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(folder)
    if chat:
        expected, got = plain.encode(_CHECK_CHAT).ids, loaded(_CHECK_CHAT).input_ids
    else:
        expected, got = plain.encode(*_CHECK_PAIR).ids, loaded(*_CHECK_PAIR).input_ids
    if expected != got:
        raise AssertionError(f"{folder}: transformers tokenises to {got}, tokenizer.json to {expected}")
    unknown = loaded.unk_token_id
    if unknown is not None and unknown in expected:
        raise AssertionError(f"{folder}: the check text has unknown tokens: {expected}")
