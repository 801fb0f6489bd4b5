"""The :class:`Reranker`: the front of crossrank, one scoring path behind every method, sync and async.

The front holds no rule of its own: it loads through :mod:`crossrank.loading`, checks every input
with :mod:`crossrank.validation`, resolves a call's options with :mod:`crossrank.rank_options`, and
every public method ends in :class:`crossrank.scoring.Scorer`, which takes a batch of checked
requests ``[(query, [text, ...]), ...]`` and scores all their pairs in one length-sorted batch
plan. ``score``/``rank`` are the batch of one, ``score_pairs`` groups rows by query, and a server or
a Ray actor calls ``score_batch`` with whatever requests arrived together.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from tokenizers import Tokenizer
from typing_extensions import Unpack

from crossrank.backends import Backend
from crossrank.config import DEFAULT_MODEL, Quantize, RerankerConfig
from crossrank.encoding import PairEncoder
from crossrank.errors import DocumentTypeError, InvalidArgumentError
from crossrank.families import CROSS_ENCODER
from crossrank.loading import assemble, load_engine, ready_engine_config
from crossrank.rank_options import USE_DEFAULT, RankArguments, RankOptions, UseDefault
from crossrank.results import Ranking, ScoringStats
from crossrank.scoring import rank_logits, to_scores
from crossrank.selection import check_first_stage, check_scores
from crossrank.validation import (
    CheckedRequest,
    check_documents,
    check_engine,
    check_normalize,
    check_pairs,
    check_query,
    check_requests,
)

__all__ = ["USE_DEFAULT", "RerankRequest", "Reranker"]

logger = logging.getLogger(__name__)


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


def _option(name: str) -> property:
    """A read-only attribute backed by the Reranker's :class:`RerankerConfig` (documented there)."""
    field = RerankerConfig.model_fields[name]
    return property(lambda self: getattr(self._config, name), doc=field.description)


