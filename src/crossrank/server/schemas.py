"""Request and response bodies of the rerank APIs crossrank speaks: Cohere (v1, v2; Jina's is
Cohere's v1 plus ``usage``) and Hugging Face text-embeddings-inference (TEI).

Requests ignore keys they don't know (gateways add their own: ``priority``, ``"model-id"``,
``is_truncated``...); responses omit optional fields instead of sending ``null``. Each response
class builds itself from a :class:`~crossrank.Ranking` (``CohereResponse.build``,
``TeiRank.build_list``, ``TeiInfo.build``): the routes hold no body of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

import crossrank
from crossrank.config import RerankerConfig, env_name, refuse_bool_number_confusion
from crossrank.results import RankedDocument, Ranking

if TYPE_CHECKING:
    from crossrank.reranker import Reranker
    from crossrank.server.config import ServerConfig

__all__ = [
    "CohereError",
    "CohereRequest",
    "CohereResponse",
    "RerankBody",
    "TeiError",
    "TeiInfo",
    "TeiRank",
    "TeiRequest",
    "shown_score",
]


def _from_config(name: str) -> Any:
    """A request field with the type and bounds of :class:`~crossrank.RerankerConfig`'s field ``name``."""
    field = RerankerConfig.model_fields[name]
    described = Field(description=f"crossrank: {field.description} Default: the server's ({env_name(name)}).")
    return Annotated[(field.annotation, *field.metadata, described)]


Dedupe = _from_config("dedupe")
MaxTokens = _from_config("max_tokens")
FusionMethod = _from_config("fusion")


class _Request(BaseModel):
    """Unknown keys are ignored; ``dedupe``, ``max_tokens`` and ``fusion`` are crossrank's own."""

    model_config = ConfigDict(extra="ignore")

    dedupe: Dedupe = None
    max_tokens: MaxTokens = None
    fusion: FusionMethod = None

    @field_validator("dedupe", "max_tokens", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: Any) -> Any:
        """``"dedupe": true`` is refused, as everywhere in crossrank (it would quietly mean 1.0)."""
        return refuse_bool_number_confusion(info.field_name, value)


class CohereRequest(_Request):
    """``POST /v1/rerank``, ``/v2/rerank`` (and ``/rerank`` with ``documents``)."""

    query: str = Field(description="The search query.")
    documents: list[str | dict[str, Any]] = Field(
        description="Texts, or objects whose `rank_fields` (default: `text`) are ranked."
    )
    model: str | None = Field(None, description="Accepted and echoed; the server runs one model.")
    top_n: int | None = Field(None, ge=1, description="How many results to return; default: all.")
    return_documents: bool = Field(False, description="Add each result's `document: {text}`.")
    rank_fields: list[str] | None = Field(None, description="Keys of document objects to rank on, in order.")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each document to this many tokens.")
    raw_scores: bool = Field(False, description="crossrank: raw logits instead of 0-1 scores.")


class TeiRequest(_Request):
    """``POST /rerank`` with ``texts`` (Hugging Face text-embeddings-inference)."""

    query: str
    texts: list[str]
    truncate: bool | None = Field(None, description="Cut long texts; null: the server's --auto-truncate.")
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    raw_scores: bool = False
    return_text: bool = False
    top_n: int | None = Field(
        None, ge=1, description="crossrank: keep the best n (TEI ignores it; LiteLLM's huggingface/ sends it)"
    )


def _shape(body: Any) -> str:
    return "tei" if isinstance(body, dict) and "texts" in body else "cohere"


#: The body of ``POST /rerank``: TEI's when it has ``texts``, else Cohere's.
RerankBody = Annotated[
    Annotated[TeiRequest, Tag("tei")] | Annotated[CohereRequest, Tag("cohere")], Discriminator(_shape)
]


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = Field(
        None,
        description='Only when return_documents is true: the document as sent (a string as {"text": ...}).',
    )


def _document(hit: RankedDocument, documents: Sequence[str | dict[str, Any]] | None) -> dict[str, Any]:
    sent = documents[hit.index] if documents is not None else hit.text
    return {"text": sent} if isinstance(sent, str) else dict(sent)  # a copy: the body's own is not shared


class _Units(BaseModel):
    search_units: int = 1


class _ApiVersion(BaseModel):
    version: str


