"""CrossrankRerank on hand-made documents, scored by the real fixture model (shared, loaded once)."""

from __future__ import annotations

import asyncio
import copy
import math
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_crossrank import CrossrankRerank
from pydantic import ValidationError

from crossrank import DocumentTypeError, EmptyQueryError, ModelLoadError, Reranker, RerankerConfig

pytestmark = pytest.mark.real_model

QUERY = "how long does a flea live"
TEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Adult fleas live two to three months without a host, and up to a year when they have one to feed on.",
    "Bananas are rich in potassium and vitamin B6.",
    "The flea life cycle goes from egg to larva to pupa to adult and can take from 20 days to a whole year.",
    "Dogs and cats often carry fleas into the house.",
]


def make_docs(texts: list[str] = TEXTS) -> list[Document]:
    return [
        Document(page_content=text, id=f"doc-{i}", metadata={"pos": i, "source": {"tags": ["unit"]}})
        for i, text in enumerate(texts)
    ]


def dump(docs: list[Document]) -> list[dict]:
    return [copy.deepcopy(doc.model_dump()) for doc in docs]


def test_returns_copies_of_the_best_top_n_with_scores(reranker: Reranker) -> None:
    docs = make_docs()
    before = dump(docs)
    out = CrossrankRerank(reranker=reranker, top_n=3).compress_documents(docs, QUERY)

    expected = reranker.rank(QUERY, TEXTS, top_n=3)
    assert [doc.id for doc in out] == [f"doc-{hit.index}" for hit in expected]
    assert {out[0].id, out[1].id} == {"doc-1", "doc-3"}  # the two flea passages lead
    scores = [doc.metadata["relevance_score"] for doc in out]
    assert scores == pytest.approx([hit.score for hit in expected], rel=1e-6, abs=1e-6)
    assert all(type(score) is float for score in scores)
    assert scores == sorted(scores, reverse=True)
    for doc, hit in zip(out, expected, strict=True):
        src = docs[hit.index]
        assert type(doc) is Document and doc.type == "Document"
        assert doc.page_content == src.page_content
        assert doc.metadata == {**src.metadata, "relevance_score": doc.metadata["relevance_score"]}
        assert doc is not src and doc.metadata is not src.metadata
        assert doc.metadata["source"] is not src.metadata["source"]  # deep copy: nothing shared

    # The caller's documents are untouched, now and after the copies are edited.
    assert dump(docs) == before
    out[0].metadata["source"]["tags"].append("edited")
    out[0].metadata["pos"] = -1
    assert dump(docs) == before


def test_fewer_documents_than_top_n_are_all_returned_ranked(reranker: Reranker) -> None:
    docs = make_docs(TEXTS[:2])
    out = CrossrankRerank(reranker=reranker, top_n=3).compress_documents(docs, QUERY)
    assert [doc.id for doc in out] == ["doc-1", "doc-0"]
    assert out[0].metadata["relevance_score"] > out[1].metadata["relevance_score"]


def test_top_n_none_returns_every_document_ranked(reranker: Reranker) -> None:
    out = CrossrankRerank(reranker=reranker, top_n=None).compress_documents(make_docs(), QUERY)
    assert sorted(doc.id for doc in out) == [f"doc-{i}" for i in range(len(TEXTS))]
    scores = [doc.metadata["relevance_score"] for doc in out]
    assert scores == sorted(scores, reverse=True)


async def test_no_documents_give_an_empty_list(reranker: Reranker) -> None:
    compressor = CrossrankRerank(reranker=reranker)
    assert compressor.compress_documents([], QUERY) == []
    assert await compressor.acompress_documents([], QUERY) == []


def test_empty_page_content_is_scored_not_dropped(reranker: Reranker) -> None:
    docs = [Document(page_content="", id="empty"), *make_docs(TEXTS[:1])]
    out = CrossrankRerank(reranker=reranker, top_n=3).compress_documents(docs, QUERY)
    assert {doc.id for doc in out} == {"empty", "doc-0"}
    (empty,) = (doc for doc in out if doc.id == "empty")
    assert empty.page_content == ""
    # Scored alone the padding differs, so float32 rounding may differ in the 6th digit.
    assert empty.metadata["relevance_score"] == pytest.approx(reranker.score(QUERY, [""])[0], abs=1e-4)


