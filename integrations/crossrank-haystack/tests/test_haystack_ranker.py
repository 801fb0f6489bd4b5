"""CrossrankRanker on the tiny random model: results, copies, warm-up, serialization, errors."""

from __future__ import annotations

import asyncio
import inspect
import math
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from haystack import Document, Pipeline
from haystack.core.errors import SerializationError
from haystack.utils import ComponentDevice, Secret
from haystack_integrations.components.rankers.crossrank import CrossrankRanker
from haystack_integrations.components.rankers.crossrank import ranker as ranker_module

from crossrank import (
    DocumentTypeError,
    EmptyQueryError,
    InvalidArgumentError,
    ModelLoadError,
    Reranker,
    RerankerConfig,
)

QUERY = "how long does a flea live"
TEXTS = [
    "the eiffel tower is in paris",
    "fleas live for a year with a host",
    "coffee and tea have caffeine",
    "a flea life cycle is long",
    "bread dough needs rest",
]


def documents() -> list[Document]:
    return [
        Document(content=text, meta={"title": f"t{i}", "tags": ["a", "b"], "rank": i}, score=float(-i))
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture
def ranker(tiny_reranker: Reranker) -> CrossrankRanker:
    """A component over the session's loaded tiny model (shared: nothing to load)."""
    return CrossrankRanker(reranker=tiny_reranker, top_k=3)


# ---------------------------------------------------------------- results


def test_run_returns_the_cores_ranking_as_new_documents(ranker, tiny_reranker) -> None:
    docs = documents()
    ranked = ranker.run(query=QUERY, documents=docs)["documents"]
    core = tiny_reranker.rank(QUERY, TEXTS, top_n=3, normalize=True)
    assert [doc.content for doc in ranked] == [hit.text for hit in core]
    assert [doc.id for doc in ranked] == [docs[hit.index].id for hit in core]
    assert [doc.meta for doc in ranked] == [docs[hit.index].meta for hit in core]
    assert [doc.score for doc in ranked] == [hit.score for hit in core]
    assert all(type(doc.score) is float and 0.0 < doc.score < 1.0 for doc in ranked)
    assert [doc.score for doc in ranked] == sorted((doc.score for doc in ranked), reverse=True)


def test_normalize_false_gives_the_logits(tiny_reranker) -> None:
    ranker = CrossrankRanker(reranker=tiny_reranker, top_k=None, normalize=False)
    ranked = ranker.run(query=QUERY, documents=documents())["documents"]
    logits = tiny_reranker.score(QUERY, TEXTS, normalize=False)
    assert len(ranked) == len(TEXTS)
    assert sorted(doc.score for doc in ranked) == sorted(logits)
    normalized = CrossrankRanker(reranker=tiny_reranker, top_k=None).run(query=QUERY, documents=documents())
    probabilities = {doc.id: doc.score for doc in normalized["documents"]}
    for doc in ranked:
        assert probabilities[doc.id] == pytest.approx(1.0 / (1.0 + math.exp(-doc.score)), abs=1e-12)


def test_run_options_override_the_components(ranker, tiny_reranker) -> None:
    assert len(ranker.run(query=QUERY, documents=documents(), top_k=1)["documents"]) == 1
    assert len(ranker.run(query=QUERY, documents=documents())["documents"]) == 3  # the override was per call
    scores = sorted(tiny_reranker.score(QUERY, TEXTS, normalize=True), reverse=True)
    threshold = (scores[1] + scores[2]) / 2  # exactly two documents score above it
    kept = ranker.run(query=QUERY, documents=documents(), score_threshold=threshold)["documents"]
    assert [doc.score for doc in kept] == scores[:2]
    strict = CrossrankRanker(reranker=tiny_reranker, top_k=5, score_threshold=threshold)
    assert len(strict.run(query=QUERY, documents=documents())["documents"]) == 2


def test_meta_fields_and_affixes_are_scored_with_the_content(tiny_reranker) -> None:
    ranker = CrossrankRanker(
        reranker=tiny_reranker,
        top_k=None,
        meta_fields_to_embed=["title", "missing"],
        embedding_separator=" | ",
        query_prefix="query: ",
        query_suffix=" ?",
        document_prefix="passage: ",
        document_suffix=" .",
    )
    docs = documents()
    ranked = ranker.run(query=QUERY, documents=docs)["documents"]
    texts = [f"passage: t{i} | {text} ." for i, text in enumerate(TEXTS)]
    core = tiny_reranker.rank(f"query: {QUERY} ?", texts, top_n=None, normalize=True)
    assert [(doc.id, doc.score) for doc in ranked] == [(docs[hit.index].id, hit.score) for hit in core]
    plain = CrossrankRanker(reranker=tiny_reranker, top_k=None).run(query=QUERY, documents=docs)["documents"]
    assert {d.id: d.score for d in plain} != {d.id: d.score for d in ranked}  # the extra text counts


def test_documents_without_content_are_scored_not_dropped(ranker) -> None:
    docs = [Document(content=None, meta={"title": "x"}), *documents()]
    ranked = ranker.run(query=QUERY, documents=docs, top_k=10)["documents"]
    assert len(ranked) == len(docs)


def test_no_documents_give_an_empty_list(ranker) -> None:
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}