class _Tokens(BaseModel):
    input_tokens: int


class CohereMeta(BaseModel):
    api_version: _ApiVersion
    billed_units: _Units = Field(default_factory=_Units)
    tokens: _Tokens


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class CohereResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: CohereMeta
    model: str
    usage: Usage

    @classmethod
    def build(
        cls,
        ranking: Ranking,
        *,
        version: str,
        model: str,
        tokens: int,
        return_documents: bool = False,
        documents: Sequence[str | dict[str, Any]] | None = None,
    ) -> CohereResponse:
        """The Cohere (v1 or v2, and Jina) answer listing ``ranking``; ``tokens``: the tokens scored.

        With ``return_documents``, each result carries its document as the request sent it
        (``documents[index]``: an object whole, a string as ``{"text": ...}``), or the ranked text
        where ``documents`` isn't given.

        Example:
            >>> hit = RankedDocument(index=1, score=0.9, text="fleas live a year")
            >>> answer = CohereResponse.build(Ranking([hit]), version="2", model="m", tokens=12)
            >>> answer.as_json()["results"], answer.usage.total_tokens
            ([{'index': 1, 'relevance_score': 0.9}], 12)
        """
        results = [
            CohereResult(
                index=hit.index,
                relevance_score=shown_score(hit),
                document=_document(hit, documents) if return_documents else None,
            )
            for hit in ranking
        ]
        return cls(
            id=str(uuid.uuid4()),
            results=results,
            meta=CohereMeta(api_version=_ApiVersion(version=version), tokens=_Tokens(input_tokens=tokens)),
            model=model,
            usage=Usage(total_tokens=tokens, prompt_tokens=tokens),
        )

    def as_json(self) -> dict[str, Any]:
        """The body as sent: optional fields left out, not ``null``."""
        return self.model_dump(exclude_none=True)


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = Field(None, description="Only when return_text is true.")

    @classmethod
    def build_list(cls, ranking: Ranking, *, return_text: bool = False) -> list[TeiRank]:
        """TEI's answer: one rank per document of ``ranking``, in its order.

        Example:
            >>> hit = RankedDocument(index=1, score=0.9, text="fleas live a year")
            >>> TeiRank.as_json(TeiRank.build_list(Ranking([hit]), return_text=True))
            [{'index': 1, 'score': 0.9, 'text': 'fleas live a year'}]
        """
        return [
            cls(index=hit.index, score=shown_score(hit), text=hit.text if return_text else None)
            for hit in ranking
        ]

    @staticmethod
    def as_json(ranks: list[TeiRank]) -> list[dict[str, Any]]:
        """The body as sent (a bare array): ``text`` left out unless asked for."""
        return [rank.model_dump(exclude_none=True) for rank in ranks]


def shown_score(hit: RankedDocument) -> float:
    """The score a client is shown: with fusion the fused one, since clients re-sort by the score
    they get and the order is the fused one."""
    return hit.score if hit.fused_score is None else hit.fused_score


class TeiInfo(BaseModel):
    model_id: str
    model_dtype: str
    model_type: dict[str, dict[str, Any]]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int = 1
    version: str
    backend: str
    #: Beyond TEI's fields: the kind of reranker (crossrank.families) and, for an LLM reranker,
    #: the instruction its prompt carries (None: the model's default, or none).
    family: str
    instruction: str | None

    @classmethod
    def build(cls, reranker: Reranker, config: ServerConfig, model_name: str) -> TeiInfo:
        """TEI's ``GET /info`` for ``reranker`` served with ``config`` as ``model_name``."""
        return cls(
            model_id=model_name,
            model_dtype=reranker.quantize or getattr(reranker.engine, "precision", "fp32"),
            model_type={"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
            max_concurrent_requests=config.max_concurrent_requests,
            max_input_length=reranker.max_length,
            max_batch_tokens=config.max_batch_tokens,
            max_client_batch_size=config.max_client_batch_size,
            auto_truncate=config.auto_truncate,
            version=crossrank.__version__,
            backend=f"crossrank {reranker.backend} on {reranker.device}",
            family=reranker.family,
            instruction=reranker.instruction,
        )


class CohereError(BaseModel):
    message: str


class TeiError(BaseModel):
    error: str
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]
