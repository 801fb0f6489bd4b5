"""CrossrankRanker: a Haystack ranker component that scores documents with a crossrank cross-encoder."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret
from pydantic import ValidationError

from crossrank import (
    USE_DEFAULT,
    InvalidArgumentError,
    Ranking,
    Reranker,
    RerankerConfig,
)
from crossrank.adapters import RANK_OPTIONS, check_items, check_rank_options, resolve_reranker
from crossrank.config import describe_validation_error
from crossrank.rank_options import resolve_rank_options

__all__ = ["CrossrankRanker"]

#: crossrank's ranking options and the names this component (and Haystack) gives them.
_HAYSTACK_NAMES = {
    "top_n": "top_k",
    "normalize": "normalize",
    "min_score": "score_threshold",
    "dedupe": "dedupe",
    "max_tokens": "max_tokens",
    "fusion": "fusion",
}
#: One model load at a time across components: ``warm_up`` stays idempotent under threads and coroutines.
_LOAD_LOCK = threading.Lock()


@component
class CrossrankRanker:
    """
    Ranks Documents by their relevance to the query with a local cross-encoder, through crossrank.

    A cross-encoder reads the query and each document together, which makes it a better judge of
    relevance than the embeddings or BM25 that retrieved them: retrieve ~20 Documents, pass the best 3 on.
    All scoring is crossrank's (`crossrank.Reranker`): length-sorted batches, long documents cut on the
    document side only, typed errors, and scores that are Python floats.

    `run` returns new `Document` objects (deep copies with `id`, `content`, `meta` and the rest kept) with
    `score` set, best first; the Documents passed in are never modified. As in Haystack's own rankers,
    Documents sharing an `id` are ranked once (the one with the highest incoming score is kept).

    The model comes from exactly one of `model` (loaded on `device`), `config` (crossrank's options as a
    dict or a `crossrank.RerankerConfig`: backend, batch size, max length, ONNX int8...) or `reranker`
    (a loaded `crossrank.Reranker`, shared). It is loaded by `warm_up()` (which a Pipeline calls, and
    `run` calls if needed), once.

    Usage example:
    ```python
    from haystack import Document
    from haystack_integrations.components.rankers.crossrank import CrossrankRanker

    ranker = CrossrankRanker(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_k=3)
    docs = [Document(content="Paris is the capital of France"), Document(content="Berlin is in Germany")]
    result = ranker.run(query="What is the capital of France?", documents=docs)
    print(result["documents"][0].content, result["documents"][0].score)  # best first, score in 0-1
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | ComponentDevice | None = None,
        token: Secret | None = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False),  # noqa: B008
        top_k: int | None = 3,
        query_prefix: str = "",
        query_suffix: str = "",
        document_prefix: str = "",
        document_suffix: str = "",
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        normalize: bool = True,
        score_threshold: float | None = None,
        dedupe: float | None = None,
        max_tokens: int | None = None,
        fusion: Literal["rrf", "weighted"] | None = None,
        config: dict[str, Any] | RerankerConfig | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        """
        Creates an instance of CrossrankRanker; nothing is loaded until `warm_up()`.

        :param model:
            Hugging Face hub id or local directory of a one-logit cross-encoder (the MS MARCO family).
            `None` (the default) is crossrank's default, `cross-encoder/ms-marco-MiniLM-L6-v2`.
        :param device:
            Device to load `model` on: `"cpu"`, `"cuda"`, `"cuda:1"`, or a single-device `ComponentDevice`.
            `None`: CUDA if present, else CPU.
        :param token:
            Hugging Face token for private or gated models, as a Haystack `Secret` (serialized as the
            names of its environment variables, never the token).
        :param top_k:
            How many Documents to return, best first; `None` returns all of them, ranked.
        :param query_prefix:
            Text put before the query, for models trained with one. Defaults to none.
        :param query_suffix:
            Text put after the query.
        :param document_prefix:
            Text put before each document's text (after its meta fields, see below).
        :param document_suffix:
            Text put after each document's text.
        :param meta_fields_to_embed:
            Meta fields whose values are scored with the content, each followed by `embedding_separator`,
            e.g. `["title"]`. Fields a Document lacks (or holds `None` in) are left out.
        :param embedding_separator:
            Separator between the meta values and the content.
        :param normalize:
            `True` (the default, as Haystack's `scale_score`) gives `sigmoid(logit)` scores in 0-1;
            `False` the raw logits (about -10 to 10).
        :param score_threshold:
            Leave out Documents scoring below this, on the scale `normalize` selects. `None` keeps all
            up to `top_k`.
        :param dedupe:
            Skip a Document whose text is this similar (0-1, e.g. `0.8`) to a better one already kept,
            so near-duplicates don't take the LLM's slots. `None` (the default) keeps them.
        :param max_tokens:
            A context budget: the best Documents while their tokens add up to at most this (the best
            one always); `top_k` still caps the count. `None`: no budget.
        :param fusion:
            Fuse the cross-encoder's order with the retriever's: `"rrf"` or `"weighted"`, reading each
            incoming `Document.score` (the input order when one is missing). The Documents come back in
            the fused order, each `score` still the cross-encoder's. `None`: the cross-encoder's order.
        :param config:
            crossrank's model and engine options (`crossrank.RerankerConfig` fields: `model`, `backend`,
            `quantize`, `batch_size`, `max_length`, `long_documents`...), as a dict or a `RerankerConfig`;
            `CROSSRANK_*` environment variables fill the options it leaves out. The ranking options are
            this component's (`top_k`, `normalize`, `score_threshold`, `dedupe`, `max_tokens`,
            `fusion`), so `config` may not set those or `top_n` and `min_score`.
        :param reranker:
            A loaded `crossrank.Reranker` to use (and share with other components) instead of loading a
            model. `to_dict` writes it as its settings (`config`): a pipeline loaded from that loads
            its own copy.
        :raises crossrank.InvalidArgumentError:
            More than one model source (`model` or `device` with `config` or `reranker`, or both of
            those), an invalid option (`top_k=0`, a NaN `score_threshold`, a non-bool `normalize`, a
            `token` that is not a `Secret`...) or an invalid `config`; the message names the option.
        """
        self.model = _model_name(model)
        self.device = device
        self.token = _check_token(token)
        with _haystack_names():
            options = check_rank_options(
                {
                    "top_n": top_k,
                    "normalize": normalize,
                    "min_score": score_threshold,
                    "dedupe": dedupe,
                    "max_tokens": max_tokens,
                    "fusion": fusion,
                }
            )
        self.top_k = options["top_n"]
        self.query_prefix = _check_str("query_prefix", query_prefix)
        self.query_suffix = _check_str("query_suffix", query_suffix)
        self.document_prefix = _check_str("document_prefix", document_prefix)
        self.document_suffix = _check_str("document_suffix", document_suffix)
        self.meta_fields_to_embed = _check_meta_fields(meta_fields_to_embed)
        self.embedding_separator = _check_str("embedding_separator", embedding_separator)
        self.normalize = options["normalize"]
        self.score_threshold = options["min_score"]
        self.dedupe = options["dedupe"]
        self.max_tokens = options["max_tokens"]
        self.fusion = options["fusion"]
        self.reranker = reranker
        self._device = _device_name(device)
        self._reranker: Reranker | None = None
        if reranker is not None or (config is not None and (model is not None or device is not None)):
            # crossrank's one-source rule (shared with the LangChain and LlamaIndex adapters). In these
            # cases resolve_reranker loads nothing: it raises for two sources, or returns `reranker`.
            self._reranker = self._resolve(config)
        self.config = _check_config(config)

    def _resolve(self, config: Any, token: str | None = None) -> Reranker:
        # `token` goes to Reranker(model, ...) only; crossrank's source check looks at model and device.
        loader_options: dict[str, Any] = {"device": self._device}
        if token is not None:
            loader_options["token"] = token
        return resolve_reranker(
            model=self.model,
            reranker=self.reranker,
            config=config,
            given={"model", "device"},
            loader_options=loader_options,
        )

    def warm_up(self) -> None:
        """
        Loads the model, once: later calls (a Pipeline calls it before every run) do nothing.

        :raises crossrank.ModelLoadError:
            The model can't be had (offline and not cached, no such directory...); the message names it
            and the way out.
        """
        if self._reranker is not None:
            return
        with _LOAD_LOCK:
            if self._reranker is None:
                token = self.token.resolve_value() if self.token is not None else None
                if self.config is not None and token is not None:
                    self._reranker = Reranker.from_config(self.config, token=token)
                else:
                    self._reranker = self._resolve(self.config, token)

    async def warm_up_async(self) -> None:
        """
        `warm_up` in a worker thread, so an AsyncPipeline's event loop keeps serving while the model loads.
        """
        if self._reranker is None:
            await asyncio.to_thread(self.warm_up)

    def to_dict(self) -> dict[str, Any]:
        """
        Serializes the component to a dictionary: every init parameter, as given.

        A shared `reranker` is written as its settings (`config`), since a loaded model can't be.

        :returns:
            Dictionary with serialized data.
        """
        config = self.config
        if self.reranker is not None:
            config = self.reranker.to_config().model_dump(exclude=set(RANK_OPTIONS))
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            token=self.token,
            top_k=self.top_k,
            query_prefix=self.query_prefix,
            query_suffix=self.query_suffix,
            document_prefix=self.document_prefix,
            document_suffix=self.document_suffix,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            normalize=self.normalize,
            score_threshold=self.score_threshold,
            dedupe=self.dedupe,
            max_tokens=self.max_tokens,
            fusion=self.fusion,
            config=config,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossrankRanker:
        """
        Deserializes the component from a dictionary.

        :param data:
            Dictionary to deserialize from (`token` and `device` in their serialized forms).
        :returns:
            Deserialized component.
        """
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """
        Returns the Documents most relevant to the query, best first, with `score` set.

        :param query:
            The query (a `str` with at least one token).
        :param documents:
            The Documents to rank. Not modified.
        :param top_k:
            How many Documents to return. `None`: the component's `top_k`.
        :param score_threshold:
            Leave out Documents scoring below this. `None`: the component's `score_threshold`.
        :returns:
            A dictionary with the following keys:
            - `documents`: New Documents (copies), best first, each with `score` set to a `float`;
              ties keep the input order. `[]` for no Documents.
        :raises crossrank.DocumentTypeError:
            `documents` is not a list of `Document` (the message names the index of the first item that
            isn't one), or `query` is not a `str`.
        :raises crossrank.EmptyQueryError:
            `query` has no tokens (empty, whitespace).
        :raises crossrank.InvalidArgumentError:
            `top_k` < 1 or `score_threshold` NaN.
        """
        docs, options = self._prepare(documents, top_k, score_threshold)
        self.warm_up()
        reranker = self._loaded()
        ranking = reranker.rank(self._query(query, reranker), [self._text(doc) for doc in docs], **options)
        return {"documents": _ranked_copies(docs, ranking)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """
        Asynchronous `run`: the model runs in a worker thread (crossrank's `arank`), off the event loop.

        Same parameters, return value and errors as `run`.
        """
        docs, options = self._prepare(documents, top_k, score_threshold)
        await self.warm_up_async()
        reranker = self._loaded()
        ranking = await reranker.arank(
            self._query(query, reranker), [self._text(doc) for doc in docs], **options
        )
        return {"documents": _ranked_copies(docs, ranking)}

    # ------------------------------------------------------------------ helpers

    def _loaded(self) -> Reranker:
        if self._reranker is None:  # warm_up raises rather than leave it unset
            raise RuntimeError("CrossrankRanker.warm_up() did not load a model")
        return self._reranker

    def _prepare(
        self, documents: object, top_k: object, score_threshold: object
    ) -> tuple[list[Document], dict[str, Any]]:
        docs = check_items(
            documents,
            Document,
            name="documents",
            type_label="haystack.Document",
            hint="wrap text as Document(content=text)",
        )
        # crossrank's rule "the call's option, else the default": a run's None is Haystack's "not given".
        defaults = SimpleNamespace(**{name: getattr(self, own) for name, own in _HAYSTACK_NAMES.items()})
        with _haystack_names():
            options = resolve_rank_options(
                defaults,
                top_n=USE_DEFAULT if top_k is None else top_k,
                min_score=USE_DEFAULT if score_threshold is None else score_threshold,
            )
        docs = _unique_by_id(docs)
        stage1 = [doc.score for doc in docs]
        if self.fusion is not None and all(score is not None for score in stage1):
            options["first_stage_scores"] = stage1
        return docs, options

    def _query(self, query: object, reranker: Reranker) -> object:
        if not (self.query_prefix or self.query_suffix):
            return query  # crossrank checks it
        # The affixes always hold tokens: check the query itself, with crossrank's own rule.
        return self.query_prefix + reranker.check_query(query) + self.query_suffix

    def _text(self, doc: Document) -> str:
        meta_values = [
            str(doc.meta[key]) for key in self.meta_fields_to_embed or () if doc.meta.get(key) is not None
        ]
        text = self.embedding_separator.join([*meta_values, doc.content or ""])
        return self.document_prefix + text + self.document_suffix


@contextlib.contextmanager
def _haystack_names() -> Iterator[None]:
    """crossrank's checks of the ranking options, their messages naming each option as this component
    does (``top_k`` for ``top_n``, ``score_threshold`` for ``min_score``)."""
    try:
        yield
    except InvalidArgumentError as err:
        message = str(err)
        for name, own in _HAYSTACK_NAMES.items():
            if message.startswith(name):
                message = own + message[len(name) :]
                break
        raise InvalidArgumentError(message) from None


def _model_name(model: object) -> str | None:
    if model is None or isinstance(model, str):
        return model
    if isinstance(model, os.PathLike):
        return os.fspath(model)
    raise InvalidArgumentError(
        f"model must be a hub id or a local directory (str or path) or None, got {type(model).__name__}"
    )


def _device_name(device: object) -> str | None:
    if device is None or isinstance(device, str):
        return device
    if isinstance(device, ComponentDevice):
        if device.has_multiple_devices:
            raise InvalidArgumentError(
                "device: crossrank runs the model on one device; got a ComponentDevice with a device map"
            )
        return device.to_torch_str()
    raise InvalidArgumentError(
        "device must be a str such as 'cpu' or 'cuda:0', a ComponentDevice or None, "
        f"got {type(device).__name__}"
    )


def _check_token(token: object) -> Secret | None:
    if token is not None and not isinstance(token, Secret):
        raise InvalidArgumentError(
            f"token must be a haystack.utils.Secret or None, got {type(token).__name__}: use "
            "Secret.from_env_var('HF_TOKEN') (a token string would be written out by to_dict)"
        )
    return token


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _check_meta_fields(fields: object) -> list[str] | None:
    if fields is None:
        return None
    if isinstance(fields, (str, bytes, Mapping)) or not isinstance(fields, (list, tuple)):
        raise InvalidArgumentError(
            f"meta_fields_to_embed must be a list of meta field names or None, got {type(fields).__name__}"
        )
    for i, name in enumerate(fields):
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"meta_fields_to_embed[{i}] must be a str (a meta field name), got {type(name).__name__}"
            )
    return list(fields)


def _check_config(config: object) -> dict[str, Any] | None:
    """``config`` as a dict of the crossrank options it sets, validated (as ``Reranker.from_config`` will)."""
    if config is None:
        return None
    if isinstance(config, RerankerConfig):
        values = config.model_dump(exclude_unset=True)
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        raise InvalidArgumentError(
            "config must be a dict of crossrank options or a crossrank.RerankerConfig, "
            f"got {type(config).__name__}"
        )
    ranking = [name for name in RANK_OPTIONS if name in values]
    if ranking:
        asked = ", ".join(f"`{name}`" for name in ranking)
        instead = ", ".join(f"`{_HAYSTACK_NAMES[name]}=`" for name in ranking)
        raise InvalidArgumentError(
            f"config sets {asked}: CrossrankRanker ranks with its own top_k, normalize, score_threshold, "
            "dedupe, max_tokens and fusion; "
            f"pass {instead} to CrossrankRanker instead (config holds the model and engine options)"
        )
    try:
        validated = RerankerConfig(**values)
    except ValidationError as err:
        raise InvalidArgumentError(f"config: {describe_validation_error(err)}") from None
    # The values as validated (a path as str, "2" as 2): what to_dict writes.
    return {name: getattr(validated, name) for name in values}


def _score(doc: Document) -> float:
    return -math.inf if doc.score is None else doc.score


def _unique_by_id(docs: list[Document]) -> list[Document]:
    """One Document per id, the one with the highest incoming score (Haystack's rankers do the same)."""
    best: dict[str, Document] = {}
    for doc in docs:
        kept = best.get(doc.id)
        if kept is None or _score(doc) > _score(kept):
            best[doc.id] = doc
    return list(best.values())


def _ranked_copies(docs: list[Document], ranking: Ranking) -> list[Document]:
    """Deep copies of the ranked Documents (nothing shared with the input), with their scores."""
    return [copy.deepcopy(replace(docs[hit.index], score=hit.score)) for hit in ranking]
