"""Turn (query, documents) into padded model inputs, the same way for every backend.

Tokenisation lives here, not in the backends, so torch and ONNX (and a server in front of
either) see the very same token ids. It uses the Rust ``tokenizers`` library directly:

* the query is tokenised once per call, the documents in one ``encode_batch`` call;
* pairs longer than ``max_length`` lose tokens from the **end of the document only**; the query
  is kept whole (unless it alone would take more than half of ``max_length``: then it is cut to
  that half, with a warning, so the document still gets room); with ``windows=True`` the rest
  of a long document is encoded too, as overlapping windows each paired with the query, so the
  caller can score every part of it (MaxP);
* the special tokens (``[CLS] q [SEP] d [SEP]`` for BERT, ``<s> q </s></s> d </s>`` for RoBERTa)
  come from the tokenizer's own post-processor, so any HF cross-encoder works;
* pairs are sorted by length and cut into mini-batches, each padded only to its own longest
  pair, which saves most of the padding work on mixed-length chunks.

The tokenizer object is a private copy whose truncation/padding settings are never changed
after construction, so many threads can encode at once (the HF "Already borrowed" error comes
from libraries flipping those settings per call).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tokenizers import Encoding, Tokenizer

from crossrank.errors import DocumentTooLongError, InvalidArgumentError
from crossrank.families import PromptFormat

__all__ = [
    "BATCH_OVERHEAD_TOKENS",
    "EncodedBatch",
    "EncodedPairs",
    "PairEncoder",
    "plan_batches",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One padded mini-batch of (query, document) pairs, ready for a backend.

    Attributes:
        positions: For each row, its position in the list of pairs that was encoded.
        input_ids: ``int64`` array of shape ``(rows, seq_len)``.
        attention_mask: ``int64`` array, 1 for real tokens and 0 for padding.
        token_type_ids: ``int64`` array (0 = query segment, 1 = document segment), or ``None``
            for models that take no segment ids (e.g. RoBERTa, DistilBERT).
    """

    positions: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None

    def as_dict(self) -> dict[str, np.ndarray]:
        """The model inputs by name (``input_ids``, ``attention_mask`` and maybe ``token_type_ids``)."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


#: Default cost of one extra forward pass, in padded tokens: weighs fewer, wider batches against
#: more, tighter ones. Each backend states its own (``Backend.batch_overhead_tokens``): on a 2-core
#: CPU with MiniLM-L6 on DL19's top 20, torch gave the same latency from 32 to 128; ONNX Runtime
#: costs almost nothing per run (~1-2 ms, 10-20 tokens' worth) and is fastest near 32.
BATCH_OVERHEAD_TOKENS = 128


def plan_batches(
    lengths: Sequence[int], batch_size: int, overhead_tokens: int = BATCH_OVERHEAD_TOKENS
) -> list[tuple[int, int]]:
    """Split pairs sorted by decreasing length into contiguous batches of least total cost.

    A batch costs ``rows x width`` padded tokens (its first pair sets the width) plus
    ``overhead_tokens``; no batch has more than ``batch_size`` rows.

    Exact dynamic programming over the prefixes, with one saving: some optimal plan has every
    batch either full or starting where the length changes (a batch that is not full and starts
    inside a run of equal lengths can take the previous row over at no extra cost: same width
    here, a row fewer there). So each prefix tries those starts only: a few per prefix instead of
    ``batch_size`` (10,000 pairs at batch 128: ~30 ms instead of ~230 ms in pure Python).

    Returns:
        ``(start, stop)`` index ranges into ``lengths``, in order.

    Example:
        >>> plan_batches([100, 100, 10, 10, 10], batch_size=4, overhead_tokens=0)
        [(0, 2), (2, 5)]
    """
    n = len(lengths)
    # Positions where a run of equal lengths begins: the only starts worth trying besides "full".
    run_starts = [i for i in range(n) if i == 0 or lengths[i] != lengths[i - 1]]
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j pairs
    cut = [0] * (n + 1)
    first_run = 0  # index into run_starts of the first run start >= stop - batch_size
    for stop in range(1, n + 1):
        low = max(0, stop - batch_size)
        while first_run < len(run_starts) and run_starts[first_run] < low:
            first_run += 1
        best_cost, best_start = best[low] + (stop - low) * lengths[low], low
        for run in range(first_run, len(run_starts)):
            start = run_starts[run]
            if start >= stop:
                break
            cost = best[start] + (stop - start) * lengths[start]
            if cost < best_cost:
                best_cost, best_start = cost, start
        best[stop], cut[stop] = best_cost + overhead_tokens, best_start
    plan, stop = [], n
    while stop > 0:
        plan.append((cut[stop], stop))
        stop = cut[stop]
    return plan[::-1]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(text: str) -> str:
    """``text`` with unpaired UTF-16 surrogates (a cut emoji from JavaScript-made JSON) as U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


