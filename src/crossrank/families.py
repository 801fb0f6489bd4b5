"""What a model's score is, per family: the one place crossrank knows how each kind of reranker reads
a (query, document) pair and which number it returns.

* **cross-encoder** (BERT, XLM-RoBERTa, ModernBERT, DeBERTa... with one output logit): the model's
  own pair template (``[CLS] query [SEP] document [SEP]``), the score is its logit;
* **LLM rerankers** (causal language models): a fixed prompt around the pair, and the score is
  ``logit("yes") - logit("no")`` at the prompt's last token, so ``normalize=True`` (the sigmoid)
  is P("yes") against P("no"), as their model cards compute it. Each has a :class:`PromptFormat`.

A causal LM crossrank has no prompt for is refused (:func:`detect_family`): scored without its
prompt an LLM reranker's ranking is close to random. The prompt is applied as a tokenizer
template (:meth:`PromptFormat.template_tokenizer`), so everything built on pairs (length-planned
batches, cutting the document to fit, windows) works unchanged, and only the document is cut.

Example:
    >>> detect_family("Qwen/Qwen3-Reranker-0.6B", {"architectures": ["Qwen3ForCausalLM"],
    ...                                             "model_type": "qwen3"}).name
    'qwen3-reranker'
    >>> bert = {"architectures": ["BertForSequenceClassification"]}
    >>> detect_family("cross-encoder/ms-marco-MiniLM-L6-v2", bert).name
    'cross-encoder'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

from crossrank.errors import InvalidArgumentError, UnsupportedModelError

__all__ = [
    "CROSS_ENCODER",
    "FAMILIES",
    "Family",
    "PromptFormat",
    "detect_family",
    "family_names",
    "is_causal_lm",
    "llm_family_named",
]

#: The name of the family of one-logit sequence-classification models.
CROSS_ENCODER = "cross-encoder"


@dataclass(frozen=True)
class PromptFormat:
    """How an LLM reranker reads a pair: ``prefix + query part + between + document part + suffix``.

    The query part and the document part are tokenised apart (the document part once per
    document, cut to fit); the fixed pieces are tokenised one by one, as the families' reference
    code does. The document part starts with a space: ``"...<Document>:"`` + ``" fleas live..."``
    tokenises as the whole string does (byte-level BPE splits before a space-led word).

    Attributes:
        prefix: Fixed pieces before the query part (system message, chat tokens).
        query: The query part, with ``{query}``.
        query_with_instruction: The query part when there is an instruction (``{instruction}``, ``{query}``).
        between: Fixed pieces between the query part and the document part.
        document: The document part, with ``{document}``.
        suffix: Fixed pieces after the document part (the task, the assistant turn).
        default_instruction: The instruction used when none is given (None: none).
        true_token: The token whose logit counts for relevance ("yes").
        false_token: The token whose logit counts against ("no").
    """

    prefix: tuple[str, ...]
    query: str
    query_with_instruction: str
    between: tuple[str, ...]
    document: str
    suffix: tuple[str, ...]
    default_instruction: str | None
    true_token: str
    false_token: str

    def query_text(self, query: str, instruction: str | None = None) -> str:
        """The query part for ``query``, with ``instruction`` or the default one.

        Example:
            >>> FAMILIES["qwen3-reranker"].prompt.query_text("flea", "Find answers")
            '<Instruct>: Find answers\\n<Query>: flea\\n<Document>:'
        """
        instruction = instruction if instruction is not None else self.default_instruction
        template = self.query_with_instruction if instruction else self.query
        return template.format(instruction=instruction or "", query=query)

    def document_text(self, document: str) -> str:
        """The document part for ``document``.

        Example:
            >>> FAMILIES["mxbai-rerank-v2"].prompt.document_text("Fleas live a year.")
            ' Fleas live a year.'
        """
        return self.document.format(document=document)

    def template_tokenizer(self, tokenizer: Tokenizer, model: str) -> Tokenizer:
        """A copy of ``tokenizer`` whose pair template adds the fixed pieces around the two parts.

        Raises:
            UnsupportedModelError: The tokenizer lacks the true or false token.
        """
        self.token_ids(tokenizer, model)

        def piece_ids(pieces: Sequence[str]) -> list[int]:
            return [i for piece in pieces for i in tokenizer.encode(piece, add_special_tokens=False).ids]

        pieces = {"PREFIX": piece_ids(self.prefix), "BETWEEN": piece_ids(self.between)}
        pieces["SUFFIX"] = piece_ids(self.suffix)
        used = [name for name, ids in pieces.items() if ids]
        pair = [*(["PREFIX"] if pieces["PREFIX"] else []), "$A:0"]
        pair += [*(["BETWEEN"] if pieces["BETWEEN"] else []), "$B:0"]
        pair += ["SUFFIX"] if pieces["SUFFIX"] else []
        copy = Tokenizer.from_str(tokenizer.to_str())
        copy.post_processor = TemplateProcessing(
            single="$A:0",
            pair=pair,
            special_tokens=[
                {"id": name, "ids": pieces[name], "tokens": [tokenizer.id_to_token(i) for i in pieces[name]]}
                for name in used
            ],
        )
        return copy

    def token_ids(self, tokenizer: Tokenizer, model: str) -> tuple[int, int]:
        """The ids of :attr:`true_token` and :attr:`false_token`, each one token.

        Raises:
            UnsupportedModelError: Either is not a single token of ``tokenizer``.
        """
        ids = []
        for token in (self.true_token, self.false_token):
            encoded = tokenizer.encode(token, add_special_tokens=False).ids
            if len(encoded) != 1:
                raise UnsupportedModelError(
                    f"Model {model!r}: its tokenizer has no single token for {token!r} (got ids "
                    f"{encoded}), which this LLM reranker's score reads",
                    model=model,
                )
            ids.append(encoded[0])
        return ids[0], ids[1]


@dataclass(frozen=True)
class Family:
    """A kind of reranker: how it reads a pair, and how crossrank recognises it.

    Attributes:
        name: What ``family=`` takes and ``/info`` reports.
        examples: Models of the family.
        prompt: Its prompt (None: a cross-encoder, which scores with its own pair template).
        model_types: ``config.json`` ``model_type`` values it runs on (empty: any).
        names: Lower-case pieces of a hub id or folder name that identify it among causal LMs
            (their ``config.json`` is a plain Qwen one).
    """

    name: str
    examples: tuple[str, ...]
    prompt: PromptFormat | None = None
    model_types: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()

    def pair_tokenizer(self, tokenizer: Tokenizer, model: str) -> Tokenizer:
        """What an engine of this family encodes pairs with: ``tokenizer`` itself for a
        cross-encoder, a copy with the prompt's fixed pieces as its pair template for an LLM one
        (:meth:`PromptFormat.template_tokenizer`).

        Raises:
            UnsupportedModelError: An LLM family's true or false token is not one token of it.
        """
        return tokenizer if self.prompt is None else self.prompt.template_tokenizer(tokenizer, model)


_QWEN_SYSTEM = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n"

#: Every family crossrank scores, by name.
FAMILIES: dict[str, Family] = {
    CROSS_ENCODER: Family(
        CROSS_ENCODER,
        examples=(
            "cross-encoder/ms-marco-MiniLM-L6-v2",
            "BAAI/bge-reranker-v2-m3",
            "Alibaba-NLP/gte-reranker-modernbert-base",
            "mixedbread-ai/mxbai-rerank-base-v1",
        ),
    ),
    # The model card's transformers code (QwenLM/Qwen3-Embedding README): the body
    # "<Instruct>: ...\n<Query>: ...\n<Document>: ..." between a fixed system turn and the assistant
    # turn with an empty think block; softmax over [no, yes] at the last token.
    "qwen3-reranker": Family(
        "qwen3-reranker",
        examples=("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B"),
        prompt=PromptFormat(
            prefix=(
                _QWEN_SYSTEM.format(
                    "Judge whether the Document meets the requirements based on the Query and the "
                    'Instruct provided. Note that the answer can only be "yes" or "no".'
                ),
            ),
            query="<Instruct>: {instruction}\n<Query>: {query}\n<Document>:",
            query_with_instruction="<Instruct>: {instruction}\n<Query>: {query}\n<Document>:",
            between=(),
            document=" {document}",
            suffix=("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",),
            default_instruction="Given a web search query, retrieve relevant passages that answer the query",
            true_token="yes",
            false_token="no",
        ),
        model_types=frozenset({"qwen3"}),
        names=("qwen3-reranker",),
    ),
    # mixedbread-ai/mxbai-rerank (mxbai_rerank_v2.py): pieces tokenised apart and joined as ids;
    # logit("1") - logit("0") at the last token.
    "mxbai-rerank-v2": Family(
        "mxbai-rerank-v2",
        examples=("mixedbread-ai/mxbai-rerank-base-v2", "mixedbread-ai/mxbai-rerank-large-v2"),
        prompt=PromptFormat(
            prefix=(
                _QWEN_SYSTEM.format("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
            ),
            query="query: {query}",
            query_with_instruction="instruction: {instruction}\nquery: {query}",
            between=("\n", "document:"),
            document=" {document}",
            suffix=(
                "\n",
                "You are a search relevance expert who evaluates how well documents match search "
                "queries. For each query-document pair, carefully analyze the semantic relationship "
                "between them, then provide your binary relevance judgment (0 for not relevant, 1 for "
                "relevant).\nRelevance:",
                "<|im_end|>\n<|im_start|>assistant\n",
            ),
            default_instruction=None,
            true_token="1",
            false_token="0",
        ),
        model_types=frozenset({"qwen2"}),
        names=("mxbai-rerank",),
    ),
}


def family_names() -> tuple[str, ...]:
    """The names ``family=`` takes.

    Example:
        >>> family_names()
        ('cross-encoder', 'qwen3-reranker', 'mxbai-rerank-v2')
    """
    return tuple(FAMILIES)


def is_causal_lm(config: Mapping[str, Any]) -> bool:
    """Whether ``config.json`` declares a causal language model (``...ForCausalLM``).

    Example:
        >>> is_causal_lm({"architectures": ["Qwen2ForCausalLM"]}), is_causal_lm({})
        (True, False)
    """
    return any(str(name).endswith("ForCausalLM") for name in config.get("architectures") or ())


def llm_family_named(name: str) -> Family | None:
    """The LLM reranker family whose name pieces (:attr:`Family.names`) are in ``name``, or None:
    the one rule for telling an LLM reranker by its hub id or folder name.

    Example:
        >>> llm_family_named("Qwen/Qwen3-Reranker-0.6B").name, llm_family_named("cross-encoder/ms-marco")
        ('qwen3-reranker', None)
    """
    said = name.lower()
    for family in FAMILIES.values():
        if family.prompt is not None and any(piece in said for piece in family.names):
            return family
    return None


def detect_family(model: str, config: Mapping[str, Any], requested: str | None = None) -> Family:
    """The family of the model named ``model`` (hub id or folder) with ``config.json`` ``config``.

    A sequence-classification model is a cross-encoder. A causal LM is an LLM reranker crossrank
    knows when its name says which (``Qwen3-Reranker``, ``mxbai-rerank``: their configs are plain
    Qwen ones), or when ``requested`` names the family.

    Raises:
        InvalidArgumentError: ``requested`` is not a family.
        UnsupportedModelError: A causal LM crossrank has no prompt for, or ``requested`` doesn't fit
            the model (a cross-encoder asked to be an LLM reranker, or the other way round).

    Example:
        >>> detect_family("my/qwen-chat", {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"})
        Traceback (most recent call last):
        ...
        crossrank.errors.UnsupportedModelError: Model 'my/qwen-chat' is a causal language model ...
    """
    causal = is_causal_lm(config)
    if requested is not None:
        if requested not in FAMILIES:
            raise InvalidArgumentError(f"unknown family {requested!r}; choose one of {', '.join(FAMILIES)}")
        family = FAMILIES[requested]
        if causal != (family.prompt is not None):
            kind = "a causal language model" if causal else "not a causal language model"
            raise UnsupportedModelError(
                f"family={requested!r} doesn't fit model {model!r}: it is {kind} "
                f"({', '.join(config.get('architectures') or ['no architectures'])})",
                model=model,
            )
        return family
    if not causal:
        return FAMILIES[CROSS_ENCODER]
    named = llm_family_named(f"{model} {config.get('_name_or_path', '')}")
    if named is not None and config.get("model_type") in named.model_types:
        return named
    known = "; ".join(
        f"{family.name} ({', '.join(family.examples)})" for family in FAMILIES.values() if family.prompt
    )
    raise UnsupportedModelError(
        f"Model {model!r} is a causal language model ({', '.join(config['architectures'])}) that crossrank "
        f"has no reranking prompt for, and scored without its prompt an LLM's ranking is close to "
        f"random. The LLM rerankers crossrank runs: {known}. If the model is one of them under "
        "another name, say which with family='...'.",
        model=model,
    )
