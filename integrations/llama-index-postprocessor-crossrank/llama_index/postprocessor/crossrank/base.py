"""CrossrankRerank: a LlamaIndex node postprocessor that reranks with a crossrank cross-encoder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator, model_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from crossrank import DEFAULT_MODEL, Ranking, Reranker, RerankerConfig
from crossrank.adapters import RANK_OPTIONS, check_items, check_rank_options, settle

__all__ = ["CrossrankRerank"]

dispatcher = get_dispatcher(__name__)


class CrossrankRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a crossrank cross-encoder and keep the best ``top_n``.

    Each node is scored on ``node.get_content(metadata_mode=MetadataMode.EMBED)``: its text plus
    the metadata not listed in ``excluded_embed_metadata_keys``, the text LlamaIndex's own
    ``SentenceTransformerRerank`` scores. The result is new ``NodeWithScore`` objects, best first,
    whose ``score`` is the cross-encoder score (a ``float``); the nodes passed in, and their
    metadata, are left as they were.

    Args:
        model (str | os.PathLike): Hugging Face hub id or local directory of a cross-encoder.
            Defaults to ``"cross-encoder/ms-marco-MiniLM-L6-v2"``.
        device (str, optional): ``"cpu"``, ``"cuda"``, ... Defaults to None: CUDA if available.
        top_n (int, optional): How many nodes to return; None returns them all, reordered.
            Defaults to 3. numpy integers are accepted; bools are not.
        normalize (bool): Scores in 0-1 (``sigmoid(logit)``) instead of raw logits. Defaults to False.
        min_score (float, optional): Drop nodes scoring below this, on the scale ``normalize``
            selects; not NaN. Defaults to None.
        dedupe (float, optional): Skip a node whose text is this similar (0-1, e.g. 0.8) to a better
            node already kept. Defaults to None (off).
        max_tokens (int, optional): A context budget: the best nodes while their tokens add up to
            at most this (the best one always); ``top_n`` still caps the count. Defaults to None.
        fusion (str, optional): Fuse the cross-encoder's order with the retriever's: ``"rrf"`` or
            ``"weighted"``, reading each ``NodeWithScore.score`` (the input order when a node has
            none). The nodes come back in the fused order, each ``score`` still the cross-encoder's.
        keep_retrieval_score (bool): Put each node's stage-1 score in ``metadata["retrieval_score"]``
            of a copy of the node. Defaults to False.
        reranker (crossrank.Reranker, optional): A loaded Reranker to use (and share) instead of
            loading ``model``. Afterwards, the Reranker in use (however it was made).
        config (crossrank.RerankerConfig, optional): Build the Reranker from these settings.

    The model comes from exactly one of ``model`` (with ``device``), ``reranker`` or ``config``.
    ``top_n``, ``normalize`` and ``min_score`` not passed are taken from the reranker or config;
    afterwards these fields, ``model`` and ``device`` hold the values in use. These rules and
    their messages are crossrank's (``crossrank.adapters``), shared with the LangChain adapter.

    Raises:
        pydantic.ValidationError: A ``ValueError`` carrying crossrank's ``InvalidArgumentError``
            message: more than one model source was passed (``model`` or ``device`` together with
            ``reranker`` or ``config``, or both of those), or an option is invalid (``top_n`` not
            a positive int, e.g. ``0`` or ``True``; a NaN or non-numeric ``min_score``; a
            ``normalize`` that is not a bool).
        crossrank.ModelLoadError: The model can't be loaded; the message names it and the way out.

    Example:
        .. code-block:: python

            from llama_index.postprocessor.crossrank import CrossrankRerank

            rerank = CrossrankRerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_n=3)
            engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])
    """

    model: str = Field(default=DEFAULT_MODEL, description="Hub id or local directory of the cross-encoder.")
    device: str | None = Field(default=None, description="Device the model runs on; None: CUDA if present.")
    top_n: int | None = Field(default=3, description="Number of nodes to return; None returns all.")
    normalize: bool = Field(default=False, description="Scores in 0-1 (sigmoid) instead of raw logits.")
    min_score: float | None = Field(default=None, description="Drop nodes scoring below this.")
    dedupe: float | None = Field(default=None, description="Skip nodes this similar (0-1) to a better one.")
    max_tokens: int | None = Field(default=None, description="Keep the best nodes within this token budget.")
    fusion: Literal["rrf", "weighted"] | None = Field(
        default=None, description="Fuse the reranker's order with the retriever's: rrf or weighted."
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in metadata['retrieval_score'] (of a copy)."
    )
    reranker: Reranker | None = Field(
        default=None,
        exclude=True,
        description="The crossrank.Reranker that scores the nodes (shared, not copied).",
    )
    config: RerankerConfig | None = Field(
        default=None, exclude=True, description="Settings to build the Reranker from."
    )

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

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes, query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        with self._rerank_events(nodes, query_bundle) as new_nodes:
            ranking = self._reranker.rank(query, texts, **self._rank_options(nodes))
            new_nodes += self._to_nodes(nodes, ranking)
        return new_nodes

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes, query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        with self._rerank_events(nodes, query_bundle) as new_nodes:
            ranking = await self._reranker.arank(query, texts, **self._rank_options(nodes))
            new_nodes += self._to_nodes(nodes, ranking)
        return new_nodes

    # ------------------------------------------------------------------ helpers

    def _rank_options(self, nodes: list[NodeWithScore]) -> dict[str, Any]:
        """This postprocessor's options, and the retriever's scores for fusion when every node has one."""
        stage1 = [node.score for node in nodes]
        known = self.fusion is not None and all(score is not None for score in stage1)
        return {name: getattr(self, name) for name in RANK_OPTIONS} | {
            "first_stage_scores": stage1 if known else None
        }

    @staticmethod
    def _prepare(
        nodes: object, query_bundle: QueryBundle | None
    ) -> tuple[list[NodeWithScore], str, list[str]]:
        """The nodes as a new list, the query and the text of each node.

        Raises:
            crossrank.DocumentTypeError: ``nodes`` is not a list, or an item of it is not a
                ``NodeWithScore`` (the message names its index), checked before anything reads them.
            ValueError: No query bundle.
        """
        checked = check_items(
            nodes,
            NodeWithScore,
            name="nodes",
            type_label="llama_index.core.schema.NodeWithScore",
            hint="wrap a node as NodeWithScore(node=node), text as NodeWithScore(node=TextNode(text=text))",
        )
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in checked]
        return checked, query_bundle.query_str, texts

    @contextmanager
    def _rerank_events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[list[NodeWithScore]]:
        """Report the rerank to instrumentation and to the callback manager, as LlamaIndex's rerankers do.

        Yields the (empty) list the caller fills with the reranked nodes; the end events carry it.
        """
        top_n = len(nodes) if self.top_n is None else self.top_n
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model)
        )
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        new_nodes: list[NodeWithScore] = []
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            yield new_nodes
            event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))

    def _to_nodes(self, nodes: list[NodeWithScore], ranking: Ranking) -> list[NodeWithScore]:
        """New NodeWithScore objects in ranking order; nodes are copied only to add metadata."""
        new_nodes = []
        for hit in ranking:
            original = nodes[hit.index]
            node = original.node
            if self.keep_retrieval_score:
                metadata = {**node.metadata, "retrieval_score": original.score}
                node = node.model_copy(update={"metadata": metadata})
            new_nodes.append(NodeWithScore(node=node, score=hit.score))
        return new_nodes