def test_min_score_leaves_out_low_scores(reranker: Reranker) -> None:
    compressor = CrossrankRerank(reranker=reranker, top_n=5, normalize=True, min_score=0.5)
    out = compressor.compress_documents(make_docs(), QUERY)
    assert [doc.id for doc in out] == ["doc-1", "doc-3"]  # the others score below 0.5
    assert all(0.5 <= doc.metadata["relevance_score"] < 1.0 for doc in out)


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([Document(page_content="fleas"), "plain text"], r"documents\[1\] is str, expected a langchain_core"),
        ([{"page_content": "fleas"}], r"documents\[0\] is dict, expected a langchain_core"),
        (Document(page_content="fleas"), r"got Document; wrap it in a list"),
        ("fleas", r"documents must be a list of langchain_core\.documents\.Document, got str"),
        (None, r"documents must be a list of langchain_core\.documents\.Document, got NoneType"),
    ],
)
async def test_non_documents_are_rejected_by_name(
    reranker: Reranker, documents: object, message: str
) -> None:
    compressor = CrossrankRerank(reranker=reranker)
    with pytest.raises(DocumentTypeError, match=message) as err:
        compressor.compress_documents(documents, QUERY)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError)
    with pytest.raises(DocumentTypeError, match=message):
        await compressor.acompress_documents(documents, QUERY)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
async def test_blank_query_is_rejected(reranker: Reranker, query: str) -> None:
    compressor = CrossrankRerank(reranker=reranker)
    with pytest.raises(EmptyQueryError, match="query has no tokens the model can read") as err:
        compressor.compress_documents(make_docs(), query)
    assert isinstance(err.value, ValueError)
    with pytest.raises(EmptyQueryError, match="query has no tokens the model can read"):
        await compressor.acompress_documents(make_docs(), query)


def test_non_str_query_is_rejected(reranker: Reranker) -> None:
    with pytest.raises(TypeError, match="query must be a str, got NoneType"):
        CrossrankRerank(reranker=reranker).compress_documents(make_docs(), None)  # type: ignore[arg-type]


def test_one_reranker_serves_many_compressors(reranker: Reranker) -> None:
    top3 = CrossrankRerank(reranker=reranker, top_n=3)
    top1 = CrossrankRerank(reranker=reranker, top_n=1, normalize=True)
    assert top3.reranker is reranker and top1.reranker is reranker
    assert top3.model == top1.model == reranker.model_name
    out3, out1 = top3.compress_documents(make_docs(), QUERY), top1.compress_documents(make_docs(), QUERY)
    assert [doc.id for doc in out1] == [out3[0].id]
    assert out1[0].metadata["relevance_score"] == pytest.approx(
        1 / (1 + math.exp(-out3[0].metadata["relevance_score"])), abs=1e-6
    )
    assert (reranker.top_n, reranker.normalize) == (3, False)  # per-compressor options leave it as it was


def test_options_not_given_come_from_the_reranker(fixture_model_dir: Path) -> None:
    reranker = Reranker(fixture_model_dir, device="cpu", top_n=2, normalize=True, min_score=0.1)
    inherited = CrossrankRerank(reranker=reranker)
    assert (inherited.model, inherited.top_n, inherited.normalize, inherited.min_score) == (
        str(fixture_model_dir),
        2,
        True,
        0.1,
    )
    out = inherited.compress_documents(make_docs(), QUERY)
    assert len(out) == 2 and all(0.1 <= doc.metadata["relevance_score"] < 1 for doc in out)
    overridden = CrossrankRerank(reranker=reranker, top_n=4, normalize=False, min_score=None)
    assert (overridden.top_n, overridden.normalize, overridden.min_score) == (4, False, None)
    assert len(overridden.compress_documents(make_docs(), QUERY)) == 4