def test_duplicate_ids_are_ranked_once_keeping_the_best_incoming_score(ranker) -> None:
    docs = documents()
    better = Document(id=docs[1].id, content=docs[1].content, meta={"copy": "better"}, score=100.0)
    ranked = ranker.run(query=QUERY, documents=[*docs, better], top_k=10)["documents"]
    assert len(ranked) == len(docs)
    assert [doc.meta for doc in ranked if doc.id == docs[1].id] == [{"copy": "better"}]


def test_run_async_gives_what_run_gives(ranker) -> None:
    sync = ranker.run(query=QUERY, documents=documents())["documents"]
    result = asyncio.run(ranker.run_async(query=QUERY, documents=documents()))["documents"]
    assert [(d.id, d.score) for d in result] == [(d.id, d.score) for d in sync]


# ---------------------------------------------------------------- the caller's documents are left alone


def test_input_documents_are_never_modified(ranker) -> None:
    docs = documents()
    docs[0] = Document(content=TEXTS[0], meta={"nested": {"k": [1, 2]}}, embedding=[0.5, 0.25])
    before = [doc.to_dict() for doc in docs]
    listed = list(docs)
    ranked = ranker.run(query=QUERY, documents=docs, top_k=None)["documents"]
    assert [doc.to_dict() for doc in docs] == before  # scores included: still the retriever's
    assert docs == listed and all(a is b for a, b in zip(docs, listed, strict=True))
    by_id = {doc.id: doc for doc in docs}
    for doc in ranked:
        original = by_id[doc.id]
        assert doc is not original
        assert doc.meta is not original.meta
        assert doc.score != original.score
    copy0 = next(doc for doc in ranked if doc.id == docs[0].id)
    assert copy0.embedding == [0.5, 0.25] and copy0.embedding is not docs[0].embedding
    copy0.meta["nested"]["k"].append(3)  # deep copies: nothing shared with the input
    assert docs[0].meta == {"nested": {"k": [1, 2]}}


# ---------------------------------------------------------------- warm_up


class Loads:
    """How many models were loaded (Reranker objects constructed) while a test ran."""

    count = 0


@pytest.fixture
def counting(monkeypatch) -> type[Loads]:
    """Count every Reranker construction: Reranker(...) and Reranker.from_config(...) alike."""
    Loads.count = 0
    original = Reranker.__init__

    def counting_init(self: Reranker, *args: Any, **kwargs: Any) -> None:
        Loads.count += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(Reranker, "__init__", counting_init)
    return Loads


def test_nothing_is_loaded_before_warm_up(counting, tiny_model_dir) -> None:
    CrossrankRanker(model=str(tiny_model_dir), device="cpu")
    CrossrankRanker(model=tiny_model_dir / "missing", device="cpu")  # a bad path fails at warm_up only
    assert counting.count == 0


def test_warm_up_loads_the_model_once(counting, tiny_model_dir) -> None:
    ranker = CrossrankRanker(model=tiny_model_dir, device="cpu")
    ranker.warm_up()
    loaded = ranker._reranker
    assert isinstance(loaded, Reranker) and counting.count == 1
    ranker.warm_up()
    asyncio.run(ranker.warm_up_async())
    ranker.run(query=QUERY, documents=documents())
    asyncio.run(ranker.run_async(query=QUERY, documents=documents()))
    assert counting.count == 1 and ranker._reranker is loaded
    assert loaded.model_name == str(tiny_model_dir) and loaded.device == "cpu"


