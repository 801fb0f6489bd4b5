"""A LangChain RAG chain that retrieves 20 chunks, reranks them with crossrank, and passes the best 3 on.

    pip install -e integrations/langchain-crossrank
    python examples/langchain_rag.py
    python examples/langchain_rag.py --query "does legionella pneumophila cause pneumonia"
    python examples/langchain_rag.py --data ../shared/data/beir-scifact --query "..."

Runs offline: stage 1 is a small BM25 over TREC DL 2019 passages or SciFact abstracts from
../shared/data (a few built-in sentences if it is absent), and the chat model is langchain-core's
fake one. The cross-encoder is --model, else $CROSSRANK_MODEL, else ../shared's fixture model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_crossrank import CrossrankRerank
from pydantic import PrivateAttr

from crossrank import DEFAULT_MODEL

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"
BUILT_IN = [
    "Adult fleas live two to three months, up to a year when they have a host to feed on.",
    "The flea life cycle runs from egg to larva to pupa to adult, in 20 days to a year.",
    "Cats and dogs bring fleas into the house.",
    "The Eiffel Tower is in Paris.",
]


def load_corpus(data: Path) -> list[Document]:
    """TREC DL passages (bm25_top100.jsonl), SciFact abstracts (corpus.jsonl), or the built-in lines."""
    if (data / "bm25_top100.jsonl").is_file():
        with (data / "bm25_top100.jsonl").open(encoding="utf-8") as f:
            hits = {hit["docid"]: hit["text"] for line in f for hit in json.loads(line)["hits"]}
        return [
            Document(page_content=text, id=docid, metadata={"docid": docid}) for docid, text in hits.items()
        ]
    if (data / "corpus.jsonl").is_file():
        with (data / "corpus.jsonl").open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        return [Document(page_content=r["text"], id=r["_id"], metadata={"title": r["title"]}) for r in rows]
    return [Document(page_content=text, id=str(i)) for i, text in enumerate(BUILT_IN)]


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class BM25Retriever(BaseRetriever):
    """Stage 1: Okapi BM25 (k1=0.9, b=0.4, as Anserini) over in-memory documents."""

    documents: list[Document]
    k: int = 20
    _tf: list[Counter[str]] = PrivateAttr()
    _idf: dict[str, float] = PrivateAttr()
    _avgdl: float = PrivateAttr()

    def model_post_init(self, context: object) -> None:
        self._tf = [Counter(tokens(doc.page_content)) for doc in self.documents]
        df = Counter(term for tf in self._tf for term in tf)
        n = len(self._tf)
        self._idf = {term: math.log(1 + (n - d + 0.5) / (d + 0.5)) for term, d in df.items()}
        self._avgdl = sum(sum(tf.values()) for tf in self._tf) / n

    def _score(self, terms: set[str], tf: Counter[str]) -> float:
        norm = 0.9 * (0.6 + 0.4 * sum(tf.values()) / self._avgdl)
        return sum(self._idf[t] * tf[t] * 1.9 / (tf[t] + norm) for t in terms if t in tf)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        terms = set(tokens(query))
        scores = [self._score(terms, tf) for tf in self._tf]
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[: self.k]
        return [self.documents[i] for i in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_model = os.environ.get("CROSSRANK_MODEL") or (
        str(FIXTURE_MODEL) if FIXTURE_MODEL.is_dir() else DEFAULT_MODEL
    )
    parser.add_argument("--model", default=default_model, help="cross-encoder: hub id or directory")
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED / "data" / "trec-dl-2019-passage",
        help="a TREC DL folder (bm25_top100.jsonl) or beir-scifact (corpus.jsonl)",
    )
    parser.add_argument("--query", default="how long is life cycle of flea")
    parser.add_argument("--k", type=int, default=20, help="chunks retrieved by stage 1")
    parser.add_argument("--top-n", type=int, default=3, help="chunks passed to the LLM")
    args = parser.parse_args()

    corpus = load_corpus(args.data)
    retriever = BM25Retriever(documents=corpus, k=args.k)
    compressor = CrossrankRerank(model=args.model, top_n=args.top_n)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from the context only."),
            ("human", "Context:\n{context}\n\nQuestion: {question}"),
        ]
    )
    llm = FakeListChatModel(responses=["(a real chat model would answer here from the chunks above)"])

    rerank = RunnableLambda(lambda x: compressor.compress_documents(x["docs"], x["question"]))
    to_prompt = RunnableLambda(
        lambda x: {"context": "\n\n".join(d.page_content for d in x["chunks"]), "question": x["question"]}
    )
    chain = (
        {"docs": retriever, "question": RunnablePassthrough()}
        | RunnablePassthrough.assign(chunks=rerank)
        | RunnablePassthrough.assign(answer=to_prompt | prompt | llm | StrOutputParser())
    )
    result = chain.invoke(args.query)

    retrieved_ids = [doc.id for doc in result["docs"]]
    print(f"query: {args.query}")
    print(f"BM25 retrieved {len(retrieved_ids)} of {len(corpus)} chunks; {compressor.model} kept:")
    for i, doc in enumerate(result["chunks"], 1):
        text = doc.page_content if len(doc.page_content) <= 150 else doc.page_content[:147] + "..."
        bm25_rank = retrieved_ids.index(doc.id) + 1
        print(f"{i}. score {doc.metadata['relevance_score']:7.3f} (BM25 rank {bm25_rank:2d}) {text}")
    print(f"answer: {result['answer']}")


if __name__ == "__main__":
    main()
