"""A config-driven RAG app: corpus, retriever, crossrank reranker and LLM, all from one YAML file.

    CROSSRANK_MODEL=../shared/models/crossrank-fixture-minilm-l6 \\
        python examples/rag_app/app.py "How does a cross-encoder score a passage?"

The ``reranker`` section is a :class:`crossrank.RerankerConfig` (so ``CROSSRANK_*`` variables
override it, as above, where the hub can't be reached); the ``llm`` section picks an offline echo
stand-in or any OpenAI-compatible chat server. Needs ``pip install 'crossrank[eval,onnx]'``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crossrank import Ranking, Reranker, RerankerConfig
from crossrank.corpus import CorpusDocument, read_corpus
from crossrank.demo import default_corpus_path

HERE = Path(__file__).resolve().parent


class BM25Retriever:
    """Stage 1: BM25 (bm25s, English stop words) over the corpus, indexed once."""

    def __init__(self, documents: list[CorpusDocument], k: int) -> None:
        import bm25s

        self.documents, self.k = documents, k
        self._bm25 = bm25s.BM25()
        tokens = bm25s.tokenize([d.text for d in documents], stopwords="en", show_progress=False)
        self._bm25.index(tokens, show_progress=False)

    def retrieve(self, query: str) -> list[CorpusDocument]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        positions, _ = self._bm25.retrieve(tokens, k=min(self.k, len(self.documents)), show_progress=False)
        return [self.documents[int(i)] for i in positions[0]]


class EchoLLM:
    """An offline stand-in for the LLM: answers by quoting the context it was given."""

    def answer(self, question: str, context: list[str]) -> str:
        if not context:
            return "I found nothing relevant enough to answer."
        return f"From {len(context)} passages: {context[0][:200]}"


@dataclass
class OpenAICompatibleLLM:
    """Any OpenAI-compatible chat completions server (OpenAI, vLLM, Ollama, LiteLLM...)."""

    model: str
    base_url: str
    api_key_env: str

    def answer(self, question: str, context: list[str]) -> str:
        import httpx

        prompt = "Answer from these passages only.\n\n" + "\n\n".join(context) + f"\n\nQuestion: {question}"
        response = httpx.post(
            f"{self.base_url.rstrip('/')}/chat/completions",
            headers={"Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"},
            json={"model": self.model, "messages": [{"role": "user", "content": prompt}]},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]


@dataclass
class RagApp:
    retriever: BM25Retriever
    reranker: Reranker
    llm: Any

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> RagApp:
        settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        corpus = settings["corpus"]["path"] or default_corpus_path()
        retriever = BM25Retriever(read_corpus(corpus), k=int(settings["retriever"]["k"]))
        reranker = Reranker.from_config(RerankerConfig.from_yaml(path, section="reranker"))
        llm_settings = dict(settings["llm"])
        kind = llm_settings.pop("kind")
        llm = EchoLLM() if kind == "echo" else OpenAICompatibleLLM(**llm_settings)
        return cls(retriever, reranker, llm)

    def ask(self, question: str) -> tuple[str, Ranking]:
        """The answer, and the chunks passed to the LLM (best first; the Ranking counts the rest)."""
        candidates = self.retriever.retrieve(question)
        best = self.reranker.rank(question, [d.text for d in candidates])
        return self.llm.answer(question, [hit.text for hit in best]), best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("question", nargs="+")
    parser.add_argument("--config", default=str(HERE / "app.yaml"))
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    app = RagApp.from_yaml(args.config)
    for question in args.question:
        answer, chunks = app.ask(question)
        if args.json:
            print(
                json.dumps({"question": question, "answer": answer, "chunks": [c.to_dict() for c in chunks]})
            )
            continue
        print(f"question  {question}")
        print(
            f"reranker  {app.reranker!r}: {len(chunks)} of {chunks.num_candidates} retrieved chunks passed "
            f"to the LLM ({chunks.num_below_min_score} below min_score)"
        )
        for position, chunk in enumerate(chunks, start=1):
            print(f"  {position}. [{chunk.score:.3f}] {chunk.text[:120]}")
        print(f"answer    {answer}\n")


if __name__ == "__main__":
    main()