def test_concurrent_warm_ups_load_once(counting, tiny_model_dir) -> None:
    ranker = CrossrankRanker(model=str(tiny_model_dir), device="cpu")
    threads = [threading.Thread(target=ranker.warm_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counting.count == 1


def test_run_warms_up_and_a_pipeline_loads_once(counting, tiny_model_dir) -> None:
    pipeline = Pipeline()
    pipeline.add_component("ranker", CrossrankRanker(model=str(tiny_model_dir), device="cpu", top_k=2))
    for _ in range(2):
        out = pipeline.run({"ranker": {"query": QUERY, "documents": documents()}})
        assert len(out["ranker"]["documents"]) == 2
    assert counting.count == 1


def test_config_builds_the_reranker(tiny_model_dir) -> None:
    config = {"model": tiny_model_dir, "device": "cpu", "batch_size": 2, "max_length": 64}
    ranker = CrossrankRanker(config=config)
    assert ranker.config == {**config, "model": str(tiny_model_dir)}  # a path is written as a str
    ranker.warm_up()
    assert (ranker._reranker.batch_size, ranker._reranker.max_length) == (2, 64)
    settings = RerankerConfig(model=str(tiny_model_dir), device="cpu", batch_size=3)
    from_object = CrossrankRanker(config=settings)
    assert from_object.config == {"model": str(tiny_model_dir), "device": "cpu", "batch_size": 3}


def test_a_shared_reranker_is_used_as_is(tiny_reranker, counting) -> None:
    a = CrossrankRanker(reranker=tiny_reranker, top_k=1)
    b = CrossrankRanker(reranker=tiny_reranker, top_k=4)
    a.warm_up()
    assert a._reranker is tiny_reranker and b._reranker is tiny_reranker and counting.count == 0
    assert len(a.run(query=QUERY, documents=documents())["documents"]) == 1
    assert len(b.run(query=QUERY, documents=documents())["documents"]) == 4


# ---------------------------------------------------------------- to_dict / from_dict


def every_parameter(tiny_model_dir: Path) -> dict[str, Any]:
    """A non-default value for every serializable init parameter."""
    return {
        "model": str(tiny_model_dir),
        "device": ComponentDevice.from_str("cpu"),
        "token": Secret.from_env_var(["MY_HF_TOKEN"], strict=False),
        "top_k": 7,
        "query_prefix": "query: ",
        "query_suffix": " ?",
        "document_prefix": "passage: ",
        "document_suffix": " .",
        "meta_fields_to_embed": ["title", "section"],
        "embedding_separator": " | ",
        "normalize": False,
        "score_threshold": -1.5,
        "dedupe": 0.9,
        "max_tokens": 500,
        "fusion": "rrf",
        "config": None,
    }


def test_to_dict_from_dict_round_trips_every_init_parameter(tiny_model_dir) -> None:
    params = every_parameter(tiny_model_dir)
    signature = set(inspect.signature(CrossrankRanker.__init__).parameters) - {"self"}
    # `reranker` (a loaded model) is written as `config`: see test_a_shared_reranker_is_written_as_its_config
    assert set(params) == signature - {"reranker"}
    defaults = {name: p.default for name, p in inspect.signature(CrossrankRanker.__init__).parameters.items()}
    assert all(params[name] != defaults[name] for name in params if name != "config")

    original = CrossrankRanker(**params)
    data = original.to_dict()
    assert data["type"] == "haystack_integrations.components.rankers.crossrank.ranker.CrossrankRanker"
    assert set(data["init_parameters"]) == set(params)
    assert data["init_parameters"]["device"] == {"type": "single", "device": "cpu"}
    token = {"type": "env_var", "env_vars": ["MY_HF_TOKEN"], "strict": False}
    assert data["init_parameters"]["token"] == token

    restored = CrossrankRanker.from_dict(data)
    for name, value in params.items():
        got = getattr(restored, name)
        if isinstance(value, (ComponentDevice, Secret)):
            assert got.to_dict() == value.to_dict(), name
        else:
            assert got == value, name
    assert restored.to_dict() == data

    # And the config form: every crossrank option it sets comes back.
    config = {
        "model": str(tiny_model_dir),
        "device": "cpu",
        "batch_size": 4,
        "max_length": 96,
        "long_documents": "windows",
        "stride": 16,
        "max_windows": 8,
        "local_files_only": True,
    }
    with_config = CrossrankRanker(config=config, top_k=None, score_threshold=0.25)
    data = with_config.to_dict()
    assert data["init_parameters"]["config"] == config
    assert CrossrankRanker.from_dict(data).to_dict() == data


def test_pipeline_dumps_and_loads_the_component(tiny_model_dir) -> None:
    pipeline = Pipeline()
    pipeline.add_component("ranker", CrossrankRanker(**every_parameter(tiny_model_dir)))
    text = pipeline.dumps()
    assert "haystack_integrations.components.rankers.crossrank.ranker.CrossrankRanker" in text
    loaded = Pipeline.loads(text)  # the default allowlist
    assert loaded.get_component("ranker").to_dict() == pipeline.get_component("ranker").to_dict()
    assert loaded.dumps() == text


def test_a_shared_reranker_is_written_as_its_config(tiny_reranker, tiny_model_dir) -> None:
    data = CrossrankRanker(reranker=tiny_reranker, top_k=2).to_dict()
    config = data["init_parameters"]["config"]
    assert config["model"] == str(tiny_model_dir) and config["device"] == "cpu"
    assert not {"top_n", "normalize", "min_score"} & set(config)
    assert "reranker" not in data["init_parameters"]
    restored = CrossrankRanker.from_dict(data)
    restored.warm_up()
    assert restored._reranker is not tiny_reranker
    expected = tiny_reranker.to_config().model_dump(exclude={"top_n", "normalize", "min_score"})
    assert restored._reranker.to_config().model_dump(exclude={"top_n", "normalize", "min_score"}) == expected


def test_a_token_string_never_reaches_to_dict() -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape("token must be a haystack.utils.Secret")):
        CrossrankRanker(token="hf_secret")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        CrossrankRanker(token=Secret.from_token("hf_secret")).to_dict()
    pipeline = Pipeline()
    pipeline.add_component("ranker", CrossrankRanker(token=Secret.from_token("hf_secret")))
    with pytest.raises((ValueError, SerializationError)):
        pipeline.dumps()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([Document(content="a"), "plain text"], "documents[1] is str, expected a haystack.Document"),
        ([Document(content="a"), Document(content="b"), None], "documents[2] is NoneType, expected"),
        ([{"content": "a"}], "documents[0] is dict"),
        (Document(content="a"), "documents must be a list of haystack.Document, got Document; wrap it"),
        ("a text", "documents must be a list of haystack.Document, got str"),
    ],
)
def test_a_non_document_is_a_document_type_error(ranker, items, message) -> None:
    with pytest.raises(DocumentTypeError, match=re.escape(message)):
        ranker.run(query=QUERY, documents=items)
    with pytest.raises(DocumentTypeError, match=re.escape(message)):
        asyncio.run(ranker.run_async(query=QUERY, documents=items))


