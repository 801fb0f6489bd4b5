"""LangChain document compressor that reranks retrieved documents with a crossrank cross-encoder."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PositiveInt, PrivateAttr, field_validator, model_validator

from crossrank import DEFAULT_MODEL, Ranking, Reranker, RerankerConfig
from crossrank.errors import DocumentTypeError

__all__ = ["CrossrankRerank"]

_SOURCES = ("model", "reranker", "config")
_RANK_OPTIONS = ("top_n", "normalize", "min_score")


class CrossrankRerank(BaseDocumentCompressor):
    """Keep the ``top_n`` documents a cross-encoder finds most relevant to the query, best first.

    A cross-encoder reads the query and each document together, which makes it a better judge of
    relevance than the embeddings that retrieved them: retrieve ~20 chunks, pass the best 3 on.
    The returned documents are new ``Document`` objects, copies of the inputs (``id``,
    ``page_content`` and every metadata key kept; metadata deep-copied) with
    ``metadata["relevance_score"]`` (a ``float``) added. The caller's documents are never modified.
    Ties keep the input order. A document whose ``page_content`` is empty is scored like any other
    (on the query alone, so usually low) and is never dropped for being empty.

    The model comes from exactly one of ``model`` (loaded here), ``reranker`` (a ready
    ``crossrank.Reranker``, so one loaded model serves many compressors) or ``config`` (a
    ``crossrank.RerankerConfig``, e.g. from YAML or ``CROSSRANK_*`` environment variables).
    ``top_n``, ``normalize`` and ``min_score`` not passed here are taken from that reranker or
    config; afterwards these fields and ``model`` hold the values in use.

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
        pydantic.ValidationError: More than one of ``model``, ``reranker`` and ``config`` was
            passed, or an option is out of range (``top_n < 1``, a NaN ``min_score``).
        crossrank.ModelLoadError: The model can't be loaded (offline and not cached, no such
            directory, ...); the message names the model and the way out.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str = DEFAULT_MODEL
    """Hugging Face hub id or local directory of the cross-encoder (a one-logit MS MARCO-style
    model). Defaults to crossrank's default, ``"cross-encoder/ms-marco-MiniLM-L6-v2"``."""

    top_n: PositiveInt | None = 3
    """How many documents to return, best first; ``None`` returns all of them, ranked. Fewer
    documents than ``top_n`` are all returned."""

    normalize: bool = False
    """``relevance_score`` as ``sigmoid(logit)`` in 0-1 instead of the raw logit."""

    min_score: float | None = Field(default=None, allow_inf_nan=False)
    """Leave out documents scoring below this, on the scale ``normalize`` selects (a logit such
    as ``0.0``, or a probability such as ``0.5``). ``None`` keeps every document up to ``top_n``.
    crossrank logs how many were left out (INFO, logger ``crossrank.reranker``)."""

    reranker: Reranker | None = Field(default=None, exclude=True)
    """A ready ``crossrank.Reranker`` to use instead of loading ``model``, so one loaded model can
    serve many compressors. Not copied: every compressor given it shares it."""

    config: RerankerConfig | None = None
    """Settings to build the reranker from (model, device, batch size, max length, defaults of
    ``top_n``/``normalize``/``min_score``), e.g.
    ``RerankerConfig.from_yaml("app.yaml", section="reranker")``."""

    _reranker: Reranker = PrivateAttr()

    @field_validator("model", mode="before")
    @classmethod
    def _model_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _build_reranker(self) -> CrossrankRerank:
        given = [
            name for name in _SOURCES if name in self.model_fields_set and getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(
                "pass only one of `model`, `reranker` or `config`, got "
                f"{' and '.join(f'`{name}`' for name in given)}: "
                "a reranker or config already names its model. Use `reranker=` to share a loaded model, "
                "`config=` to build one from settings, or `model=` to load one here."
            )
        if self.reranker is not None:
            self._reranker = self.reranker
        elif self.config is not None:
            self._reranker = Reranker.from_config(self.config)
        else:
            self._reranker = Reranker(self.model)
            return self
        # A reranker or config was given: report its model, and use its defaults for options not given.
        self.model = self._reranker.model_name
        for name in _RANK_OPTIONS:
            if name not in self.model_fields_set:
                setattr(self, name, getattr(self._reranker, name))
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
            crossrank.DocumentTypeError: An item of ``documents`` is not a ``Document``, or the
                query is not a ``str`` (a ``TypeError`` naming the offending index).
            crossrank.EmptyQueryError: ``query`` is empty or whitespace (a ``ValueError``).
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
        return {"top_n": self.top_n, "normalize": self.normalize, "min_score": self.min_score}


def _as_documents(documents: object) -> list[Document]:
    """Check that ``documents`` is a sequence of ``Document``; return it as a new list."""
    if isinstance(documents, (Document, str)) or not isinstance(documents, Iterable):
        raise DocumentTypeError(
            f"documents must be a list of langchain_core Document objects, got {type(documents).__name__}"
            + ("; wrap it in a list" if isinstance(documents, Document) else "")
        )
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise DocumentTypeError(
                f"documents[{i}] is {type(doc).__name__}, expected a langchain_core.documents.Document "
                "(wrap text as Document(page_content=text))"
            )
    return docs


def _ranked_copies(docs: list[Document], ranking: Ranking) -> list[Document]:
    """Copy the ranked documents (deep: metadata values are not shared) and add their scores."""
    ranked = []
    for hit in ranking:
        doc = docs[hit.index].model_copy(deep=True)
        doc.metadata["relevance_score"] = hit.score
        ranked.append(doc)
    return ranked