class Reranker:
    """Scores (query, document) pairs with a cross-encoder (or an LLM reranker) and ranks the documents.

    The query and each document go through the model together (``[CLS] query [SEP] document
    [SEP]``, or an LLM reranker's prompt): a better judge of relevance than stage 1's embeddings,
    used on its top ~20 only.
    Every option is declared once, in :class:`~crossrank.RerankerConfig` (types, defaults, help);
    the constructor validates its arguments with it and reads **no** environment variables
    (:meth:`from_config` does).

    Args:
        model: Hugging Face hub id or local directory of a cross-encoder with one output logit
            (default ``"cross-encoder/ms-marco-MiniLM-L6-v2"``), or of an LLM reranker
            (``Qwen/Qwen3-Reranker-0.6B``, ``mixedbread-ai/mxbai-rerank-base-v2``).
        family: ``"cross-encoder"``, ``"qwen3-reranker"`` or ``"mxbai-rerank-v2"``
            (:mod:`crossrank.families`); default: told from the model (LLM rerankers by name).
        revision, local_files_only, cache_folder, trust_remote_code: Where and how to load it
            (``local_files_only=True`` or ``HF_HUB_OFFLINE=1`` never touch the network).
        backend, backend_options: ``"auto"`` (the fastest engine installed that keeps fp32's top 3
            on this CPU: :mod:`crossrank.backends.choice`), ``"torch"``, ``"onnx"``,
            ``"openvino"``, a name given to :func:`crossrank.backends.register_backend` (with its
            own options), or an engine.
        device, precision, quantize, onnx_file, threads: How the engine runs (``precision``: torch;
            ``quantize``, ``onnx_file``: ONNX).
        batch_size, max_length: Most pairs per forward pass (pairs are length-sorted and cut into
            the batches that pad least) and most tokens per pair (documents are cut, not queries).
        long_documents, stride, max_windows, window_length: ``"truncate"`` scores a long
            document's beginning; ``"windows"`` scores overlapping windows and keeps the best (MaxP).
        instruction: An LLM reranker's task instruction (default: the model's own).
        top_n, normalize, min_score, dedupe, max_tokens, fusion: Defaults of :meth:`rank`.
        dedupe_similarity, budget_tokenizer, fusion_k, fusion_weight: How those work
            (:mod:`crossrank.selection`).
        token: Hub token for private or gated models (not part of the config).
        model_kwargs: Passed to the torch model loader (not part of the config).

    Raises:
        ModelLoadError: The model can't be had (offline and not cached, unknown id, missing
            files): raised within seconds, naming the model and the way out.
        UnsupportedModelError: The model has more than one output label.
        InvalidArgumentError: An option is invalid, or options don't fit together.

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
        family: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        backend: str | Backend = "auto",
        backend_options: Mapping[str, Any] | None = None,
        device: str | None = None,
        precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto",
        quantize: Quantize | None = None,
        onnx_file: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        long_documents: Literal["truncate", "windows"] = "truncate",
        instruction: str | None = None,
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
        arguments["backend_options"] = dict(backend_options) if backend_options is not None else None
        if not isinstance(backend, str):  # a ready engine: Reranker(name, backend=engine)
            arguments.pop("backend")
            engine = check_engine(backend)
            named = {"model": None if model == DEFAULT_MODEL else str(model)}  # unnamed: the engine's name
            config = ready_engine_config(
                engine, {**arguments, **named, "token": token, "model_kwargs": model_kwargs}
            )
        else:
            config = RerankerConfig.from_arguments(**arguments)
            engine = load_engine(config, token=token, model_kwargs=model_kwargs)
        self._setup(engine, config)

    def _setup(self, engine: Backend, config: RerankerConfig) -> None:
        parts = assemble(engine, config)
        self._backend, self._config, self._encoder = engine, parts.config, parts.encoder
        self._scorer, self._budget_counter = parts.scorer, parts.budget_counter

    @classmethod
    def from_config(
        cls, config: RerankerConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> Reranker:
        """Build a Reranker from a :class:`RerankerConfig` (or a dict of its fields, or none).

        Unlike the constructor, this reads the environment (``CROSSRANK_*``) for fields that
        neither ``config`` nor ``overrides`` set; ``token`` and ``model_kwargs`` pass through.
        A bad value raises :class:`~crossrank.InvalidArgumentError` naming the field.

        Example:
            >>> cfg = RerankerConfig(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_n=5)
            >>> Reranker.from_config(cfg, device="cpu").top_n
            5
        """
        loader_only = {name: overrides.pop(name) for name in ("token", "model_kwargs") if name in overrides}
        if isinstance(config, RerankerConfig):
            config = config.model_dump(exclude_unset=True)
        # A new config validates the overrides too, and lets the environment fill what's left out.
        checked = RerankerConfig.from_settings(**{**(config or {}), **overrides})
        return cls(**checked.model_dump(), **loader_only)

    @classmethod
    def from_backend(cls, engine: Backend, *, model: str | None = None, **options: Any) -> Reranker:
        """A Reranker over a ready engine: your own :class:`~crossrank.backends.Backend`, or a wrapper.

        ``model`` is the name to report (default: the engine's ``model_name``, else its ``name``);
        ``options`` are those that load nothing (``batch_size``, ``max_length``, ``top_n``...).
        An engine lacking part of the interface, or a loading option, raises InvalidArgumentError.

        Example:
            >>> scored = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> again = Reranker.from_backend(scored.engine, top_n=1)
            >>> again.score("flea", ["fleas live a year"]) == scored.score("flea", ["fleas live a year"])
            True
        """
        engine = check_engine(engine)
        self = cls.__new__(cls)
        self._setup(engine, ready_engine_config(engine, {**options, "model": model}))
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
    instruction = _option("instruction")
    stride = _option("stride")
    max_windows = _option("max_windows")
    precision = _option("precision")
    quantize = _option("quantize")
    onnx_file = _option("onnx_file")
    threads = _option("threads")
    local_files_only = _option("local_files_only")

    @property
    def family(self) -> str:
        """What kind of reranker the model is (:mod:`crossrank.families`): ``"cross-encoder"``,
        ``"qwen3-reranker"``, ``"mxbai-rerank-v2"``."""
        family = getattr(self._backend, "family", None)  # an engine may not say: a cross-encoder's
        return family.name if family is not None else CROSS_ENCODER

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
        self, query: str, documents: Iterable[str], *, normalize: bool | UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Score every document against ``query``; the scores come back in input order.

        Args:
            query: The question or search text: a ``str`` with at least one token.
            documents: Document texts, in a list, tuple or other ordered iterable. Not modified.
                Empty documents (``""``) are scored like any other.
            normalize: ``sigmoid(logit)`` in 0-1 (sentence-transformers' ``Sigmoid``) instead of
                raw logits. Defaults to the Reranker's ``normalize``.

        Returns:
            One Python ``float`` per document; identical documents get the identical score. A
            score can move in the 6th-7th digit with its batch-mates (float32 over other padded
            shapes); the same inputs always give the same numbers.

        Raises:
            EmptyQueryError: ``query`` has no tokens (empty, whitespace, zero-width characters).
            DocumentTypeError: ``query`` or a document is not a ``str`` (its index named), or
                ``documents`` is unordered (a set or a dict).

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> scores = reranker.score("flea", ["fleas live a year", "Paris"], normalize=True)
            >>> scores[0] > scores[1], all(0 < s < 1 for s in scores)
            (True, True)
        """
        normalize = self._normalize(normalize)
        return self._scores([self._request(query, documents)], normalize)[0]

    def rank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | UseDefault | None = USE_DEFAULT,
        *,
        first_stage_scores: Sequence[float] | None = None,
        **options: Unpack[RankArguments],
    ) -> Ranking:
        """Rank ``documents`` by relevance to ``query``, best first.

        Args:
            query: The question or search text: a ``str`` with at least one token.
            documents: Document texts. Not modified; duplicates are each returned with their own index.
            top_n: How many to return; None returns all. Defaults to the Reranker's ``top_n`` (3).
            first_stage_scores: Stage 1's score of each document (higher is better), for fusion.
            **options: ``normalize``, ``min_score``, ``dedupe``, ``max_tokens``, ``fusion``
                (:class:`~crossrank.rank_options.RankArguments` says what each does); each defaults
                to the Reranker's.

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
        resolved = self.rank_options(top_n=top_n, **options)
        request = self._request(query, documents)
        first_stage = check_first_stage(first_stage_scores, len(request[1]))
        return self._rankings([request], [first_stage], resolved)[0]

    async def ascore(
        self, query: str, documents: Iterable[str], *, normalize: bool | UseDefault = USE_DEFAULT
    ) -> list[float]:
        """Async :meth:`score`: runs in a worker thread, so the event loop keeps serving.

        Many coroutines may share one Reranker: tokenisation runs in parallel, and forward passes
        take turns on the model. Bad input raises here, in the caller's frame.
        """
        normalize = self._normalize(normalize)
        request = self._request(query, documents)
        return (await asyncio.to_thread(self._scores, [request], normalize))[0]

    async def arank(
        self,
        query: str,
        documents: Iterable[str],
        top_n: int | UseDefault | None = USE_DEFAULT,
        *,
        first_stage_scores: Sequence[float] | None = None,
        **options: Unpack[RankArguments],
    ) -> Ranking:
        """Async :meth:`rank`: runs in a worker thread, so the event loop keeps serving."""
        resolved = self.rank_options(top_n=top_n, **options)
        request = self._request(query, documents)
        first_stage = check_first_stage(first_stage_scores, len(request[1]))
        return (await asyncio.to_thread(self._rankings, [request], [first_stage], resolved))[0]

    # ------------------------------------------------------------------ many requests

    def score_batch(
        self,
        requests: Iterable[Request],
        *,
        normalize: bool | UseDefault = USE_DEFAULT,
        stats: ScoringStats | None = None,
    ) -> list[list[float]]:
        """Score many ``(query, documents)`` requests together: one batch plan for all their pairs.

        The seam for servers and batch jobs: pairs of different requests share forward passes
        (43 requests of 20 documents cost about what 860 pairs cost, not 43 calls). ``requests``
        are :class:`RerankRequest` objects or ``(query, documents)`` tuples; ``stats`` (a
        :class:`ScoringStats`) gets this call's pairs, tokens and forward passes added.

        Returns:
            Each request's scores in input order, as :meth:`score` gives them, within float
            rounding (fp32: 1e-5); engines that are not ``batch_invariant`` (dynamic int8) never
            mix requests in a batch, so there a request scores exactly as alone.

        Raises:
            EmptyQueryError, DocumentTypeError: As :meth:`score`, naming the request
                (``requests[3]: documents[2] is int``). No request is scored if one is bad.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> batch = reranker.score_batch([("flea", ["fleas live a year", "Paris"]), ("tower", ["Paris"])])
            >>> [len(scores) for scores in batch]
            [2, 1]
            >>> abs(batch[1][0] - reranker.score("tower", ["Paris"])[0]) < 1e-5
            True
        """
        normalize = self._normalize(normalize)
        return self._scores(self._requests(requests)[0], normalize, stats)

    def rank_batch(
        self,
        requests: Iterable[Request],
        top_n: int | UseDefault | None = USE_DEFAULT,
        **options: Unpack[RankArguments],
    ) -> list[Ranking]:
        """Rank many requests together (see :meth:`score_batch`); one :class:`Ranking` per request.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> rankings = reranker.rank_batch([("flea", ["Paris", "fleas live a year"])], top_n=1)
            >>> rankings[0][0].index
            1
        """
        resolved = self.rank_options(top_n=top_n, **options)
        return self._rankings(*self._requests(requests), resolved)

    async def ascore_batch(
        self,
        requests: Iterable[Request],
        *,
        normalize: bool | UseDefault = USE_DEFAULT,
        stats: ScoringStats | None = None,
    ) -> list[list[float]]:
        """Async :meth:`score_batch`: runs in a worker thread; bad input raises in the caller's frame."""
        normalize = self._normalize(normalize)
        checked = self._requests(requests)[0]
        return await asyncio.to_thread(self._scores, checked, normalize, stats)

    async def arank_batch(
        self,
        requests: Iterable[Request],
        top_n: int | UseDefault | None = USE_DEFAULT,
        **options: Unpack[RankArguments],
    ) -> list[Ranking]:
        """Async :meth:`rank_batch`."""
        resolved = self.rank_options(top_n=top_n, **options)
        return await asyncio.to_thread(self._rankings, *self._requests(requests), resolved)

    def score_pairs(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        normalize: bool | UseDefault = USE_DEFAULT,
    ) -> list[float]:
        """Score row-aligned pairs ``(queries[i], texts[i])``: datasets with one row per pair.

        Rows are grouped by query (:func:`crossrank.validation.check_pairs`) and scored in one
        batch plan: a query repeated over many rows is tokenised once. One float per row, in
        row order; rows of different lengths or a bad row raise, naming it.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> rows = reranker.score_pairs(["flea", "flea"], ["fleas live a year", "Paris"])
            >>> rows == reranker.score("flea", ["fleas live a year", "Paris"])
            True
        """
        normalize = self._normalize(normalize)
        requests, rows_of = check_pairs(queries, texts, self._encoder.count_tokens)
        scores = [0.0] * sum(len(rows) for rows in rows_of)
        for rows, request_scores in zip(rows_of, self._scores(requests, normalize), strict=True):
            for row, score in zip(rows, request_scores, strict=True):
                scores[row] = score
        return scores

    # ------------------------------------------------------------------ checks
    # Every public method checks its input first, in the caller's frame (crossrank.validation).

    def check_query(self, query: object, *, where: str = "query") -> str:
        """Return ``query`` if the model can rank against it (:func:`crossrank.validation.check_query`).

        A server or an adapter that queues work, or adds prefixes, refuses a bad query up front
        with this: crossrank's own rule and message.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> reranker.check_query("\u200b")
            Traceback (most recent call last):
            ...
            crossrank.errors.EmptyQueryError: query has no tokens the model can read ...
        """
        return check_query(query, self._encoder.count_tokens, where=where)

    def rank_options(self, **given: Any) -> RankOptions:
        """A call's ranking options: those given checked, the rest (and :data:`USE_DEFAULT`) this Reranker's.

        What ``rank`` resolves its keyword arguments with; a server or an adapter that ranks
        logits itself (:meth:`rank_logits`) resolves its request's options here.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu", top_n=5)
            >>> options = reranker.rank_options(normalize=True)
            >>> options.top_n, options.normalize
            (5, True)
        """
        return RankOptions.resolve(self._config, **given)

    def rank_logits(
        self,
        texts: Sequence[str],
        logits: Sequence[float],
        options: RankOptions,
        *,
        first_stage_scores: Sequence[float] | None = None,
    ) -> Ranking:
        """The :class:`Ranking` of ``texts`` from their raw logits, as :meth:`rank` makes it.

        Example:
            >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", device="cpu")
            >>> docs = ["Paris", "fleas live a year"]
            >>> logits = reranker.score("flea", docs, normalize=False)
            >>> reranker.rank_logits(docs, logits, reranker.rank_options()) == reranker.rank("flea", docs)
            True
        """
        texts = check_documents(texts, where="texts")
        values = check_scores(logits, len(texts), where="logits")
        if not isinstance(options, RankOptions):
            raise InvalidArgumentError(f"options must be rank_options()'s, got {type(options).__name__}")
        first_stage = check_first_stage(first_stage_scores, len(texts))
        return rank_logits(texts, values, options, first_stage=first_stage, count_tokens=self.budget_tokens)

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

    def _normalize(self, normalize: object) -> bool:
        return self.normalize if normalize is USE_DEFAULT else check_normalize(normalize)

    def _request(self, query: object, documents: object) -> CheckedRequest:
        return self.check_query(query), check_documents(documents)

    def _requests(self, requests: object) -> tuple[list[CheckedRequest], list[list[float] | None]]:
        return check_requests(requests, self._encoder.count_tokens)

    # ------------------------------------------------------------------ the one scoring path
    # Below here inputs are checked: a list of (query, list of str).

    def _scores(
        self, requests: list[CheckedRequest], normalize: bool, stats: ScoringStats | None = None
    ) -> list[list[float]]:
        return [to_scores(logits, normalize) for logits in self._scorer.logits(requests, stats)]

    def _rankings(
        self, requests: list[CheckedRequest], first_stages: list[list[float] | None], options: RankOptions
    ) -> list[Ranking]:
        # Checked already: straight to the ranking (the public rank_logits checks a caller's input).
        logits = self._scorer.logits(requests)
        return [
            rank_logits(
                texts, request_logits, options, first_stage=first_stage, count_tokens=self.budget_tokens
            )
            for (_, texts), first_stage, request_logits in zip(requests, first_stages, logits, strict=True)
        ]