@pytest.mark.parametrize("affixes", [{}, {"query_prefix": "query: "}], ids=["plain", "with-prefix"])
@pytest.mark.parametrize("query", ["", "   ", "\u200b"])
def test_an_empty_query_is_an_empty_query_error(tiny_reranker, affixes, query) -> None:
    ranker = CrossrankRanker(reranker=tiny_reranker, **affixes)
    with pytest.raises(EmptyQueryError):
        ranker.run(query=query, documents=documents())


@pytest.mark.parametrize("affixes", [{}, {"query_suffix": " ?"}], ids=["plain", "with-suffix"])
def test_a_query_that_is_not_a_str_is_a_document_type_error(tiny_reranker, affixes) -> None:
    ranker = CrossrankRanker(reranker=tiny_reranker, **affixes)
    with pytest.raises(DocumentTypeError, match="query must be a str, got int"):
        ranker.run(query=42, documents=documents())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k must be a positive int or None, got 0"),
        ({"top_k": True}, "top_k must be a positive int or None, got True"),
        ({"score_threshold": math.nan}, "score_threshold must be a number (not NaN) or None, got nan"),
        ({"score_threshold": "0.5"}, "score_threshold must be a number (not NaN) or None, got '0.5'"),
        ({"normalize": "yes"}, "normalize must be True or False, got 'yes'"),
        ({"normalize": None}, "normalize must be True or False, got None"),
        ({"meta_fields_to_embed": "title"}, "meta_fields_to_embed must be a list"),
        ({"meta_fields_to_embed": ["title", 3]}, "meta_fields_to_embed[1] must be a str"),
        ({"embedding_separator": None}, "embedding_separator must be a str"),
        ({"document_prefix": 1}, "document_prefix must be a str"),
        ({"device": 0}, "device must be a str such as 'cpu'"),
        ({"model": 3}, "model must be a hub id or a local directory"),
        ({"config": "app.yaml"}, "config must be a dict of crossrank options or a crossrank.RerankerConfig"),
        ({"config": {"top_n": 5}}, "config sets `top_n`: CrossrankRanker ranks with its own top_k"),
        ({"config": {"min_score": 0.1, "normalize": True}}, "pass `normalize=`, `score_threshold=`"),
        ({"config": {"backend": "torch", "quantize": "int8"}}, "config: quantize applies to backend='onnx'"),
        ({"config": {"batch_size": 0}}, "config: batch_size: Input should be greater than 0"),
        ({"config": {"no_such_option": 1}}, "config: no_such_option: Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_refused_at_construction(kwargs, message) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        CrossrankRanker(**kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k must be a positive int or None, got 0"),
        ({"score_threshold": math.nan}, "score_threshold must be a number (not NaN)"),
    ],
)
def test_invalid_run_options_are_refused(ranker, kwargs, message) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        ranker.run(query=QUERY, documents=documents(), **kwargs)