@dataclass(slots=True)
class EncodedPairs:
    """The encoded pairs of one query with its documents.

    Attributes:
        first: One pair per document, in input order: the whole document, or its beginning.
        extra: Further windows of long documents (only when encoding with ``windows=True``).
        extra_owners: For each extra window, the index of its document.
        num_cut: How many documents did not fit ``max_length`` whole.
        num_capped: How many documents had more windows than ``max_windows`` (their end unscored).
    """

    first: list[Encoding]
    extra: list[Encoding]
    extra_owners: list[int]
    num_cut: int
    num_capped: int = 0


class PairEncoder:
    """Encodes a query with many documents into length-sorted, padded mini-batches.

    Args:
        tokenizer: A fast tokenizer; a private copy is made, so the caller's object is left as is.
        max_length: Most tokens in one (query, document) pair, special tokens included.
        pad_token_id: Id used for padding.
        with_token_type_ids: Whether the model takes ``token_type_ids``.
        prompt: An LLM reranker's prompt (:class:`crossrank.families.PromptFormat`): the query and
            each document are put in their parts of it before tokenising (``tokenizer`` then
            carries its fixed pieces as the pair template). None: a cross-encoder's plain pair.
        instruction: The instruction in ``prompt``'s query part (None: the prompt's default).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        pad_token_id: int,
        with_token_type_ids: bool,
        prompt: PromptFormat | None = None,
        instruction: str | None = None,
    ) -> None:
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.with_token_type_ids = with_token_type_ids
        self.prompt = prompt
        self.instruction = instruction
        self._num_special = self._tokenizer.num_special_tokens_to_add(is_pair=True)
        if max_length <= self._num_special + 1:
            raise InvalidArgumentError(
                f"max_length={max_length} leaves no room for text after the special tokens"
            )

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        windows: bool = False,
        stride: int | None = None,
        max_windows: int | None = None,
        window_length: int | None = None,
    ) -> EncodedPairs:
        """Encode each ``(query, document)`` pair to fit ``max_length``.

        Args:
            query: The query text.
            documents: Document texts.
            windows: False cuts a long document at the end. True also encodes the rest of it as
                further overlapping windows, each paired with the whole query.
            stride: Tokens shared by consecutive windows. Defaults to a quarter of the room a
                document has next to the query.
            max_windows: Most windows per document (the first one included); a longer document
                keeps its first ``max_windows`` and is counted in ``num_capped``. None: no cap.
            window_length: windows: tokens per (query, window) pair of a document that doesn't
                fit ``max_length``; None: ``max_length``. Shorter windows let a relevant passage
                inside a long chunk stand out. Documents that fit are encoded whole either way.

        Returns:
            :class:`EncodedPairs`: ``first`` holds one pair per document; for a document that fits,
            identical in both modes (so short documents score the same either way); ``extra`` the
            further windows.
        """
        if self.prompt is not None:
            documents = [self.prompt.document_text(document) for document in documents]
        budget = self.max_length - self._num_special
        query_enc = self._encode_texts([self._query_part(query)], "the query")[0]
        if len(query_enc) > budget // 2:
            logger.warning(
                "The query has %d tokens, more than half of max_length=%d; it is cut to %d tokens.",
                len(query_enc),
                self.max_length,
                budget // 2,
            )
            query_enc.truncate(budget // 2)
        doc_budget = budget - len(query_enc)
        # A long document's windows: their room next to the query (at least a few tokens).
        window_budget = doc_budget
        if windows and window_length is not None:
            window_budget = max(min(window_length - self._num_special - len(query_enc), doc_budget), 8)
        if stride is None:
            stride = window_budget // 4
        stride = min(stride, window_budget - 1)  # each window must move forward
        pairs = EncodedPairs([], [], [], 0)
        for index, doc_enc in enumerate(self._encode_texts(documents, "documents")):
            if len(doc_enc) > doc_budget:
                pairs.num_cut += 1
                doc_enc.truncate(window_budget if windows else doc_budget, stride=stride if windows else 0)
                if windows:
                    overflowing = doc_enc.overflowing
                    if max_windows is not None and len(overflowing) > max_windows - 1:
                        overflowing = overflowing[: max_windows - 1]
                        pairs.num_capped += 1
                    for window in overflowing:
                        pairs.extra.append(
                            self._tokenizer.post_process(query_enc, window, add_special_tokens=True)
                        )
                        pairs.extra_owners.append(index)
            pairs.first.append(self._tokenizer.post_process(query_enc, doc_enc, add_special_tokens=True))
        return pairs

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer pairs are encoded with (a private copy: don't change its settings)."""
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone, without special tokens.

        Example:
            >>> encoder.count_tokens("how long does a flea live")  # doctest: +SKIP
            6
        """
        return len(self._encode_texts([text], None)[0])

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """Tokenise ``texts`` alone (no special tokens), with character offsets: to cut text by tokens."""
        return self._encode_texts(texts, None)

    def document_room(self, query: str) -> int:
        """How many document tokens fit next to ``query`` in one pair (the query cut to half if long).

        Example:
            >>> encoder.document_room("how long does a flea live")  # doctest: +SKIP
            503
        """
        budget = self.max_length - self._num_special
        return budget - min(self.count_tokens(self._query_part(query)), budget // 2)

    def _query_part(self, query: str) -> str:
        """``query`` as the pair's first text: itself, or an LLM reranker's prompt's query part."""
        return query if self.prompt is None else self.prompt.query_text(query, self.instruction)

    def fit(
        self,
        query: str,
        texts: Sequence[str],
        *,
        max_tokens_per_doc: int | None = None,
        side: Literal["right", "left"] = "right",
        cut: bool = True,
        windows: bool = False,
    ) -> list[str]:
        """``texts`` cut, at token boundaries, to what fits next to ``query`` in one pair.

        A text keeps at most :meth:`document_room` tokens (and at most ``max_tokens_per_doc``):
        its first ones (``side="right"`` cuts the end) or its last ones (``"left"``). The cut is a
        slice of the text as given, so what is kept reads exactly as it came.

        Args:
            query: The query the texts will be paired with.
            texts: The texts; not modified.
            max_tokens_per_doc: Cut every text to at most this many tokens, even one that fits.
            side: Which end of a long text is cut off.
            cut: False refuses a text longer than the room (:class:`~crossrank.errors.DocumentTooLongError`)
                instead of cutting it; ``max_tokens_per_doc`` still cuts.
            windows: The texts will be scored as windows (``long_documents="windows"``), so the
                room limits nothing: only ``max_tokens_per_doc`` cuts, and nothing is refused.

        Returns:
            One text per text, in order; a text that fits is returned as the same object.

        Raises:
            DocumentTooLongError: ``cut=False`` and a text doesn't fit (the first one is named).
            InvalidArgumentError: ``side`` or ``max_tokens_per_doc`` is invalid.

        Example:
            >>> from crossrank.testing import fake_tokenizer
            >>> tokenizer = fake_tokenizer()
            >>> encoder = PairEncoder(tokenizer, max_length=8, pad_token_id=0, with_token_type_ids=True)
            >>> encoder.document_room("flea")  # 8 - 3 special tokens - 1 query token
            4
            >>> encoder.fit("flea", ["fleas live a year with a host", "tea"])
            ['fleas live a year', 'tea']
            >>> encoder.fit("flea", ["fleas live a year with a host"], side="left", max_tokens_per_doc=2)
            ['a host']
            >>> encoder.fit("flea", ["fleas live a year with a host"], cut=False)
            Traceback (most recent call last):
            ...
            crossrank.errors.DocumentTooLongError: texts[0] has 11 tokens with the query, more than ...
        """
        if side not in ("right", "left"):
            raise InvalidArgumentError(f"side must be 'right' or 'left', got {side!r}")
        if max_tokens_per_doc is not None and (
            isinstance(max_tokens_per_doc, bool)
            or not isinstance(max_tokens_per_doc, int)
            or max_tokens_per_doc < 1
        ):
            raise InvalidArgumentError(f"max_tokens_per_doc must be an int >= 1, got {max_tokens_per_doc!r}")
        room = self.document_room(query)
        fitted = []
        for index, (text, encoding) in enumerate(zip(texts, self.tokenize(texts), strict=True)):
            limit = len(encoding) if windows else room
            if max_tokens_per_doc is not None:
                limit = min(limit, max_tokens_per_doc)
            if len(encoding) <= limit:
                fitted.append(text)
                continue
            if not cut and not windows and len(encoding) > room:
                pair_tokens = len(encoding) + self.max_length - room  # with the query and special tokens
                raise DocumentTooLongError(index=index, tokens=pair_tokens, max_length=self.max_length)
            offsets = encoding.offsets
            fitted.append(text[offsets[-limit][0] :] if side == "left" else text[: offsets[limit - 1][1]])
        return fitted

    def _encode_texts(self, texts: Sequence[str], what: str | None) -> list[Encoding]:
        """Tokenise ``texts`` without special tokens; unpaired surrogates become U+FFFD.

        ``what`` names the texts in the warning that says so (None: count quietly).
        """
        try:
            return self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        except TypeError:
            # The Rust tokenizer refuses str holding unpaired UTF-16 surrogates ("broken \ud83d",
            # as json.loads gives for a cut emoji). Score the rest of the text instead of failing.
            broken = [i for i, text in enumerate(texts) if _LONE_SURROGATE.search(text)]
            if not broken:
                raise
            if what is not None:
                where = f"{what} {broken}" if len(texts) > 1 else what
                logger.warning(
                    "%s contain unpaired UTF-16 surrogates (a cut emoji?); scored with U+FFFD in their place",
                    where,
                )
            return self._tokenizer.encode_batch(
                [_without_lone_surrogates(text) for text in texts], add_special_tokens=False
            )

    def batches(
        self,
        encodings: Sequence[Encoding],
        batch_size: int,
        overhead_tokens: int = BATCH_OVERHEAD_TOKENS,
    ) -> Iterator[EncodedBatch]:
        """Yield padded mini-batches of at most ``batch_size`` pairs, longest pairs first.

        Pairs are sorted by length, then cut into the contiguous batches that cost least in
        total (see :func:`plan_batches`, which gets ``overhead_tokens``): with 20 chunks of 60 to
        170 tokens, one batch of 20 would pad every pair to 170 tokens; a few batches of similar
        lengths pad far less.
        """
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]), reverse=True)
        lengths = [len(encodings[i]) for i in order]
        for start, stop in plan_batches(lengths, batch_size, overhead_tokens):
            positions = order[start:stop]
            yield self._pad([encodings[i] for i in positions], np.asarray(positions, dtype=np.int64))

    def _pad(self, encodings: list[Encoding], positions: np.ndarray) -> EncodedBatch:
        width = max(len(enc) for enc in encodings)
        input_ids = np.full((len(encodings), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
        token_type_ids = (
            np.zeros((len(encodings), width), dtype=np.int64) if self.with_token_type_ids else None
        )
        for row, enc in enumerate(encodings):
            n = len(enc)
            input_ids[row, :n] = enc.ids
            attention_mask[row, :n] = 1
            if token_type_ids is not None:
                token_type_ids[row, :n] = enc.type_ids
        return EncodedBatch(positions, input_ids, attention_mask, token_type_ids)
