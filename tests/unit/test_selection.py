"""What reaches the LLM: dedupe, max_tokens and fusion (crossrank.selection) in every face.

The core rules are property-tested on :func:`crossrank.selection.select` over arbitrary texts and
scores; each face (Reranker, the three adapters, the CLI, the server, ``crossrank eval``) is then
tested to pass the options through to that one function.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crossrank import InvalidArgumentError, Reranker, RerankerConfig
from crossrank.results import rank_order
from crossrank.selection import SelectOptions, fuse, select, similarity

WORDS = st.sampled_from(
    ["flea", "fleas", "live", "a", "year", "host", "Paris", "tower", "egg", "larva", "cat"]
)
TEXTS = st.lists(st.lists(WORDS, max_size=8).map(" ".join), min_size=1, max_size=12)
SCORE = st.floats(-10, 10, allow_nan=False)


def _tokens(text: str) -> int:
    return len(text.split())


@st.composite
def ranked_inputs(draw):
    texts = draw(TEXTS)
    scores = draw(st.lists(SCORE, min_size=len(texts), max_size=len(texts)))
    options = SelectOptions(
        top_n=draw(st.none() | st.integers(1, 6)),
        min_score=draw(st.none() | SCORE),
        dedupe=draw(st.none() | st.floats(0.05, 1.0)),
        dedupe_similarity=draw(st.sampled_from(["jaccard", "ratio"])),
        max_tokens=draw(st.none() | st.integers(1, 30)),
        fusion=draw(st.none() | st.sampled_from(["rrf", "weighted"])),
        fusion_k=draw(st.integers(1, 100)),
        fusion_weight=draw(st.floats(0, 1)),
    )
    first_stage = draw(st.none() | st.lists(SCORE, min_size=len(texts), max_size=len(texts)))
    return texts, scores, options, first_stage


# ------------------------------------------------------------------ the rules, property-tested


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ranked_inputs())
def test_select_keeps_every_promise(case) -> None:
    texts, scores, options, first_stage = case
    before = (copy.deepcopy(texts), list(scores))
    ranking = select(texts, scores, options, first_stage=first_stage, count_tokens=_tokens)
    assert (texts, scores) == before  # nothing mutated
    kept = [hit.index for hit in ranking]
    assert len(set(kept)) == len(kept) and ranking.num_candidates == len(texts)
    if options.top_n is not None:
        assert len(kept) <= options.top_n
    if options.min_score is not None:
        assert all(scores[i] >= options.min_score for i in kept)
        assert ranking.num_below_min_score == sum(s < options.min_score for s in scores)
    if options.dedupe is not None:  # no two kept chunks as similar as the threshold
        near = similarity(options.dedupe_similarity)
        assert all(near(texts[a], texts[b]) < options.dedupe for n, a in enumerate(kept) for b in kept[:n])
    else:
        assert ranking.num_duplicates == 0
    if options.max_tokens is not None:  # the budget holds, unless the best chunk alone exceeds it
        used = sum(_tokens(texts[i]) for i in kept)
        assert ranking.num_tokens == used
        assert used <= options.max_tokens or len(kept) == 1
    # The kept chunks come in the order (fused or not) the ranking follows, blank chunks last.
    key = [hit.fused_score if options.fusion else hit.score for hit in ranking]
    order = rank_order(
        texts,
        fuse(scores, first_stage, method=options.fusion, k=options.fusion_k, weight=options.fusion_weight)
        if options.fusion
        else scores,
    )
    assert kept == [i for i in order if i in set(kept)]
    assert all(isinstance(value, float) for value in key)
    # What is left out is accounted for: below min_score, skipped as duplicates, or after the cut.
    walked = [i for i in order if options.min_score is None or scores[i] >= options.min_score]
    cut = walked[: len(kept) + ranking.num_duplicates]
    assert kept == [i for i in cut if i in set(kept)]


@settings(max_examples=200, deadline=None)
@given(ranked_inputs())
def test_without_options_select_is_the_plain_ranking(case) -> None:
    texts, scores, _, _ = case
    ranking = select(texts, scores, SelectOptions())
    assert [hit.index for hit in ranking] == rank_order(texts, scores)
    assert ranking.num_duplicates == 0 and ranking.num_tokens is None
    assert all(hit.fused_score is None for hit in ranking)


@settings(max_examples=200, deadline=None)
@given(ranked_inputs(), st.integers(1, 40))
def test_max_tokens_fills_the_budget_greedily_in_order(case, budget: int) -> None:
    texts, scores, _, _ = case
    ranking = select(texts, scores, SelectOptions(max_tokens=budget), count_tokens=_tokens)
    order = rank_order(texts, scores)
    kept = [hit.index for hit in ranking]
    assert kept == order[: len(kept)] and kept  # a prefix of the ranking, never empty
    if len(kept) < len(order):  # it stopped because the next chunk did not fit
        assert sum(_tokens(texts[i]) for i in order[: len(kept) + 1]) > budget


@settings(max_examples=200, deadline=None)
@given(st.lists(SCORE, min_size=1, max_size=15, unique=True), st.integers(1, 100))
def test_rrf_reads_ranks_only(scores: list[float], k: int) -> None:
    squashed = [s * 4 for s in scores]  # same order, other values (exact: a power of two)
    assert fuse(scores, None, method="rrf", k=k) == fuse(squashed, None, method="rrf", k=k)
    # When both systems agree, the fused order is theirs.
    by_score = sorted(range(len(scores)), key=lambda i: -scores[i])
    agreeing = [0.0] * len(scores)
    for position, i in enumerate(by_score):
        agreeing[i] = float(len(scores) - position)
    fused = fuse(scores, agreeing, method="rrf", k=k)
    assert sorted(range(len(scores)), key=lambda i: -fused[i]) == by_score


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=2, max_size=15, unique=True),
    st.lists(st.integers(-1000, 1000), min_size=15, max_size=15, unique=True),
)
def test_weighted_fusion_ends_are_each_system(scores: list[int], stage1: list[int]) -> None:
    stage1 = stage1[: len(scores)]
    texts = [f"chunk {i}" for i in range(len(scores))]
    only_reranker = select(
        texts, scores, SelectOptions(fusion="weighted", fusion_weight=1.0), first_stage=stage1
    )
    only_stage1 = select(
        texts, scores, SelectOptions(fusion="weighted", fusion_weight=0.0), first_stage=stage1
    )
    assert [hit.index for hit in only_reranker] == rank_order(texts, scores)
    assert [hit.index for hit in only_stage1] == rank_order(texts, stage1)


def test_fusion_without_stage1_scores_reads_the_input_order() -> None:
    texts = ["a", "b", "c"]
    fused = select(texts, [0.0, 0.1, 5.0], SelectOptions(fusion="rrf", fusion_k=1))
    # reranker: c, b, a; input order: a, b, c. k=1: a and c get 1/4 + 1/2, b 1/3 + 1/3; ties keep input order.
    assert [hit.index for hit in fused] == [0, 2, 1]
    assert [hit.fused_score for hit in fused] == pytest.approx([0.75, 0.75, 2 / 3])


def test_similarities() -> None:
    assert similarity("jaccard")("The flea, lives a YEAR", "a year the flea lives") == 1.0
    assert similarity("jaccard")("flea", "tower") == 0.0
    assert similarity("ratio")("fleas live 100 days", "fleas live 101 days") > 0.9
    assert similarity("ratio")("fleas live 100 days", "the Eiffel tower") < 0.5
    with pytest.raises(InvalidArgumentError, match="unknown similarity 'cosine'"):
        similarity("cosine")


# ------------------------------------------------------------------ the Reranker

FLEA = "how long does a flea live"
CHUNKS = [
    "Adult fleas live two to three months, up to a year with a host.",
    "The Eiffel Tower is in Paris.",
    "adult fleas live two to three months up to a year with a host",  # a near-copy of the first
    "The flea life cycle: egg, larva, pupa and adult.",
    "Bread dough rests before baking.",
]


def test_reranker_dedupe_skips_and_counts(tiny_reranker: Reranker) -> None:
    plain = tiny_reranker.rank(FLEA, CHUNKS, top_n=None)
    deduped = tiny_reranker.rank(FLEA, CHUNKS, top_n=None, dedupe=0.8)
    better, worse = [hit.index for hit in plain if hit.index in (0, 2)]  # the two copies, best first
    assert deduped.num_duplicates == 1
    assert [hit.to_dict() for hit in deduped] == [hit.to_dict() for hit in plain if hit.index != worse]
    assert better in [hit.index for hit in deduped]


def test_reranker_max_tokens_and_budget_tokenizer(tiny_model_dir: Path) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu", budget_tokenizer=str(tiny_model_dir), top_n=None)
    lengths = {text: reranker.budget_tokens(text) for text in CHUNKS}
    assert lengths == {text: reranker.count_tokens(text) for text in CHUNKS}
    budget = sum(sorted(lengths.values())[:2])
    ranking = reranker.rank(FLEA, CHUNKS, max_tokens=budget)
    assert ranking.num_tokens == sum(lengths[hit.text] for hit in ranking) <= budget or len(ranking) == 1
    assert [hit.index for hit in ranking] == [hit.index for hit in reranker.rank(FLEA, CHUNKS)][
        : len(ranking)
    ]
    assert len(reranker.rank(FLEA, CHUNKS, max_tokens=1)) == 1  # the best one, even over budget


def test_reranker_fusion_with_first_stage_scores(tiny_reranker: Reranker) -> None:
    stage1 = [5.0, 4.0, 3.0, 2.0, 1.0]
    fused = tiny_reranker.rank(FLEA, CHUNKS, top_n=None, fusion="rrf", first_stage_scores=stage1)
    by_input_order = tiny_reranker.rank(FLEA, CHUNKS, top_n=None, fusion="rrf")
    assert [h.index for h in fused] == [h.index for h in by_input_order]  # same order either way
    scores = tiny_reranker.score(FLEA, CHUNKS)
    assert [hit.score for hit in fused] == [scores[hit.index] for hit in fused]  # the reranker's scores
    assert [hit.fused_score for hit in fused] == sorted((hit.fused_score for hit in fused), reverse=True)
    batch = tiny_reranker.rank_batch([(FLEA, CHUNKS, stage1)], top_n=None, fusion="rrf")
    assert [h.to_dict() for h in batch[0]] == [h.to_dict() for h in fused]


def test_config_defaults_and_per_call_overrides(tiny_model_dir: Path) -> None:
    reranker = Reranker(tiny_model_dir, device="cpu", dedupe=0.8, top_n=None)
    assert (reranker.dedupe, reranker.max_tokens, reranker.fusion) == (0.8, None, None)
    assert reranker.rank(FLEA, CHUNKS).num_duplicates == 1
    assert reranker.rank(FLEA, CHUNKS, dedupe=None).num_duplicates == 0
    assert reranker.to_config().dedupe == 0.8
    env = RerankerConfig.model_validate({"dedupe": 0.5, "fusion": "weighted", "fusion_weight": 0.7})
    assert (env.dedupe, env.fusion, env.fusion_weight) == (0.5, "weighted", 0.7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedupe": 0}, "dedupe: Input should be greater than 0"),
        ({"dedupe": 1.5}, "dedupe: Input should be less than or equal to 1"),
        ({"dedupe": True}, "dedupe: expected"),
        ({"dedupe": "0.8"}, "dedupe: Input should be a valid number"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than 0"),
        ({"max_tokens": 2.5}, "max_tokens: Input should be a valid integer"),
        ({"fusion": "borda"}, "fusion: Input should be 'rrf' or 'weighted'"),
        ({"first_stage_scores": [1.0]}, "first_stage_scores has 1 value(s) for 5 documents"),
        (
            {"first_stage_scores": [1.0, 2, 3, float("nan"), 4]},
            "first_stage_scores[3] must be a finite number",
        ),
        ({"first_stage_scores": "12345"}, "first_stage_scores must be a list of numbers"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    tiny_reranker: Reranker, options: dict, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        tiny_reranker.rank(FLEA, CHUNKS, **options)
    assert message in str(caught.value)


def test_bad_config_values_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="fusion_weight"):
        Reranker(tiny_model_dir, device="cpu", fusion_weight=2.0)
    with pytest.raises(Exception, match="budget_tokenizer"):
        Reranker(
            tiny_model_dir,
            device="cpu",
            budget_tokenizer=str(tiny_model_dir / "missing"),
            local_files_only=True,
        )


# ------------------------------------------------------------------ the adapters


def test_langchain_adapter_passes_the_options(tiny_reranker: Reranker) -> None:
    from langchain_core.documents import Document
    from langchain_crossrank import CrossrankRerank

    docs = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(CHUNKS)]
    compressor = CrossrankRerank(reranker=tiny_reranker, top_n=None, dedupe=0.8, fusion="rrf")
    kept = compressor.compress_documents(docs, FLEA)
    expected = tiny_reranker.rank(FLEA, CHUNKS, top_n=None, dedupe=0.8, fusion="rrf")
    assert [doc.metadata["n"] for doc in kept] == [hit.index for hit in expected]
    assert [doc.metadata["fused_score"] for doc in kept] == [hit.fused_score for hit in expected]
    with pytest.raises(ValueError, match="dedupe"):
        CrossrankRerank(reranker=tiny_reranker, dedupe=2)


def test_llamaindex_adapter_fuses_with_the_node_scores(tiny_reranker: Reranker) -> None:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.crossrank import CrossrankRerank

    stage1 = [0.1, 0.9, 0.3, 0.2, 0.8]
    nodes = [NodeWithScore(node=TextNode(text=t), score=s) for t, s in zip(CHUNKS, stage1, strict=True)]
    post = CrossrankRerank(reranker=tiny_reranker, top_n=None, fusion="weighted", max_tokens=40)
    out = post.postprocess_nodes(nodes, QueryBundle(FLEA))
    texts = [n.node.get_content() for n in nodes]
    expected = tiny_reranker.rank(
        FLEA, texts, top_n=None, fusion="weighted", max_tokens=40, first_stage_scores=stage1
    )
    assert [n.node.get_content() for n in out] == [hit.text for hit in expected]
    assert [n.score for n in out] == [hit.score for hit in expected]


def test_haystack_component_passes_the_options(tiny_reranker: Reranker) -> None:
    from haystack import Document
    from haystack_integrations.components.rankers.crossrank import CrossrankRanker

    ranker = CrossrankRanker(reranker=tiny_reranker, top_k=None, dedupe=0.8, normalize=False)
    out = ranker.run(query=FLEA, documents=[Document(content=text) for text in CHUNKS])["documents"]
    expected = tiny_reranker.rank(FLEA, CHUNKS, top_n=None, dedupe=0.8)
    assert [doc.content for doc in out] == [hit.text for hit in expected] and len(out) == len(CHUNKS) - 1


# ------------------------------------------------------------------ the CLI and the server


def test_cli_rank_with_dedupe_and_budget(tiny_model_dir: Path, tmp_path: Path) -> None:
    from crossrank.cli import app

    file = tmp_path / "chunks.txt"
    file.write_text("\n".join(CHUNKS), encoding="utf-8")
    args = ["rank", str(file), "-q", FLEA, "-m", str(tiny_model_dir), "--device", "cpu", "--json"]
    done = CliRunner().invoke(app, [*args, "--all", "--dedupe", "0.8"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["num_duplicates"] == 1 and len(payload["results"]) == len(CHUNKS) - 1
    done = CliRunner().invoke(app, [*args, "--all", "--max-tokens", "30"])
    payload = json.loads(done.stdout)
    assert 1 <= len(payload["results"]) < len(CHUNKS)
    assert payload["num_tokens"] <= 30 or len(payload["results"]) == 1
    bad = CliRunner().invoke(app, [*args, "--dedupe", "1.5"])
    assert bad.exit_code != 0


@pytest.fixture(scope="module")
def selecting_api(tiny_model_dir, served):
    from crossrank.server import ServerConfig, create_app

    reranker = Reranker(tiny_model_dir, device="cpu", dedupe=0.8)  # the server's default: dedupe on
    with served(create_app(reranker, ServerConfig())) as server:
        yield server.url, reranker


def test_server_applies_its_dedupe_and_request_overrides(selecting_api) -> None:
    url, reranker = selecting_api
    cohere = httpx.post(f"{url}/v1/rerank", json={"query": FLEA, "documents": CHUNKS}, timeout=60).json()
    assert len(cohere["results"]) == len(CHUNKS) - 1  # the server's dedupe
    body = {"query": FLEA, "documents": CHUNKS, "dedupe": None}
    assert len(httpx.post(f"{url}/v2/rerank", json=body, timeout=60).json()["results"]) == len(CHUNKS)
    tei = httpx.post(
        f"{url}/rerank", json={"query": FLEA, "texts": CHUNKS, "max_tokens": 20}, timeout=60
    ).json()
    assert sum(reranker.budget_tokens(CHUNKS[rank["index"]]) for rank in tei) <= 20 or len(tei) == 1


def test_server_fusion_scores_follow_the_order(selecting_api) -> None:
    url, reranker = selecting_api
    body = {"query": FLEA, "documents": CHUNKS, "fusion": "rrf", "dedupe": None}
    results = httpx.post(f"{url}/v1/rerank", json=body, timeout=60).json()["results"]
    expected = reranker.rank(FLEA, CHUNKS, top_n=None, fusion="rrf", dedupe=None, normalize=True)
    assert [r["index"] for r in results] == [hit.index for hit in expected]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)  # clients that re-sort keep the fused order


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/rerank", {"query": FLEA, "documents": CHUNKS, "dedupe": 2}, 400),
        ("/v2/rerank", {"query": FLEA, "documents": CHUNKS, "fusion": "borda"}, 400),
        ("/rerank", {"query": FLEA, "texts": CHUNKS, "max_tokens": 0}, 422),
        ("/rerank", {"query": FLEA, "texts": CHUNKS, "dedupe": "lots"}, 422),
    ],
)
def test_server_refuses_bad_selection_options(selecting_api, path: str, body: dict, status: int) -> None:
    url, _ = selecting_api
    response = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    payload = response.json()
    assert ("message" in payload) or (payload.get("error_type") == "Validation")


def test_ratio_without_rapidfuzz_fails_at_construction_naming_the_extra(monkeypatch) -> None:
    """rapidfuzz is the `ratio` extra, not the core: asking for it without it fails fast, typed."""
    from crossrank import BackendUnavailableError, RerankerConfig

    monkeypatch.setitem(sys.modules, "rapidfuzz", None)  # import rapidfuzz -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"crossrank\[ratio\]"):
        RerankerConfig(dedupe_similarity="ratio")
    assert RerankerConfig(dedupe_similarity="jaccard").dedupe_similarity == "jaccard"