SOURCES = "the model comes from exactly one of `model=` (with `device=`), `reranker=` or `config=`; got "


@pytest.mark.parametrize(
    ("kwargs", "got"),
    [
        ({"model": "m", "config": {"model": "m"}}, "`model` and `config`"),
        ({"device": "cpu", "config": {"model": "m"}}, "`device` and `config`"),
        ({"model": "m", "reranker": "<shared>"}, "`model` and `reranker`"),
        ({"reranker": "<shared>", "config": {"model": "m"}}, "`reranker` and `config`"),
    ],
)
def test_two_model_sources_are_refused(tiny_reranker, counting, kwargs, got) -> None:
    if kwargs.get("reranker") == "<shared>":
        kwargs = {**kwargs, "reranker": tiny_reranker}
    with pytest.raises(InvalidArgumentError) as caught:
        CrossrankRanker(**kwargs)
    assert str(caught.value).startswith(SOURCES + got)
    assert counting.count == 0


def test_a_reranker_that_is_not_one_is_refused() -> None:
    with pytest.raises(
        InvalidArgumentError, match=re.escape("reranker must be a crossrank.Reranker, got str")
    ):
        CrossrankRanker(reranker="cross-encoder/ms-marco-MiniLM-L6-v2")  # type: ignore[arg-type]


def test_a_device_map_is_refused() -> None:
    from haystack.utils.device import Device, DeviceMap

    device_map = ComponentDevice.from_multiple(DeviceMap({"layer": Device.cpu()}))
    with pytest.raises(InvalidArgumentError, match="one device"):
        CrossrankRanker(device=device_map)


def test_a_missing_model_fails_at_warm_up_with_model_load_error(tmp_path) -> None:
    missing = str(tmp_path / "no-such-model")
    ranker = CrossrankRanker(config={"model": missing, "local_files_only": True})
    with pytest.raises(ModelLoadError) as caught:
        ranker.warm_up()
    assert caught.value.model == missing
    with pytest.raises(ModelLoadError):
        ranker.run(query=QUERY, documents=documents())


def test_the_component_is_a_haystack_component() -> None:
    ranker = CrossrankRanker()
    assert set(ranker.__haystack_input__._sockets_dict) == {"query", "documents", "top_k", "score_threshold"}
    assert set(ranker.__haystack_output__._sockets_dict) == {"documents"}
    assert ranker_module.__name__.startswith("haystack_integrations.")
