"""The :class:`Reranker`: one scoring path for every backend, every request shape, sync and async.

Every public method ends in :meth:`Reranker._logits`, which takes a batch of checked requests
``[(query, [text, ...]), ...]``: each request's pairs are encoded, all the pairs are cut into one
length-sorted batch plan, scored by the engine, split back per request, and long documents' windows
are reduced to their best score (MaxP). ``score``/``rank`` are the batch of one, ``score_pairs``
groups rows by query, and a server or a Ray actor calls ``score_batch`` with whatever requests
arrived together.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any, Literal, NamedTuple

import numpy as np
from tokenizers import Encoding, Tokenizer

from crossrank.backends import Backend, load_backend
from crossrank.config import DEFAULT_MODEL, Quantize, RerankerConfig, check_option
from crossrank.encoding import PairEncoder
from crossrank.errors import DocumentTypeError, EmptyQueryError, InvalidArgumentError, ScoringError
from crossrank.model_source import resolve_model_source
from crossrank.results import Ranking, ScoringStats
from crossrank.selection import SelectOptions, check_first_stage, load_token_counter, select

__all__ = ["USE_DEFAULT", "RerankRequest", "Reranker"]

logger = logging.getLogger(__name__)


class _UseDefault(enum.Enum):
    TOKEN = "USE_DEFAULT"

    def __repr__(self) -> str:
        return "USE_DEFAULT"


#: Marks a per-call option as "not given": the Reranker's own default applies (``None`` has a
#: meaning of its own, e.g. ``top_n=None`` returns every document).
USE_DEFAULT = _UseDefault.TOKEN


class RerankRequest(NamedTuple):
    """One query with its documents: an item of :meth:`Reranker.score_batch` / :meth:`Reranker.rank_batch`.

    A plain ``(query, documents)`` or ``(query, documents, first_stage_scores)`` tuple works the same.
    ``first_stage_scores`` (stage 1's score of each document, higher is better) is read by
    ``fusion`` only; without it, the input order is taken as stage 1's ranking.
    """

    query: str
    documents: Sequence[str]
    first_stage_scores: Sequence[float] | None = None


#: What the batch methods take: ``RerankRequest`` objects or ``(query, documents)`` tuples.
Request = RerankRequest | tuple[str, Iterable[str]] | tuple[str, Iterable[str], Sequence[float] | None]
#: A validated request: the query and a new list of the caller's ``str`` objects.
_Checked = tuple[str, list[str]]


def _option(name: str) -> property:
    """A read-only attribute backed by the Reranker's :class:`RerankerConfig` (documented there)."""
    field = RerankerConfig.model_fields[name]
    return property(lambda self: getattr(self._config, name), doc=field.description)


class Reranker:
    """Scores (query, document) pairs with a cross-encoder and ranks the documents.

    The query and each document go through the model together (``[CLS] query [SEP] document
    [SEP]``), which is what makes a cross-encoder a better judge of relevance than the
    embeddings of stage-1 retrieval, and why it is used on the top ~20 candidates only.

    Every option is declared once, in :class:`~crossrank.RerankerConfig` (types, defaults, help);
    the constructor validates its arguments with it and reads **no** environment variables (use
    :meth:`from_config` for that). The options, by group:

    Args:
        model (str | os.PathLike): Hugging Face hub id or local directory of a cross-encoder with one
            output logit (the MS MARCO family: TinyBERT-L2, MiniLM-L2/L4/L6/L12, electra-base).
            Defaults to ``"cross-encoder/ms-marco-MiniLM-L6-v2"``.
        revision, local_files_only, cache_folder, trust_remote_code: Where and how to load it from
            the hub (``local_files_only=True`` or ``HF_HUB_OFFLINE=1`` never touch the network).
        backend (str): Engine that runs the model: ``"torch"`` (sentence-transformers'
            ``CrossEncoder``), ``"onnx"`` (ONNX Runtime; ``pip install 'crossrank[onnx]'``; exported,
            optimised and cached on first use) or a name given to
            :func:`crossrank.backends.register_backend`. Defaults to ``"torch"``.
        device (str, optional): ``"cpu"``, ``"cuda"``, ``"cuda:1"``... Defaults to CUDA if present.
        precision (str): torch: ``"fp32"``, ``"fp16"`` (autocast, CUDA only), ``"bf16"`` or
            ``"auto"`` (fp16 on CUDA, fp32 on CPU).
        quantize (str, optional): onnx: ``"int8"`` runs dynamically quantised int8 (activation
            scales per batch, so requests never share a batch); ``"int8-static"`` fixes the scales
            at export (calibrated on the package's demo corpus), so a row's score is the same in any
            batch and requests share batches, as fp32's do.
        onnx_file (str, optional): onnx: a ready ONNX file in the model folder or repo, loaded as is.
        threads (int, optional): Threads of one forward pass. Defaults to the CPUs this process
            may use. torch's count is process-wide (see :mod:`crossrank.backends.torch_backend`).
        batch_size (int, optional): Most pairs per forward pass (a ceiling: pairs are sorted by
            length and cut into the batches that pad least). Defaults to the backend's: 32 on CPU,
            128 on CUDA, 4 with ``quantize="int8"``, 16 with ``"int8-static"``.
        max_length (int, optional): Most tokens per (query, document) pair. Longer pairs are cut
            **on the document side only** (a query over half of it is cut to half, with a
            warning). Defaults to the model's own limit (512 for the MS MARCO models).
        long_documents (str): ``"truncate"`` scores a long document's beginning (logged once);
            ``"windows"`` scores overlapping windows of it and keeps the best (MaxP). Documents
            that fit score bit for bit the same either way.
        stride (int, optional): windows: tokens shared by consecutive windows.
        window_length (int, optional): windows: tokens per window of a document that doesn't fit
            ``max_length`` (query included); default ``max_length``. Shorter windows find a relevant
            passage inside a long chunk better (``benchmarks/long_chunks.py``), at some cost.
        max_windows (int): windows: most windows per document (32: ~12,000 tokens for a 512-token
            model). A longer document is scored on its first ``max_windows`` windows and the rest is
            not read, with a warning: one huge chunk can't stall a request or a server.
        top_n, normalize, min_score: Defaults of :meth:`rank` (3, False, None).
        dedupe, max_tokens, fusion: Defaults of :meth:`rank` for what reaches the LLM (all off):
            skip near-duplicates of a better chunk (similarity threshold 0-1), keep the best chunks
            while they fit a token budget, fuse the reranker's order with stage 1's (``"rrf"`` or
            ``"weighted"``). See :mod:`crossrank.selection`.
        dedupe_similarity, budget_tokenizer, fusion_k, fusion_weight: How those work: ``"jaccard"``
            (word sets) or ``"ratio"`` (characters); the tokenizer that counts ``max_tokens`` (your
            LLM's hub id or folder; default: the reranker's); rrf's k (60); weighted's reranker share (0.5).
        token (str | bool, optional): Hub token for private or gated models (not part of the config).
        model_kwargs (dict, optional): Passed to the torch model loader (not part of the config).

    Raises:
        ModelLoadError: The model can't be had (offline and not cached, unknown id, missing files);
            raised within seconds, with a message naming the model and the way out.
        UnsupportedModelError: The model has more than one output label.
        InvalidArgumentError: An option is invalid, or options don't fit together (``quantize``
            with ``backend="torch"``); the message names the option.

    Example:
        >>> from crossrank import Reranker
        >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
        >>> ranking = reranker.rank("how long does a flea live", [
        ...     "The Eiffel Tower is in Paris.",
        ...     "Fleas live two to three months, up to a year with a host.",
        ... ], top_n=1)
        >>> ranking[0].index, ranking[0].text
        (1, 'Fleas live two to three months, up to a year with a host.')
        >>> ranking.num_candidates, type(ranking[0].score)
        (2, <class 'float'>)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        local_files_only: bool = False,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        backend: str | Backend = "torch",
        device: str | None = None,
        precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto",
        quantize: Quantize | None = None,
        onnx_file: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        long_documents: Literal["truncate", "windows"] = "truncate",
        stride: int | None = None,
        max_windows: int = 32,
        window_length: int | None = None,
        top_n: int | None = 3,
        normalize: bool = False,
        min_score: float | None = None,
        dedupe: float | None = None,
        max_tokens: int | None = None,
        fusion: Literal["rrf", "weighted"] | None = None,
        dedupe_similarity: Literal["jaccard", "ratio"] = "jaccard",
        budget_tokenizer: str | None = None,
        fusion_k: int = 60,
        fusion_weight: float = 0.5,
        token: str | bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        arguments = {name: value for name, value in locals().items() if name in RerankerConfig.model_fields}
        if not isinstance(backend, str):  # a ready engine: Reranker(name, backend=engine)
            arguments.pop("backend")
            engine = _check_engine(backend)
            config = _engine_config(engine, arguments)
        else:
            config = RerankerConfig.from_arguments(**arguments)
            source = resolve_model_source(
                config.model,
                local_files_only=config.local_files_only,
                cache_folder=config.cache_folder,
                revision=config.revision,
                token=token,
            )
            engine_options = (
                {"quantize": config.quantize, "onnx_file": config.onnx_file}
                if config.backend == "onnx"
                else {"precision": config.precision}
            )
            engine = load_backend(
                config.backend,
                source,
                device=config.device,
                threads=config.threads,
                cache_folder=config.cache_folder,
                revision=config.revision,
                token=token,
                trust_remote_code=config.trust_remote_code,
                model_kwargs=model_kwargs,
                **{name: value for name, value in engine_options.items() if value is not None},
            )
        self._setup(engine, config)

    def _setup(self, engine: Backend, config: RerankerConfig) -> None:
        limit = engine.max_positions
        if config.max_length is not None and config.max_length > limit:
            raise InvalidArgumentError(
                f"max_length={config.max_length} exceeds what model {config.model!r} accepts "
                f"({limit} tokens)."
            )
        if config.window_length is not None and config.window_length > (config.max_length or limit):
            raise InvalidArgumentError(
                f"window_length={config.window_length} exceeds max_length={config.max_length or limit}"
            )
        self._backend = engine
        # The config as resolved: what this Reranker really runs with (to log, or to rebuild it).
        self._config = config.model_copy(
            update={
                "device": engine.device,
                "max_length": config.max_length or limit,
                "batch_size": config.batch_size or engine.default_batch_size,
            }
        )
        self._encoder = PairEncoder(
            engine.tokenizer,
            max_length=self._config.max_length,
            pad_token_id=engine.pad_token_id,
            with_token_type_ids=engine.uses_token_type_ids,
        )
        self._warned_truncation = False
        self._budget_counter: Callable[[str], int] | None = None
        if config.budget_tokenizer is not None:  # loaded now: a bad name fails here, not mid-request
            self._budget_counter = load_token_counter(
                config.budget_tokenizer,
                local_files_only=config.local_files_only,
                cache_folder=config.cache_folder,
            )

    @classmethod
    def from_config(
        cls, config: RerankerConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> Reranker:
        """Build a Reranker from a :class:`RerankerConfig` (or a dict of its fields).

        Unlike the constructor, this reads the environment (``CROSSRANK_*``) for fields that
        neither ``config`` nor ``overrides`` set.

        Args:
            config: The settings. None reads them all from the environment.
            **overrides: Field values that replace the config's; ``token`` and ``model_kwargs``
                are passed to the constructor as they are.

        Raises:
            pydantic.ValidationError: A value is invalid (the message names the field).

        Example:
            >>> cfg = RerankerConfig(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_n=5)
            >>> Reranker.from_config(cfg, device="cpu").top_n
            5
        """
        loader_only = {name: overrides.pop(name) for name in ("token", "model_kwargs") if name in overrides}
        if isinstance(config, RerankerConfig):
            config = config.model_dump(exclude_unset=True)
        # A new config validates the overrides too, and lets the environment fill what's left out.
        return cls(**RerankerConfig(**{**(config or {}), **overrides}).model_dump(), **loader_only)

    @classmethod
    def from_backend(cls, engine: Backend, *, model: str | None = None, **options: Any) -> Reranker:
        """A Reranker over a ready engine: your own :class:`~crossrank.backends.Backend`, or a wrapper.

        Args:
            engine: Anything with the attributes and ``logits(batch)`` method of
                :class:`~crossrank.backends.Backend`.
            model: Name to report (``model_name``, ``to_config``). Defaults to the engine's
                ``model_name`` attribute if it has one, else its ``name``.
            **options: The options that don't load anything: ``batch_size``, ``max_length``,
                ``long_documents``, ``stride``, ``top_n``, ``normalize``, ``min_score``.

        Raises:
            InvalidArgumentError: ``engine`` lacks part of the interface, or an option is invalid
                or only applies when loading a model.

        Example:
            >>> from crossrank import Reranker
            >>> scored = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> again = Reranker.from_backend(scored.engine, top_n=1)
            >>> again.score("flea", ["fleas live a year"]) == scored.score("flea", ["fleas live a year"])
            True
        """
        engine = _check_engine(engine)
        name = model or getattr(engine, "model_name", None) or engine.name
        self = cls.__new__(cls)
        self._setup(engine, _engine_config(engine, {"model": name, **options}))
        return self

    def to_config(self) -> RerankerConfig:
        """The settings of this Reranker as a :class:`RerankerConfig`, as resolved at load.

        ``device``, ``batch_size`` and ``max_length`` hold the values in use; ``token`` and
        ``model_kwargs`` are not part of it. ``Reranker.from_config(r.to_config())`` loads the same.
        """
        return self._config

    # ------------------------------------------------------------------ attributes

    model_name = _option("model")
    top_n = _option("top_n")
    normalize = _option("normalize")
    min_score = _option("min_score")
    dedupe = _option("dedupe")
    max_tokens = _option("max_tokens")
    fusion = _option("fusion")
    batch_size = _option("batch_size")
    max_length = _option("max_length")
    long_documents = _option("long_documents")
    stride = _option("stride")
    max_windows = _option("max_windows")
    precision = _option("precision")
    quantize = _option("quantize")
    onnx_file = _option("onnx_file")
    threads = _option("threads")
    local_files_only = _option("local_files_only")

    @property
    def backend(self) -> str:
        """Name of the backend running the model (``"torch"``)."""
        return self._backend.name

    @property
    def engine(self) -> Backend:
        """The :class:`~crossrank.backends.Backend` running the model (to wrap it, or read its ``path``)."""
        return self._backend

    @property
    def device(self) -> str:
        """Device the model runs on, e.g. ``"cpu"``."""
        return self._backend.device

    @property
    def encoder(self) -> PairEncoder:
        """The :class:`~crossrank.encoding.PairEncoder` that turns (query, documents) into model inputs."""
        return self._encoder

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's fast tokenizer (crossrank encodes with a private copy; don't change its settings)."""
        return self._backend.tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone, without the special tokens a pair adds.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> reranker.count_tokens("how long does a flea live")
            6
        """
        if not isinstance(text, str):
            raise DocumentTypeError(f"text must be a str, got {type(text).__name__}")
        return self._encoder.count_tokens(text)

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model_name!r}, backend={self.backend!r}, device={self.device!r}, "
            f"max_length={self.max_length}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------ one request

    def score(
        self, query: str, documents: Iterable[str], *, normalize: bool | _UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Score every document against ``query``; the scores come back in input order.

        Args:
            query: The question or search text: a ``str`` with at least one token.
            documents: Document texts, in a list, tuple or other ordered iterable. Not modified.
                Empty documents (``""``) are scored like any other.
            normalize: True gives ``sigmoid(logit)`` in 0-1 (what sentence-transformers'
                ``Sigmoid`` activation gives for these models); False the raw logits. Defaults to
                the Reranker's ``normalize``.

        Returns:
            One Python ``float`` per document. Identical documents get the identical score. A
            pair's score can differ in the 6th-7th digit with the other pairs it is batched with
            (float32 over different padded shapes); the same inputs always give the same numbers.

        Raises:
            EmptyQueryError: ``query`` has no tokens (empty, whitespace, zero-width characters).
            DocumentTypeError: ``query`` or a document is not a ``str`` (a ``TypeError`` naming its
                index), or ``documents`` is unordered (a set or a dict).

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> scores = reranker.score("flea", ["fleas live a year", "Paris"], normalize=True)
            >>> scores[0] > scores[1], all(0 < s < 1 for s in scores)
            (True, True)
        """
        use_sigmoid = self._normalize_option(normalize)
        return self._scores([self._check_request(query, documents)], use_sigmoid)[0]

    def rank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
        dedupe: float | _UseDefault | None = USE_DEFAULT,
        max_tokens: int | _UseDefault | None = USE_DEFAULT,
        fusion: Literal["rrf", "weighted"] | _UseDefault | None = USE_DEFAULT,
        first_stage_scores: Sequence[float] | None = None,
    ) -> Ranking:
        """Rank ``documents`` by relevance to ``query``, best first.

        Args:
            query: The question or search text: a ``str`` with at least one token.
            documents: Document texts. Not modified; duplicates are each returned with their own index.
            top_n: How many to return; None returns all. Defaults to the Reranker's ``top_n`` (3).
            normalize: 0-1 scores instead of logits (see :meth:`score`). Defaults to the Reranker's.
            min_score: Drop documents scoring below this, on the scale ``normalize`` selects (a
                logit like ``0.0``, or a probability like ``0.5``). The number dropped is in
                ``Ranking.num_below_min_score`` and logged at INFO. Defaults to the Reranker's (None).
            dedupe: Skip a document whose similarity (``dedupe_similarity``) to a better one
                already kept is at least this, 0-1; counted in ``Ranking.num_duplicates``. None: off.
            max_tokens: Return the best documents while their tokens (counted by
                ``budget_tokenizer``, default the model's) add up to at most this; the best one is
                returned even if it alone is longer. ``top_n`` still caps the count. None: off.
            fusion: Order by the reranker's ranking fused with stage 1's: ``"rrf"`` (reciprocal
                rank, ``fusion_k``) or ``"weighted"`` (``fusion_weight``). Stage 1 is
                ``first_stage_scores``, or else the input order. None: the reranker's order.
            first_stage_scores: Stage 1's score of each document (higher is better), for fusion.

        Returns:
            A :class:`Ranking` (a ``list`` of :class:`RankedDocument`), sorted by score (with
            fusion: by ``fused_score``) with ties in input order; blank documents come last.

        Raises:
            EmptyQueryError: ``query`` has no tokens.
            DocumentTypeError: ``query`` or a document is not a ``str``.
            InvalidArgumentError: An option is invalid (``top_n < 1``, NaN ``min_score``,
                ``dedupe`` outside 0-1, ``first_stage_scores`` of the wrong length...).

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> docs = ["Fleas live a year.", "fleas live a year", "Paris is in France."]
            >>> ranking = reranker.rank("how long do fleas live", docs, top_n=2, dedupe=0.8)
            >>> ranking[1].text, ranking.num_duplicates
            ('Paris is in France.', 1)
        """
        options, use_sigmoid = self._rank_options(top_n, normalize, min_score, dedupe, max_tokens, fusion)
        request = self._check_request(query, documents)
        first_stage = check_first_stage(first_stage_scores, len(request[1]))
        return self._rankings([request], [first_stage], options, use_sigmoid)[0]

    async def ascore(
        self, query: str, documents: Iterable[str], *, normalize: bool | _UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Async :meth:`score`: runs in a worker thread, so the event loop keeps serving.

        Many coroutines may share one Reranker: tokenisation runs in parallel, and forward passes
        take turns on the model. Bad input raises here, in the caller's frame.
        """
        use_sigmoid = self._normalize_option(normalize)
        request = self._check_request(query, documents)
        return (await asyncio.to_thread(self._scores, [request], use_sigmoid))[0]

    async def arank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
        dedupe: float | _UseDefault | None = USE_DEFAULT,
        max_tokens: int | _UseDefault | None = USE_DEFAULT,
        fusion: Literal["rrf", "weighted"] | _UseDefault | None = USE_DEFAULT,
        first_stage_scores: Sequence[float] | None = None,
    ) -> Ranking:
        """Async :meth:`rank`: runs in a worker thread, so the event loop keeps serving."""
        options, use_sigmoid = self._rank_options(top_n, normalize, min_score, dedupe, max_tokens, fusion)
        request = self._check_request(query, documents)
        first_stage = check_first_stage(first_stage_scores, len(request[1]))
        return (await asyncio.to_thread(self._rankings, [request], [first_stage], options, use_sigmoid))[0]

    # ------------------------------------------------------------------ many requests

    def score_batch(
        self,
        requests: Iterable[Request],
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        stats: ScoringStats | None = None,
    ) -> list[list[float]]:
        """Score many ``(query, documents)`` requests together: one batch plan for all their pairs.

        This is the seam for servers and batch jobs: pairs of different requests share forward
        passes, so 43 requests of 20 documents cost about what 860 pairs cost, not 43 calls.

        Args:
            requests: :class:`RerankRequest` objects or ``(query, documents)`` tuples.
            normalize: As in :meth:`score`.
            stats: A :class:`ScoringStats` to add this call's pairs, tokens and forward passes to.

        Returns:
            For each request, its scores in input order, as :meth:`score` would give them. A
            request's scores don't depend on the other requests beyond float rounding (fp32:
            within 1e-5); engines whose scores move with their batch-mates (ONNX int8) never mix
            requests in a batch, so there a request scores exactly as alone.

        Raises:
            EmptyQueryError, DocumentTypeError: As in :meth:`score`; the message names the request
                (``requests[3]: documents[2] is int``). No request is scored if one is bad.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> batch = reranker.score_batch([("flea", ["fleas live a year", "Paris"]), ("tower", ["Paris"])])
            >>> [len(scores) for scores in batch]
            [2, 1]
            >>> abs(batch[1][0] - reranker.score("tower", ["Paris"])[0]) < 1e-5
            True
        """
        use_sigmoid = self._normalize_option(normalize)
        return self._scores(self._check_requests(requests), use_sigmoid, stats)

    def rank_batch(
        self,
        requests: Iterable[Request],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
        dedupe: float | _UseDefault | None = USE_DEFAULT,
        max_tokens: int | _UseDefault | None = USE_DEFAULT,
        fusion: Literal["rrf", "weighted"] | _UseDefault | None = USE_DEFAULT,
    ) -> list[Ranking]:
        """Rank many requests together (see :meth:`score_batch`); one :class:`Ranking` per request.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> rankings = reranker.rank_batch([("flea", ["Paris", "fleas live a year"])], top_n=1)
            >>> rankings[0][0].index
            1
        """
        options, use_sigmoid = self._rank_options(top_n, normalize, min_score, dedupe, max_tokens, fusion)
        checked, first_stages = self._check_ranked_requests(requests)
        return self._rankings(checked, first_stages, options, use_sigmoid)

    async def ascore_batch(
        self,
        requests: Iterable[Request],
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        stats: ScoringStats | None = None,
    ) -> list[list[float]]:
        """Async :meth:`score_batch`: runs in a worker thread; bad input raises in the caller's frame."""
        use_sigmoid = self._normalize_option(normalize)
        checked = self._check_requests(requests)
        return await asyncio.to_thread(self._scores, checked, use_sigmoid, stats)

    async def arank_batch(
        self,
        requests: Iterable[Request],
        top_n: int | _UseDefault | None = USE_DEFAULT,
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
        min_score: float | _UseDefault | None = USE_DEFAULT,
        dedupe: float | _UseDefault | None = USE_DEFAULT,
        max_tokens: int | _UseDefault | None = USE_DEFAULT,
        fusion: Literal["rrf", "weighted"] | _UseDefault | None = USE_DEFAULT,
    ) -> list[Ranking]:
        """Async :meth:`rank_batch`."""
        options, use_sigmoid = self._rank_options(top_n, normalize, min_score, dedupe, max_tokens, fusion)
        checked, first_stages = self._check_ranked_requests(requests)
        return await asyncio.to_thread(self._rankings, checked, first_stages, options, use_sigmoid)

    def score_pairs(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        normalize: bool | _UseDefault = USE_DEFAULT,
    ) -> list[float]:
        """Score row-aligned pairs ``(queries[i], texts[i])``: datasets with one row per pair.

        Rows are grouped by query and scored through :meth:`score_batch`, so a query repeated
        over many rows is tokenised once and its pairs share batches.

        Returns:
            One float per row, in row order.

        Raises:
            InvalidArgumentError: ``queries`` and ``texts`` differ in length.
            EmptyQueryError, DocumentTypeError: A bad row (the message names it).

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> rows = reranker.score_pairs(["flea", "flea"], ["fleas live a year", "Paris"])
            >>> rows == reranker.score("flea", ["fleas live a year", "Paris"])
            True
        """
        use_sigmoid = self._normalize_option(normalize)
        queries, texts = _as_list(queries, "queries"), _as_list(texts, "texts")
        if len(queries) != len(texts):
            raise InvalidArgumentError(
                f"queries and texts must be row-aligned; got {len(queries)} queries and {len(texts)} texts"
            )
        rows_of: dict[str, list[int]] = {}
        for row, (query, text) in enumerate(zip(queries, texts, strict=True)):
            self.check_query(query, where=f"queries[{row}]")
            if not isinstance(text, str):
                raise DocumentTypeError(f"texts[{row}] is {type(text).__name__}, expected str")
            rows_of.setdefault(query, []).append(row)
        requests = [(query, [texts[row] for row in rows]) for query, rows in rows_of.items()]
        scores = [0.0] * len(texts)
        for rows, request_scores in zip(rows_of.values(), self._scores(requests, use_sigmoid), strict=True):
            for row, score in zip(rows, request_scores, strict=True):
                scores[row] = score
        return scores

    # ------------------------------------------------------------------ checks
    # Every public method checks its input here, in the caller's frame, before any work.

    def check_query(self, query: object, *, where: str = "query") -> str:
        """Return ``query`` if the model can rank against it; the check every method runs first.

        A server or an adapter that queues work, or changes the query (prefixes), calls this to
        refuse a bad query up front with crossrank's own rule and message.

        Raises:
            DocumentTypeError: ``query`` is not a ``str``.
            EmptyQueryError: it has no tokens: empty, whitespace, or only control or zero-width
                characters (which pass ``str.strip()`` but give the model nothing to read).

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> reranker.check_query("\u200b")
            Traceback (most recent call last):
            ...
            crossrank.errors.EmptyQueryError: query has no tokens the model can read ...
        """
        if not isinstance(query, str):
            raise DocumentTypeError(f"{where} must be a str, got {type(query).__name__}")
        if not query.strip() or self._encoder.count_tokens(query) == 0:
            raise EmptyQueryError(
                f"{where} has no tokens the model can read (empty, whitespace, or only control or "
                f"zero-width characters: {query[:20]!r}); there is nothing to rank documents against"
            )
        return query

    def _check_request(self, query: object, documents: object, where: str = "") -> _Checked:
        query = self.check_query(query, where=f"{where}query" if where else "query")
        what = f"{where}documents"
        if isinstance(documents, (str, bytes)):
            raise DocumentTypeError(
                f"{what} must be a list of str, got a single {type(documents).__name__}; wrap it in a list"
            )
        if isinstance(documents, (Set, Mapping)):
            raise DocumentTypeError(
                f"{what} must be ordered (a list or tuple), got a {type(documents).__name__}: results "
                "carry each document's index, which an unordered collection doesn't have"
            )
        if not isinstance(documents, Iterable):
            raise DocumentTypeError(f"{what} must be a list of str, got {type(documents).__name__}")
        texts = list(documents)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DocumentTypeError(
                    f"{what}[{i}] is {type(text).__name__}, expected str "
                    "(pass the text of your objects, e.g. doc.page_content or node.get_content())"
                )
        return query, texts

    def _check_requests(self, requests: object) -> list[_Checked]:
        return self._check_ranked_requests(requests)[0]

    def _check_ranked_requests(self, requests: object) -> tuple[list[_Checked], list[list[float] | None]]:
        if isinstance(requests, (str, bytes, Set, Mapping)) or not isinstance(requests, Iterable):
            raise DocumentTypeError(
                f"requests must be a list of (query, documents) pairs, got {type(requests).__name__}"
            )
        checked, first_stages = [], []
        for i, request in enumerate(requests):
            if not isinstance(request, tuple) or len(request) not in (2, 3):
                raise DocumentTypeError(
                    f"requests[{i}] must be a (query, documents) pair or a RerankRequest, "
                    f"got {type(request).__name__}"
                )
            checked.append(self._check_request(*request[:2], where=f"requests[{i}]: "))
            first_stage = request[2] if len(request) == 3 else None
            where = f"requests[{i}]: first_stage_scores"
            first_stages.append(check_first_stage(first_stage, len(checked[-1][1]), where=where))
        return checked, first_stages

    def _normalize_option(self, normalize: object) -> bool:
        if normalize is USE_DEFAULT:
            return self.normalize
        if not isinstance(normalize, (bool, np.bool_)):
            raise InvalidArgumentError(f"normalize must be True or False, got {normalize!r}")
        return bool(normalize)

    def _rank_options(
        self,
        top_n: object,
        normalize: object,
        min_score: object,
        dedupe: object,
        max_tokens: object,
        fusion: object,
    ) -> tuple[SelectOptions, bool]:
        """The selection of one call: the given options checked, the others the Reranker's."""
        config = self._config
        options = SelectOptions(
            top_n=config.top_n if top_n is USE_DEFAULT else _check_top_n(top_n),
            min_score=config.min_score if min_score is USE_DEFAULT else _check_min_score(min_score),
            dedupe=config.dedupe if dedupe is USE_DEFAULT else check_option("dedupe", dedupe),
            max_tokens=config.max_tokens
            if max_tokens is USE_DEFAULT
            else check_option("max_tokens", max_tokens),
            fusion=config.fusion if fusion is USE_DEFAULT else check_option("fusion", fusion),
            dedupe_similarity=config.dedupe_similarity,
            fusion_k=config.fusion_k,
            fusion_weight=config.fusion_weight,
        )
        return options, self._normalize_option(normalize)

    def budget_tokens(self, text: str) -> int:
        """Tokens of ``text`` as ``max_tokens`` counts them: by ``budget_tokenizer``, else the model's.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> reranker.budget_tokens("how long does a flea live")
            6
        """
        if self._budget_counter is not None:
            if not isinstance(text, str):
                raise DocumentTypeError(f"text must be a str, got {type(text).__name__}")
            return self._budget_counter(text)
        return self.count_tokens(text)

    # ------------------------------------------------------------------ the one scoring path
    # Below here inputs are checked: a list of (query, list of str).

    def _scores(
        self, requests: list[_Checked], use_sigmoid: bool, stats: ScoringStats | None = None
    ) -> list[list[float]]:
        scores = []
        for logits in self._logits(requests, stats):
            logits = logits.astype(np.float64)
            # In float64 so 0-1 scores of very confident pairs stay distinct (float32 rounds to 1.0 early).
            scores.append((1.0 / (1.0 + np.exp(-logits)) if use_sigmoid else logits).tolist())
        return scores

    def _rankings(
        self,
        requests: list[_Checked],
        first_stages: list[list[float] | None],
        options: SelectOptions,
        use_sigmoid: bool,
    ) -> list[Ranking]:
        rankings = []
        all_scores = self._scores(requests, use_sigmoid)
        for (_, texts), first_stage, scores in zip(requests, first_stages, all_scores, strict=True):
            ranking = select(texts, scores, options, first_stage=first_stage, count_tokens=self.budget_tokens)
            if ranking.num_below_min_score:
                below = ranking.num_below_min_score
                logger.info("min_score=%s dropped %d of %d documents", options.min_score, below, len(texts))
            if ranking.num_duplicates:
                duplicates = ranking.num_duplicates
                logger.info("dedupe=%s skipped %d near-duplicate documents", options.dedupe, duplicates)
            rankings.append(ranking)
        return rankings

    def _logits(self, requests: list[_Checked], stats: ScoringStats | None = None) -> list[np.ndarray]:
        """Raw float32 logits per request, in input order: every request's pairs in one batch plan."""
        windows = self.long_documents == "windows"
        firsts: list[Encoding] = []  # one pair per distinct document of every request
        extras: list[Encoding] = []  # further windows of long documents
        extra_owners: list[int] = []  # for each extra window, its position in `firsts`
        first_groups: list[range] = []  # each request's slice of `firsts`
        extra_groups: list[range] = []
        inverses: list[list[int]] = []  # for each document, its distinct text's position in the request
        num_cut = num_capped = 0
        for query, texts in requests:
            distinct: dict[str, int] = {}  # identical texts are scored once and share the score
            inverses.append([distinct.setdefault(text, len(distinct)) for text in texts])
            offset, extra_offset = len(firsts), len(extras)
            if distinct:
                pairs = self._encoder.encode(
                    query,
                    list(distinct),
                    windows=windows,
                    stride=self.stride,
                    max_windows=self.max_windows,
                    window_length=self._config.window_length,
                )
                num_capped += pairs.num_capped
                firsts += pairs.first
                extras += pairs.extra
                extra_owners += [offset + owner for owner in pairs.extra_owners]
                num_cut += pairs.num_cut
            first_groups.append(range(offset, len(firsts)))
            extra_groups.append(range(extra_offset, len(extras)))
        if num_cut and not windows and not self._warned_truncation:
            self._warned_truncation = True  # once per Reranker: loud enough to notice, not log spam
            logger.warning(
                "%d of %d documents are longer than max_length=%d with the query and were cut at the end; "
                "set long_documents='windows' (`--long-documents windows`, CROSSRANK_LONG_DOCUMENTS) "
                "to score all of each document.",
                num_cut,
                len(firsts),
                self.max_length,
            )
        if num_capped:
            logger.warning(
                "%d documents are longer than max_windows=%d windows; only their first %d windows were "
                "scored (raise max_windows to read more of them, at one forward pass per window).",
                num_capped,
                self.max_windows,
                self.max_windows,
            )
        # An engine whose rows depend on their batch-mates (int8) plans each request on its own, so
        # a request scores exactly as alone; otherwise every request's pairs share one plan.
        mix = getattr(self._backend, "batch_invariant", True)
        # The first pair of every document is batched exactly as without windows, so documents that
        # fit score bit for bit the same in both modes; further windows follow in their own batches.
        logits = self._forward(firsts, [range(len(firsts))] if mix else first_groups, stats)
        if extras:
            np.maximum.at(
                logits,
                extra_owners,
                self._forward(extras, [range(len(extras))] if mix else extra_groups, stats),
            )
        results = []
        for i, (group, inverse) in enumerate(zip(first_groups, inverses, strict=True)):
            request_logits = logits[group.start : group.stop][inverse] if inverse else logits[:0]
            if not np.all(np.isfinite(request_logits)):
                bad = np.flatnonzero(~np.isfinite(request_logits)).tolist()
                where = f"requests[{i}]: " if len(requests) > 1 else ""
                raise ScoringError(
                    f"Model {self.model_name!r} returned non-finite scores for {where}documents {bad}."
                )
            results.append(request_logits)
        return results

    def _forward(
        self, encodings: Sequence[Encoding], groups: list[range], stats: ScoringStats | None = None
    ) -> np.ndarray:
        """Logits of ``encodings``; each group is planned into batches on its own."""
        logits = np.empty(len(encodings), dtype=np.float32)
        overhead = self._backend.batch_overhead_tokens
        for group in groups:
            if not group:
                continue
            members = encodings[group.start : group.stop]
            for batch in self._encoder.batches(members, self.batch_size, overhead):
                logits[group.start + batch.positions] = self._backend.logits(batch)
                if stats is not None:
                    rows, width = batch.input_ids.shape
                    stats.pairs += rows
                    stats.tokens += int(batch.attention_mask.sum())
                    stats.padded_tokens += rows * width
                    stats.forward_passes += 1
                    stats.batch_rows.append(rows)
        return logits


_ENGINE_ATTRIBUTES = (
    "name",
    "device",
    "tokenizer",
    "max_positions",
    "pad_token_id",
    "uses_token_type_ids",
    "batch_overhead_tokens",
    "default_batch_size",
    "logits",
)
#: Options that load a model; a ready engine has made these choices already.
_LOADING_OPTIONS = (
    "revision",
    "local_files_only",
    "cache_folder",
    "trust_remote_code",
    "device",
    "precision",
    "quantize",
    "onnx_file",
    "threads",
)


def _check_engine(engine: object) -> Backend:
    missing = [name for name in _ENGINE_ATTRIBUTES if not hasattr(engine, name)]
    if missing:
        raise InvalidArgumentError(
            f"backend must be a backend name or an engine with the crossrank.backends.Backend interface; "
            f"{type(engine).__name__} lacks {', '.join(missing)}"
        )
    return engine  # type: ignore[return-value]


def _engine_config(engine: Backend, options: dict[str, Any]) -> RerankerConfig:
    """The config of a Reranker over a ready engine: its options checked, the engine's name and device."""
    given = sorted(
        name
        for name in _LOADING_OPTIONS
        if name in options and options[name] != RerankerConfig.model_fields[name].default
    )
    if given:
        raise InvalidArgumentError(f"{', '.join(given)} apply when loading a model, not to a ready engine")
    options = {name: value for name, value in options.items() if name not in _LOADING_OPTIONS}
    checked = RerankerConfig.from_arguments(**options)
    return RerankerConfig.model_construct(
        **{**checked.model_dump(), "backend": engine.name, "device": engine.device}
    )


def _as_list(values: object, what: str) -> list[Any]:
    if isinstance(values, (str, bytes, Set, Mapping)) or not isinstance(values, Iterable):
        raise DocumentTypeError(f"{what} must be a list, got {type(values).__name__}")
    return list(values)


def _check_top_n(top_n: object) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, numbers.Integral) or top_n < 1:
        raise InvalidArgumentError(f"top_n must be a positive int or None, got {top_n!r}")
    return int(top_n)


def _check_min_score(min_score: object) -> float | None:
    if min_score is None:
        return None
    if (
        isinstance(min_score, (bool, np.bool_))
        or not isinstance(min_score, numbers.Real)
        or math.isnan(min_score)
    ):
        raise InvalidArgumentError(f"min_score must be a number (not NaN) or None, got {min_score!r}")
    return float(min_score)
