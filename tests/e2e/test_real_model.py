"""Real rankings: the trained fixture cross-encoder on TREC DL 2019 (BM25 top-20 of 43 queries).

One module-scoped evaluation scores every pair once with crossrank and once with
sentence-transformers' CrossEncoder; the tests read parity, quality and ordering off it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from crossrank import Reranker
from crossrank.evaluation import evaluate, load_dataset

pytestmark = pytest.mark.real_model


class _Recorder:
    """A scorer that remembers what it returned, keyed by (query, texts)."""

    def __init__(self, score) -> None:
        self.score, self.seen = score, {}

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        scores = [float(s) for s in self.score(query, texts)]
        self.seen[(query, tuple(texts))] = scores
        return scores


@pytest.fixture(scope="module")
def dl19_eval(fixture_reranker: Reranker, fixture_model_dir, shared_dir):
    ce = CrossEncoder(str(fixture_model_dir), device="cpu", activation_fn=torch.nn.Identity())
    ours = _Recorder(fixture_reranker.score)
    theirs = _Recorder(lambda q, texts: ce.predict([(q, t) for t in texts]))
    dataset = load_dataset("trec-dl-2019", data_dir=shared_dir / "data", depth=20)
    report = evaluate(dataset, {"crossrank": ours, "sentence-transformers": theirs}, depths=(20,))
    return report, ours.seen, theirs.seen


def test_parity_with_sentence_transformers(dl19_eval) -> None:
    report, ours, theirs = dl19_eval
    assert len(ours) == report.num_queries == 43
    worst = max(float(np.max(np.abs(np.subtract(ours[key], theirs[key])))) for key in ours)
    assert worst <= 1e-4, f"max |crossrank - CrossEncoder.predict| = {worst}"
    for name, value in report.metrics[20]["crossrank"].items():
        assert value == pytest.approx(report.metrics[20]["sentence-transformers"][name], abs=1e-3), name


def test_rank_orders_like_sentence_transformers_scores(fixture_reranker: Reranker, dl19_eval) -> None:
    _, _, theirs = dl19_eval
    for (query, texts), st_scores in list(theirs.items())[:10]:
        order = [hit.index for hit in fixture_reranker.rank(query, list(texts), top_n=None)]
        assert np.all(np.diff(np.asarray(st_scores)[order]) <= 1e-5)  # ties to float32 precision aside


def test_normalized_parity_with_sentence_transformers_sigmoid(
    fixture_reranker, fixture_model_dir, dl19_top20
):
    ce = CrossEncoder(str(fixture_model_dir), device="cpu", activation_fn=torch.nn.Sigmoid())
    row = dl19_top20[0]
    texts = [hit["text"] for hit in row["hits"]]
    theirs = ce.predict([(row["query"], t) for t in texts])
    ours = fixture_reranker.score(row["query"], texts, normalize=True)
    assert np.max(np.abs(np.array(ours) - theirs)) <= 1e-6


def test_reranking_beats_bm25_on_dl19(dl19_eval) -> None:
    report, ours, _ = dl19_eval
    stage1, reranked = report.metrics[20]["stage 1"], report.metrics[20]["crossrank"]
    # FIXTURE.md: nDCG@10 0.5058 -> 0.5591 in this setting; the gain must be real, not noise.
    assert stage1["nDCG@10"] == pytest.approx(0.5058, abs=0.001)
    assert reranked["nDCG@10"] > stage1["nDCG@10"] + 0.03
    assert reranked["nDCG@3"] > stage1["nDCG@3"]
    moved = sum(int(np.argmax(scores)) != 0 for scores in ours.values())
    assert moved >= 10  # it reorders, rather than echoing BM25


def test_long_passage_keeps_the_query(fixture_reranker: Reranker, dl19_top20) -> None:
    row = dl19_top20[0]
    passage = " ".join(hit["text"] for hit in row["hits"][:12])  # well over 512 tokens
    (pair,) = fixture_reranker.encoder.encode(row["query"], [passage]).first
    query_ids = fixture_reranker.encoder.tokenizer.encode(row["query"], add_special_tokens=False).ids
    assert len(pair.ids) == 512
    assert pair.ids[1 : 1 + len(query_ids)] == query_ids
    assert isinstance(fixture_reranker.score(row["query"], [passage])[0], float)


def test_windows_find_a_relevant_passage_past_the_cut(fixture_model_dir, dl19_top20) -> None:
    windowed = Reranker(fixture_model_dir, device="cpu", long_documents="windows")
    truncating = Reranker(fixture_model_dir, device="cpu")
    row = dl19_top20[0]
    best = max(range(20), key=lambda i: truncating.score(row["query"], [row["hits"][i]["text"]])[0])
    filler = " ".join(other["hits"][0]["text"] for other in dl19_top20[1:9])  # other queries' passages
    long_doc = filler + " " + row["hits"][best]["text"]
    cut = truncating.score(row["query"], [long_doc])[0]
    found = windowed.score(row["query"], [long_doc])[0]
    assert found > cut + 2.0  # the relevant passage is past the cut: truncation can't see it
    # Short documents are untouched by the mode.
    assert windowed.score(row["query"], [row["hits"][best]["text"]]) == truncating.score(
        row["query"], [row["hits"][best]["text"]]
    )
