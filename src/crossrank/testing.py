"""Test helpers for crossrank and its integration packages: a tiny random cross-encoder built in seconds.

It has the layout of a real one (a BERT with one output logit and a WordPiece tokenizer saved with
``save_pretrained``), so every backend loads it; its scores are random, so tests use it for
invariants (order, mutation, parity between paths), and the trained fixture for real rankings.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_cross_encoder"]

_WORDS_TEXT = (
    "the a an of to in is and for on with what how why when does do long flea fleas live life "
    "cycle year years host dog cat paris tower eiffel france capital city bread dough rest "
    "yeast coffee tea caffeine sun light earth minutes sky blue cross encoder query passage "
    "score rank document model search retrieval chunk token tokens long short hello world"
)
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,?!'-"


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
        >>> model = build_tiny_cross_encoder(tempfile.mkdtemp())
        >>> len(Reranker(model, device="cpu").score("flea", ["fleas live a year", "tea"]))
        2
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = Path(directory)
    letters = list(_CHARACTERS + extra_characters)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *letters,
        *(f"##{c}" for c in letters),
        *_WORDS_TEXT.split(),
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
