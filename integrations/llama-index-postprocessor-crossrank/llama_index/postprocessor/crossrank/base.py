"""CrossrankRerank: a LlamaIndex node postprocessor that reranks with a crossrank cross-encoder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from crossrank import DEFAULT_MODEL, Ranking, Reranker, RerankerConfig

__all__ = ["CrossrankRerank"]

dispatcher = get_dispatcher(__name__)

#: The ranking options that, when not passed, are taken from a given ``reranker`` or ``config``.
_RANKING_OPTIONS = ("top_n", "normalize", "min_score")


class CrossrankRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a crossrank cross-encoder and keep the best ``top_n``.

    Each node is scored on ``node.get_content(metadata_mode=MetadataMode.EMBED)``: its text plus
    the metadata not listed in ``excluded_embed_metadata_keys``, the text LlamaIndex's own
    ``SentenceTransformerRerank`` scores. The result is new ``NodeWithScore`` objects, best first,
    whose ``score`` is the cross-encoder score (a ``float``); the nodes passed in, and their
    metadata, are left as they were.

    Args:
        model (str): Hugging Face hub id or local directory of a cross-encoder. Defaults to
            ``"cross-encoder/ms-marco-MiniLM-L6-v2"``.
        device (str, optional): ``"cpu"``, ``"cuda"``, ... Defaults to None: CUDA if available.
        top_n (int, optional): How many nodes to return; None returns them all, reordered.
            Defaults to 3.
        normalize (bool): Scores in 0-1 (``sigmoid(logit)``) instead of raw logits. Defaults to False.
        min_score (float, optional): Drop nodes scoring below this, on the scale ``normalize``
            selects. Defaults to None.
        keep_retrieval_score (bool): Put each node's stage-1 score in ``metadata["retrieval_score"]``
            of a copy of the node. Defaults to False.
        reranker (crossrank.Reranker, optional): A loaded Reranker to use (and share) instead of
            loading ``model``.
        config (crossrank.RerankerConfig, optional): Build the Reranker from these settings.

    With ``reranker`` or ``config``, the model is theirs: passing ``model`` or ``device`` too is a
    ``ValueError``. ``top_n``, ``normalize`` and ``min_score`` not passed are taken from them.

    Example:
        .. code-block:: python

            from llama_index.postprocessor.crossrank import CrossrankRerank

            rerank = CrossrankRerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", top_n=3)
            engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])
    """

    model: str = Field(default=DEFAULT_MODEL, description="Hub id or local directory of the cross-encoder.")
    device: str | None = Field(default=None, description="Device the model runs on; None: CUDA if present.")
    top_n: int | None = Field(default=3, ge=1, description="Number of nodes to return; None returns all.")
    normalize: bool = Field(default=False, description="Scores in 0-1 (sigmoid) instead of raw logits.")
    min_score: float | None = Field(default=None, description="Drop nodes scoring below this.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in metadata['retrieval_score'] (of a copy)."
    )

    _reranker: Reranker = PrivateAttr()

    def __init__(
        self, *, reranker: Reranker | None = None, config: RerankerConfig | None = None, **data: Any
    ) -> None:
        super().__init__(**data)
        if reranker is not None and config is not None:
            raise ValueError("Pass either reranker= or config=, not both.")
        source = reranker if reranker is not None else config
        if source is not None:
            clash = sorted({"model", "device"} & self.model_fields_set)
            if clash:
                kind = "reranker" if reranker is not None else "config"
                raise ValueError(f"{', '.join(clash)} cannot be passed together with {kind}=; set it there.")
            for name in _RANKING_OPTIONS:
                if name not in self.model_fields_set:
                    setattr(self, name, getattr(source, name))
        if reranker is None and config is not None:
            reranker = Reranker.from_config(config)
        elif reranker is None:
            reranker = Reranker(self.model, device=self.device)
        self.model = reranker.model_name
        self.device = reranker.device
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerank"

    @property
    def reranker(self) -> Reranker:
        """The :class:`crossrank.Reranker` that scores the nodes."""
        return self._reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        with self._rerank_events(nodes, query_bundle) as new_nodes:
            ranking = self._reranker.rank(
                query, texts, self.top_n, normalize=self.normalize, min_score=self.min_score
            )
            new_nodes += self._to_nodes(nodes, ranking)
        return new_nodes

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        with self._rerank_events(nodes, query_bundle) as new_nodes:
            ranking = await self._reranker.arank(
                query, texts, self.top_n, normalize=self.normalize, min_score=self.min_score
            )
            new_nodes += self._to_nodes(nodes, ranking)
        return new_nodes

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _prepare(nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        return query_bundle.query_str, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

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
