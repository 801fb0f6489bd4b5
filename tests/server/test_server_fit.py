"""``PairEncoder.fit``: the server's truncation to a token budget, done by the encoder (no model, no torch).

Texts are cut at token boundaries to what fits next to the query (``document_room``), or to
``max_tokens_per_doc``: the start kept (``side="right"``) or the end (``"left"``); with ``cut=False`` a
text too long is refused, naming it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrank.encoding import PairEncoder
from crossrank.errors import DocumentTooLongError, InvalidArgumentError
from crossrank.testing import fake_tokenizer

MAX_LENGTH = 24
#: Words the fake tokenizer holds whole: one token each, so a cut text re-tokenises to exactly what was kept.
WORDS = [
    "the",
    "a",
    "of",
    "fleas",
    "flea",
    "live",
    "life",
    "cycle",
    "year",
    "host",
    "dog",
    "cat",
    "tea",
    "sky",
]


@pytest.fixture(scope="module")
def encoder() -> PairEncoder:
    return PairEncoder(fake_tokenizer(), max_length=MAX_LENGTH, pad_token_id=0, with_token_type_ids=True)


def _tokens(encoder: PairEncoder, text: str) -> list[str]:
    return encoder.tokenize([text])[0].tokens


words = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(" ".join)
caps = st.none() | st.integers(min_value=1, max_value=30)
sides = st.sampled_from(["right", "left"])


def test_the_words_are_single_tokens(encoder: PairEncoder) -> None:
    assert all(len(_tokens(encoder, word)) == 1 for word in WORDS)


@settings(max_examples=200, deadline=None)
@given(query=queries, texts=st.lists(words, max_size=6), cap=caps, side=sides)
def test_a_fitted_text_keeps_the_right_end_and_never_exceeds_the_room(
    encoder: PairEncoder, query: str, texts: list[str], cap: int | None, side: str
) -> None:
    room = encoder.document_room(query)
    limit = room if cap is None else min(room, cap)
    fitted = encoder.fit(query, texts, max_tokens_per_doc=cap, side=side)
    assert len(fitted) == len(texts)
    for text, kept in zip(texts, fitted, strict=True):
        tokens, kept_tokens = _tokens(encoder, text), _tokens(encoder, kept)
        assert len(kept_tokens) <= limit
        if len(tokens) <= limit:
            assert kept is text  # a text that fits comes back as the same object
        elif side == "right":
            assert text.startswith(kept) and kept_tokens == tokens[:limit]
        else:
            assert text.endswith(kept) and kept_tokens == tokens[-limit:]


@settings(max_examples=200, deadline=None)
@given(
    query=queries,
    text=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 .,?!'-", max_size=300),
    cap=caps,
)
def test_any_text_cut_at_the_end_is_a_prefix_within_the_room(
    encoder: PairEncoder, query: str, text: str, cap: int | None
) -> None:
    (kept,) = encoder.fit(query, [text], max_tokens_per_doc=cap)
    limit = encoder.document_room(query) if cap is None else min(encoder.document_room(query), cap)
    assert text.startswith(kept) and len(_tokens(encoder, kept)) <= limit


@settings(max_examples=100, deadline=None)
@given(query=queries, texts=st.lists(words, max_size=6))
def test_without_cutting_the_first_text_too_long_is_named(
    encoder: PairEncoder, query: str, texts: list[str]
) -> None:
    room = encoder.document_room(query)
    too_long = [i for i, text in enumerate(texts) if len(_tokens(encoder, text)) > room]
    if not too_long:
        fitted = encoder.fit(query, texts, cut=False)
        assert all(kept is text for kept, text in zip(fitted, texts, strict=True))
        return
    with pytest.raises(DocumentTooLongError) as refused:
        encoder.fit(query, texts, cut=False)
    first = too_long[0]
    assert refused.value.index == first and refused.value.max_length == MAX_LENGTH
    # the pair's tokens: the text's, the query's (as fitted) and the special tokens
    assert refused.value.tokens == len(_tokens(encoder, texts[first])) + MAX_LENGTH - room
    assert isinstance(refused.value, InvalidArgumentError)


def test_max_tokens_per_doc_cuts_even_when_cutting_is_off(encoder: PairEncoder) -> None:
    assert encoder.fit("flea", ["fleas live a year"], cut=False, max_tokens_per_doc=2) == ["fleas live"]
    long_text = " ".join(["flea"] * 50)
    with pytest.raises(DocumentTooLongError):
        encoder.fit("flea", [long_text], cut=False, max_tokens_per_doc=30)  # over the room (20) too


def test_windows_mean_the_room_limits_nothing(encoder: PairEncoder) -> None:
    long_text = " ".join(["flea"] * 50)
    assert encoder.fit("tea", [long_text], windows=True)[0] is long_text
    assert encoder.fit("tea", [long_text], windows=True, cut=False)[0] is long_text
    assert encoder.fit("tea", [long_text], windows=True, max_tokens_per_doc=30) == [" ".join(["flea"] * 30)]


def test_a_lone_surrogate_is_kept_as_it_came(encoder: PairEncoder) -> None:
    """Tokenised with U+FFFD in its place (one character for one): the offsets still fit the text."""
    text = "a \ud83d " + " ".join(["flea"] * 40) + " tea \udc00"
    right, left = encoder.fit("sky", [text]), encoder.fit("sky", [text], side="left")
    assert right[0].startswith("a \ud83d flea") and text.startswith(right[0])
    assert left[0].endswith("tea \udc00") and text.endswith(left[0])


def test_bad_arguments_are_refused(encoder: PairEncoder) -> None:
    with pytest.raises(InvalidArgumentError, match="side"):
        encoder.fit("flea", ["tea"], side="middle")
    for cap in (0, True, 2.5):
        with pytest.raises(InvalidArgumentError, match="max_tokens_per_doc"):
            encoder.fit("flea", ["tea"], max_tokens_per_doc=cap)
    assert encoder.fit("flea", []) == []
