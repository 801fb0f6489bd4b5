"""The :class:`Reranker`: one scoring path for every backend, sync and async."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from tokenizers import Encoding

from crossrank.backends import Backend, load_backend
from crossrank.config import DEFAULT_MODEL, RerankerConfig
from crossrank.encoding import PairEncoder
from crossrank.errors import DocumentTypeError, EmptyQueryError, InvalidArgumentError, ScoringError
from crossrank.model_source import resolve_model_source
from crossrank.results import RankedDocument, Ranking

__all__ = ["USE_DEFAULT", "Reranker"]

logger = logging.getLogger(__name__)


class _UseDefault(enum.Enum):
    TOKEN = "USE_DEFAULT"

    def __repr__(self) -> str:
        return "USE_DEFAULT"


#: Marks a per-call option as "not given": the Reranker's own default applies (``None`` has a
#: meaning of its own, e.g. ``top_n=None`` returns every document).
USE_DEFAULT = _UseDefault.TOKEN


class Reranker:
    """Scores (query, document) pairs with a cross-encoder and ranks the documents.

    The query and each document go through the model together (``[CLS] query [SEP] document
    [SEP]``), which is what makes a cross-encoder a better judge of relevance than the
    embeddings of stage-1 retrieval, and why it is used on the top ~20 candidates only.

    Args:
        model (str | os.PathLike): Hugging Face hub id or local directory of a cross-encoder with one
            output logit (the MS MARCO family: TinyBERT-L2, MiniLM-L2/L4/L6/L12, electra-base).
            Defaults to ``"cross-encoder/ms-marco-MiniLM-L6-v2"``.
        backend (str): Engine that runs the model: ``"torch"`` (sentence-transformers'
            ``CrossEncoder``) or ``"onnx"`` (ONNX Runtime; ``pip install 'crossrank[onnx]'``; the
            model is exported, optimised and cached on first use). Defaults to ``"torch"``.
        quantize (str, optional): With ``backend="onnx"``, ``"int8"`` runs dynamically quantised
            int8 weights (faster on CPU; check quality with ``crossrank eval``). Defaults to None.
        onnx_file (str, optional): With ``backend="onnx"``, a ready ONNX file inside the model
            folder or repo to load as is, e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``.
        threads (int, optional): Threads one forward pass may use. ONNX: the session's intra-op
            threads. torch: ``torch.set_num_threads`` for the duration of each forward pass (then
            put back, so other torch code keeps its own setting). Defaults to None: the engine's
            choice, the physical cores.
        device (str, optional): ``"cpu"``, ``"cuda"``, ``"cuda:1"``... Defaults to None: CUDA if
            available, else CPU.
        precision (str): With ``backend="torch"``, the compute precision: ``"fp32"``, ``"fp16"``
            (autocast, CUDA only), ``"bf16"`` (autocast) or ``"auto"``: fp16 on CUDA, fp32 on CPU.
            The ONNX backend runs fp32 (or int8 with ``quantize``). Defaults to ``"auto"``.
        max_length (int, optional): Most tokens per (query, document) pair, special tokens included.
            Longer pairs are cut **on the document side only**: the query is kept whole (a query
            over half of ``max_length`` is itself cut to half, with a warning). Defaults to None:
            the model's own limit (512 for the MS MARCO models).
        batch_size (int, optional): Most pairs per forward pass. Pairs are sorted by length and
            cut into the batches that pad least, so this is a ceiling, not a target. Defaults to
            None: the backend's choice, 32 on CPU, 128 on CUDA, 4 with ``quantize="int8"`` (int8
            activations share one scale per batch: small batches keep quality, at the same speed).
        long_documents (str): What to do with a document that doesn't fit ``max_length`` next to
            the query. ``"truncate"`` scores its beginning only (what other rerankers do; crossrank
            logs a warning the first time). ``"windows"`` splits it into overlapping windows, scores
            each with the query and keeps the best window's score (MaxP): slower on long documents,
            but a relevant passage at the end still counts. Documents that fit are scored exactly
            the same either way. Defaults to ``"truncate"``.
        stride (int, optional): With ``"windows"``, tokens shared by consecutive windows. Defaults
            to None: a quarter of the room a document has next to the query.
        local_files_only (bool): Never contact the hub: load a local directory or the HF cache.
            Defaults to False (``HF_HUB_OFFLINE=1`` has the same effect).
        top_n (int, optional): Default ``top_n`` of :meth:`rank`; None returns all. Defaults to 3.
        normalize (bool): Default ``normalize`` of :meth:`rank` / :meth:`score`. Defaults to False.
        min_score (float, optional): Default ``min_score`` of :meth:`rank`. Defaults to None.
        cache_folder (str, optional): Hugging Face cache to use. Defaults to the standard cache.
        revision (str, optional): Hub revision (branch, tag or commit) to load.
        token (str | bool, optional): Hub token for private or gated models.
        trust_remote_code (bool): Allow custom model code from the hub. Defaults to False.
        model_kwargs (dict, optional): Passed to the backend's model loader (e.g. ``{"torch_dtype": ...}``).

    Raises:
        ModelLoadError: The model can't be had (offline and not cached, unknown id, missing files);
            raised within seconds, with a message naming the model and the way out.
        UnsupportedModelError: The model has more than one output label.
        InvalidArgumentError: An option is out of range.

    Example:
        >>> from crossrank import Reranker
        >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> reranker.rank("how long does a flea live", [
        ...     "Fleas live two to three months, up to a year with a host.",
        ...     "The Eiffel Tower is in Paris.",
        ... ], top_n=1)  # doctest: +SKIP
        Ranking([RankedDocument(index=0, score=7.9..., text='Fleas live ...')], num_candidates=2, ...)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        backend: str = "torch",
        device: str | None = None,
        precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto",
        quantize: Literal["int8"] | None = None,
        onnx_file: str | None = None,
        threads: int | None = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        long_documents: Literal["truncate", "windows"] = "truncate",
        stride: int | None = None,
        local_files_only: bool = False,
        top_n: int | None = 3,
        normalize: bool = False,
        min_score: float | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch_size is not None:
            _check_positive_int("batch_size", batch_size)
        if max_length is not None:
            _check_positive_int("max_length", max_length)
        if stride is not None:
            _check_positive_int("stride", stride)
        onnx_options = {"quantize": quantize, "onnx_file": onnx_file}
        if backend != "onnx" and any(value is not None for value in onnx_options.values()):
            given = ", ".join(name for name, value in onnx_options.items() if value is not None)
            raise InvalidArgumentError(f"{given} apply to backend='onnx' only (backend={backend!r})")
        if threads is not None:
            _check_positive_int("threads", threads)
        if backend == "onnx" and precision not in ("auto", "fp32"):
            raise InvalidArgumentError(
                f"precision={precision!r} applies to backend='torch'; backend='onnx' runs fp32, or int8 "
                "with quantize='int8'"
            )
        if long_documents not in ("truncate", "windows"):
            raise InvalidArgumentError(
                f"long_documents must be 'truncate' or 'windows', got {long_documents!r}"
            )
        self.long_documents = long_documents
        self.stride = stride
        self._warned_truncation = False
        self.top_n = _check_top_n(top_n)
        self.normalize = bool(normalize)
        self.min_score = _check_min_score(min_score)
        self.model_name = os.fspath(model)
        self.local_files_only = local_files_only

        source = resolve_model_source(
            model,
            local_files_only=local_files_only,
            cache_folder=cache_folder,
            revision=revision,
            token=token,
        )
        self._backend: Backend = load_backend(
            backend,
            source,
            device=device,
            cache_folder=cache_folder,
            revision=revision,
            token=token,
            trust_remote_code=trust_remote_code,
            model_kwargs=model_kwargs,
            **(
                {k: v for k, v in onnx_options.items() if v is not None}
                if backend == "onnx"
                else {"precision": precision}
            ),
            threads=threads,
        )
        self.precision = precision
        self.batch_size = batch_size or self._backend.default_batch_size
        self.quantize, self.onnx_file, self.threads = quantize, onnx_file, threads
        limit = self._backend.max_positions
        if max_length is not None and max_length > limit:
            raise InvalidArgumentError(
                f"max_length={max_length} exceeds what model {self.model_name!r} accepts ({limit} tokens)."
            )
        self.max_length = max_length or limit
        self._encoder = PairEncoder(
            self._backend.tokenizer,
            max_length=self.max_length,
            pad_token_id=self._backend.pad_token_id,
            with_token_type_ids=self._backend.uses_token_type_ids,
        )

    @classmethod
    def from_config(
        cls, config: RerankerConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> Reranker:
        """Build a Reranker from a :class:`RerankerConfig` (or a dict of its fields).

        Args:
            config: The settings. None reads them from the environment (``CROSSRANK_*``).
            **overrides: Field values that replace the config's.

        Example:
            >>> cfg = RerankerConfig.from_yaml("app.yaml", section="reranker")  # doctest: +SKIP
            >>> reranker = Reranker.from_config(cfg)  # doctest: +SKIP
        """
        if isinstance(config, RerankerConfig):
            config = config.model_dump()
        # Building a new config validates the overrides too (and lets env fill what a dict leaves out).
        return cls(**RerankerConfig(**{**(config or {}), **overrides}).model_dump())

    def to_config(self) -> RerankerConfig:
        """The settings of this Reranker as a :class:`RerankerConfig` (to log, serialise, or rebuild it).

        Hub credentials and loader pass-throughs (``token``, ``cache_folder``, ``model_kwargs``...)
        are not part of it.
        """
        return RerankerConfig(
            model=self.model_name,
            backend=self.backend,  # type: ignore[arg-type]
            quantize=self.quantize,  # type: ignore[arg-type]
            onnx_file=self.onnx_file,
            threads=self.threads,
            device=self.device,
            precision=self.precision,  # type: ignore[arg-type]
            top_n=self.top_n,
            max_length=self.max_length,
            batch_size=self.batch_size,
            long_documents=self.long_documents,  # type: ignore[arg-type]
            stride=self.stride,
            normalize=self.normalize,
            min_score=self.min_score,
            local_files_only=self.local_files_only,
        )

    @property
    def backend(self) -> str:
        """Name of the backend running the model (``"torch"``)."""
        return self._backend.name

    @property
    def device(self) -> str:
        """Device the model runs on, e.g. ``"cpu"``."""
        return self._backend.device

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model_name!r}, backend={self.backend!r}, device={self.device!r}, "
            f"max_length={self.max_length}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------ scoring

    def score(
        self, query: str, documents: Iterable[str], *, normalize: bool | _UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Score every document against ``query``; the scores come back in input order.

        Args:
            query: The question or search text. Must be a non-blank ``str``.
            documents: Document texts. Not modified. Empty documents (``""``) are scored like any other.
            normalize: True gives ``sigmoid(logit)`` in 0-1 (what sentence-transformers'
                ``Sigmoid`` activation gives for these models); False the raw logits. Defaults to
                the Reranker's ``normalize``.

        Returns:
            One Python ``float`` per document. A pair's score can differ in the 6th-7th digit
            depending on the other pairs it is batched with (float32 arithmetic over different
            padded shapes); the same call on the same inputs always gives the same numbers.

        Raises:
            EmptyQueryError: ``query`` is empty or whitespace (a ``ValueError``).
            DocumentTypeError: ``query`` or a document is not a ``str`` (a ``TypeError`` naming its index).
        """
        return self._score(query, _check_inputs(query, documents), normalize)

    def rank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
    ) -> Ranking:
        """Rank ``documents`` by relevance to ``query``, best first.

        Args:
            query: The question or search text. Must be a non-blank ``str``.
            documents: Document texts. Not modified; duplicates are each scored and returned with
                their own index.
            top_n: How many to return; None returns all. Defaults to the Reranker's ``top_n`` (3).
            normalize: 0-1 scores instead of logits (see :meth:`score`). Defaults to the Reranker's.
            min_score: Drop documents scoring below this, on the scale ``normalize`` selects (a
                logit like ``0.0``, or a probability like ``0.5``). The number dropped is in
                ``Ranking.num_below_min_score`` and logged at INFO. Defaults to the Reranker's (None).

        Returns:
            A :class:`Ranking` (a ``list`` of :class:`RankedDocument`), sorted by score with ties
            in input order.

        Raises:
            EmptyQueryError: ``query`` is empty or whitespace.
            DocumentTypeError: ``query`` or a document is not a ``str``.
            InvalidArgumentError: ``top_n < 1`` or ``min_score`` is NaN.
        """
        return self._rank(query, _check_inputs(query, documents), top_n, normalize, min_score)

    async def ascore(
        self, query: str, documents: Iterable[str], *, normalize: bool | _UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Async :meth:`score`: runs in a worker thread, so the event loop keeps serving.

        Many coroutines may share one Reranker: tokenisation runs in parallel, and forward passes
        take turns on the model.
        """
        texts = _check_inputs(query, documents)  # fail fast, in the caller's frame
        return await asyncio.to_thread(self._score, query, texts, normalize)

    async def arank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
    ) -> Ranking:
        """Async :meth:`rank`: runs in a worker thread, so the event loop keeps serving."""
        texts = _check_inputs(query, documents)
        return await asyncio.to_thread(self._rank, query, texts, top_n, normalize, min_score)

    # ------------------------------------------------------------ internals
    # The public methods validate, then call these with a checked list of str.

    def _score(self, query: str, texts: list[str], normalize: bool | _UseDefault) -> list[float]:
        if not texts:
            return []
        logits = self._logits(query, texts).astype(np.float64)
        use_sigmoid = self.normalize if normalize is USE_DEFAULT else bool(normalize)
        if use_sigmoid:
            # In float64 so 0-1 scores of very confident pairs stay distinct (float32 rounds to 1.0 early).
            return (1.0 / (1.0 + np.exp(-logits))).tolist()
        return logits.tolist()

    def _rank(
        self,
        query: str,
        texts: list[str],
        top_n: int | _UseDefault | None,
        normalize: bool | _UseDefault,
        min_score: float | _UseDefault | None,
    ) -> Ranking:
        top_n = self.top_n if top_n is USE_DEFAULT else _check_top_n(top_n)
        min_score = self.min_score if min_score is USE_DEFAULT else _check_min_score(min_score)
        scores = self._score(query, texts, normalize)
        order = sorted(
            range(len(texts)), key=lambda i: -scores[i]
        )  # sorted() is stable: ties keep input order
        kept = order if min_score is None else [i for i in order if scores[i] >= min_score]
        below = len(order) - len(kept)
        if below:
            logger.info("min_score=%s dropped %d of %d documents", min_score, below, len(order))
        if top_n is not None:
            kept = kept[:top_n]
        return Ranking(
            [RankedDocument(index=i, score=scores[i], text=texts[i]) for i in kept],
            num_candidates=len(texts),
            num_below_min_score=below,
        )

    def _logits(self, query: str, texts: list[str]) -> np.ndarray:
        windows = self.long_documents == "windows"
        pairs = self._encoder.encode(query, texts, windows=windows, stride=self.stride)
        if pairs.num_cut and not windows and not self._warned_truncation:
            self._warned_truncation = True  # once per Reranker: loud enough to notice, not log spam
            logger.warning(
                "%d of %d documents are longer than max_length=%d with the query and were cut at the end; "
                "pass long_documents='windows' to score all of each document.",
                pairs.num_cut,
                len(texts),
                self.max_length,
            )
        # The first pair of every document is batched exactly as without windows, so documents that
        # fit score bit for bit the same in both modes; further windows follow in their own batches.
        logits = self._forward(pairs.first)
        if pairs.extra:
            np.maximum.at(logits, pairs.extra_owners, self._forward(pairs.extra))
        if not np.all(np.isfinite(logits)):
            bad = np.flatnonzero(~np.isfinite(logits)).tolist()
            raise ScoringError(f"Model {self.model_name!r} returned non-finite scores for documents {bad}.")
        return logits

    def _forward(self, encodings: Sequence[Encoding]) -> np.ndarray:
        logits = np.empty(len(encodings), dtype=np.float32)
        overhead = self._backend.batch_overhead_tokens
        for batch in self._encoder.batches(encodings, self.batch_size, overhead):
            logits[batch.positions] = self._backend.logits(batch)
        return logits


def _check_inputs(query: object, documents: object) -> list[str]:
    """Validate the query and documents; return the documents as a new list (same str objects)."""
    if not isinstance(query, str):
        raise DocumentTypeError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise EmptyQueryError("query is empty or whitespace; there is nothing to rank documents against")
    if isinstance(documents, (str, bytes)):
        raise DocumentTypeError(
            f"documents must be a list of str, got a single {type(documents).__name__}; wrap it in a list"
        )
    if not isinstance(documents, Iterable):
        raise DocumentTypeError(f"documents must be a list of str, got {type(documents).__name__}")
    texts = list(documents)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DocumentTypeError(
                f"documents[{i}] is {type(text).__name__}, expected str "
                "(pass the text of your objects, e.g. doc.page_content or node.get_content())"
            )
    return texts


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")


def _check_top_n(top_n: object) -> int | None:
    if top_n is not None:
        _check_positive_int("top_n", top_n)
    return top_n  # type: ignore[return-value]


def _check_min_score(min_score: object) -> float | None:
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or math.isnan(min_score):
        raise InvalidArgumentError(f"min_score must be a number or None, got {min_score!r}")
    return float(min_score)
