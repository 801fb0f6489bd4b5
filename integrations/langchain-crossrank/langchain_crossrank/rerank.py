"""LangChain document compressor that reranks retrieved documents with a crossrank cross-encoder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from crossrank import DEFAULT_MODEL, Ranking, Reranker, RerankerConfig
from crossrank.adapters import RANK_OPTIONS, check_items, check_rank_options, settle

__all__ = ["CrossrankRerank"]


class CrossrankRerank(BaseDocumentCompressor):
    """Keep the ``top_n`` documents a cross-encoder finds most relevant to the query, best first.

    A cross-encoder reads the query and each document together, which makes it a better judge of
    relevance than the embeddings that retrieved them: retrieve ~20 chunks, pass the best 3 on.
    The returned documents are new ``Document`` objects, copies of the inputs (``id``,
    ``page_content`` and every metadata key kept; metadata deep-copied) with
    ``metadata["relevance_score"]`` (a ``float``) added. The caller's documents are never modified.
    Ties keep the input order. A document whose ``page_content`` is empty or whitespace is scored
    and never dropped for being empty, but ranks after every document with text (crossrank's rule:
    a blank chunk must not reach the LLM by accident).

    The model comes from exactly one of ``model`` (loaded here, on ``device``), ``reranker`` (a
    ready ``crossrank.Reranker``, so one loaded model serves many compressors) or ``config`` (a
    ``crossrank.RerankerConfig``, e.g. from YAML or ``CROSSRANK_*`` environment variables).
    ``top_n``, ``normalize`` and ``min_score`` not passed here are taken from that reranker or
    config; afterwards these fields, ``model`` and ``device`` hold the values in use. These rules
    and their messages are crossrank's (``crossrank.adapters``), shared with the LlamaIndex adapter.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from langchain_crossrank import CrossrankRerank

            compressor = CrossrankRerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_n=3)
            retriever = ContextualCompressionRetriever(
                base_compressor=compressor,
                base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
            )
            for doc in retriever.invoke("how long does a flea live"):
                print(doc.metadata["relevance_score"], doc.page_content)

    Raises:
        pydantic.ValidationError: A ``ValueError`` carrying crossrank's ``InvalidArgumentError``
            message: more than one model source was passed (``model`` or ``device`` together with
            ``reranker`` or ``config``, or both of those), or an option is invalid (``top_n`` not
            a positive int, e.g. ``0`` or ``True``; a NaN or non-numeric ``min_score``; a
            ``normalize`` that is not a bool). Also an unknown keyword.
        crossrank.ModelLoadError: The model can't be loaded (offline and not cached, no such
            directory, ...); the message names the model and the way out.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str = DEFAULT_MODEL
    """Hugging Face hub id or local directory of the cross-encoder (a one-logit MS MARCO-style
    model). Defaults to crossrank's default, ``"cross-encoder/ms-marco-MiniLM-L6-v2"``."""

    device: str | None = None
    """Device the model is loaded on when ``model`` is: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    Defaults to CUDA if present. Afterwards, the device the model runs on."""

    top_n: int | None = 3
    """How many documents to return, best first; ``None`` returns all of them, ranked. Fewer
    documents than ``top_n`` are all returned. numpy integers are accepted; bools are not."""

    normalize: bool = False
    """``relevance_score`` as ``sigmoid(logit)`` in 0-1 instead of the raw logit."""

    min_score: float | None = None
    """Leave out documents scoring below this, on the scale ``normalize`` selects (a logit such
    as ``0.0``, or a probability such as ``0.5``). ``None`` keeps every document up to ``top_n``.
    crossrank logs how many were left out (INFO, logger ``crossrank.reranker``)."""

    dedupe: float | None = None
    """Skip a document whose text is this similar (0-1, e.g. ``0.8``) to a better one already
    kept, so near-duplicates don't take the LLM's slots; ``None`` keeps them."""

    max_tokens: int | None = None
    """A context budget: return the best documents while their tokens add up to at most this
    (the best one always); ``top_n`` still caps the count (set it to ``None`` for budget only)."""

    fusion: Literal["rrf", "weighted"] | None = None
    """Fuse the cross-encoder's order with the retriever's (the order ``documents`` come in):
    ``"rrf"`` or ``"weighted"``; each document then carries ``metadata["fused_score"]``, the score
    the result is ordered by. Helps where the model is weak or out of its domain."""

    reranker: Reranker | None = Field(default=None, exclude=True)
    """A ready ``crossrank.Reranker`` to use instead of loading ``model``, so one loaded model can
    serve many compressors. Not copied: every compressor given it shares it. Afterwards, the
    Reranker in use (however it was made)."""

    config: RerankerConfig | None = None
    """Settings to build the reranker from (model, device, batch size, max length, defaults of
    ``top_n``/``normalize``/``min_score``), e.g.
    ``RerankerConfig.from_yaml("app.yaml", section="reranker")``."""

    _reranker: Reranker = PrivateAttr()

    @field_validator("model", mode="before")
    @classmethod
    def _model_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="before")
    @classmethod
    def _check_rank_options(cls, data: Any) -> Any:
        # crossrank's checks on the values as given, before pydantic coerces them (top_n=True -> 1).
        return {**data, **check_rank_options(data)} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _build_reranker(self) -> CrossrankRerank:
        # One model source; rank options not given from the reranker; model/device/reranker as in use.
        self._reranker = settle(self)
        return self

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` against ``query`` and return copies of the best ``top_n``, best first.

        Args:
            documents: The retrieved documents. Not modified.
            query: The question or search text; must be a non-blank ``str``.
            callbacks: Accepted for the interface; crossrank emits no callback events.

        Returns:
            New ``Document`` objects, best first, each with ``metadata["relevance_score"]``
            (``float``; replaces a ``relevance_score`` the input already had). ``[]`` for no documents.

        Raises:
            crossrank.DocumentTypeError: ``documents`` is not a list (a single ``Document``, a
                ``str``, ``None``), an item of it is not a ``Document`` (``None``, a ``str``, a
                ``(Document, score)`` tuple), or the query is not a ``str``: a ``TypeError``
                naming the offending index.
            crossrank.EmptyQueryError: ``query`` has no tokens (empty or whitespace; a ``ValueError``).
        """
        docs = _as_documents(documents)
        ranking = self._reranker.rank(query, [doc.page_content for doc in docs], **self._rank_options())
        return _ranked_copies(docs, ranking)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the model runs in a worker thread (crossrank's
        ``arank``), so the event loop keeps serving; many calls may share one reranker."""
        docs = _as_documents(documents)
        ranking = await self._reranker.arank(
            query, [doc.page_content for doc in docs], **self._rank_options()
        )
        return _ranked_copies(docs, ranking)

    def _rank_options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RANK_OPTIONS}


def _as_documents(documents: object) -> list[Document]:
    """Check that ``documents`` is a sequence of ``Document``; return it as a new list."""
    return check_items(
        documents,
        Document,
        name="documents",
        type_label="langchain_core.documents.Document",
        hint="wrap text as Document(page_content=text)",
    )


def _ranked_copies(docs: list[Document], ranking: Ranking) -> list[Document]:
    """Copy the ranked documents (deep: metadata values are not shared) and add their scores."""
    ranked = []
    for hit in ranking:
        doc = docs[hit.index].model_copy(deep=True)
        doc.metadata["relevance_score"] = hit.score
        if hit.fused_score is not None:
            doc.metadata["fused_score"] = hit.fused_score
        ranked.append(doc)
    return ranked
