"""Request and response bodies of the rerank APIs crossrank speaks: Cohere (v1, v2; Jina's is
Cohere's v1 plus ``usage``) and Hugging Face text-embeddings-inference (TEI).

Requests ignore keys they don't know (gateways add their own: ``priority``, ``"model-id"``,
``is_truncated``...); responses omit optional fields instead of sending ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from crossrank.config import RerankerConfig, env_name

__all__ = [
    "CohereError",
    "CohereRequest",
    "CohereResponse",
    "RerankBody",
    "TeiError",
    "TeiInfo",
    "TeiRank",
    "TeiRequest",
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


class CohereDocument(BaseModel):
    text: str


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: CohereDocument | None = Field(None, description="Only when return_documents is true.")


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


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = Field(None, description="Only when return_text is true.")


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


class CohereError(BaseModel):
    message: str


class TeiError(BaseModel):
    error: str
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]