def test_config_from_yaml_builds_the_reranker(tmp_path: Path, fixture_model_dir: Path) -> None:
    app_yaml = tmp_path / "app.yaml"
    app_yaml.write_text(
        f"reranker:\n  model: {fixture_model_dir}\n  device: cpu\n  top_n: 2\n  normalize: true\n",
        encoding="utf-8",
    )
    compressor = CrossrankRerank(config=RerankerConfig.from_yaml(app_yaml, section="reranker"))
    assert (compressor.model, compressor.top_n, compressor.normalize) == (str(fixture_model_dir), 2, True)
    assert compressor.reranker.device == "cpu"
    out = compressor.compress_documents(make_docs(), QUERY)
    assert [doc.id for doc in out] == ["doc-1", "doc-3"]
    assert all(0 < doc.metadata["relevance_score"] < 1 for doc in out)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch, fixture_model_dir: Path) -> None:
    monkeypatch.setenv("CROSSRANK_MODEL", str(fixture_model_dir))
    monkeypatch.setenv("CROSSRANK_DEVICE", "cpu")
    monkeypatch.setenv("CROSSRANK_TOP_N", "1")
    compressor = CrossrankRerank(config=RerankerConfig(), top_n=2)  # explicit top_n wins over the env
    assert (compressor.model, compressor.top_n) == (str(fixture_model_dir), 2)
    assert len(compressor.compress_documents(make_docs(), QUERY)) == 2


def test_model_path_loads_a_reranker(fixture_model_dir: Path) -> None:
    compressor = CrossrankRerank(model=fixture_model_dir, top_n=2)  # a Path is accepted
    assert compressor.model == str(fixture_model_dir)
    assert isinstance(compressor.reranker, Reranker)
    assert [doc.id for doc in compressor.compress_documents(make_docs(), QUERY)] == ["doc-1", "doc-3"]


def test_missing_model_raises_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        CrossrankRerank(model=str(tmp_path / "no-such-model"))


@pytest.mark.parametrize(
    ("sources", "named"),
    [
        ({"model": "cross-encoder/ms-marco-MiniLM-L6-v2"}, "`model` and `reranker`"),
        ({"config": RerankerConfig(model="/no/such/dir")}, "`reranker` and `config`"),
    ],
)
def test_a_second_model_source_next_to_reranker_is_an_error(
    reranker: Reranker, sources: dict, named: str
) -> None:
    with pytest.raises(ValidationError, match=f"the model comes from exactly one of .*; got {named}"):
        CrossrankRerank(reranker=reranker, **sources)


def test_model_and_config_together_is_an_error() -> None:
    with pytest.raises(ValidationError, match="got `model` and `config`"):
        CrossrankRerank(model="/no/such/dir", config=RerankerConfig(model="/no/such/dir"))


@pytest.mark.parametrize(
    "options", [{"top_n": 0}, {"top_n": -3}, {"min_score": math.nan}, {"topn": 3}, {"device": "cpu"}]
)
def test_invalid_options_are_rejected(reranker: Reranker, options: dict) -> None:
    with pytest.raises(ValidationError):
        CrossrankRerank(reranker=reranker, **options)


async def test_async_matches_sync(reranker: Reranker) -> None:
    compressor = CrossrankRerank(reranker=reranker, top_n=3)
    docs = make_docs()
    sync = compressor.compress_documents(docs, QUERY)
    out = await compressor.acompress_documents(docs, QUERY)
    assert [doc.id for doc in out] == [doc.id for doc in sync]
    assert [doc.metadata["relevance_score"] for doc in out] == pytest.approx(
        [doc.metadata["relevance_score"] for doc in sync], rel=1e-6, abs=1e-6
    )
    assert [doc.model_dump(exclude={"metadata"}) for doc in out] == [
        doc.model_dump(exclude={"metadata"}) for doc in sync
    ]
    assert all("relevance_score" not in doc.metadata for doc in docs)


async def test_async_does_not_block_the_event_loop(reranker: Reranker) -> None:
    compressor = CrossrankRerank(reranker=reranker, top_n=3)
    docs = make_docs(TEXTS * 8)  # 40 documents: the forward passes take a while on CPU
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.002)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    out = await compressor.acompress_documents(docs, QUERY)
    done.set()
    await beat
    assert len(out) == 3
    assert ticks >= 5, "the event loop did not run while the documents were scored"
