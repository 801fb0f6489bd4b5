"""Real rankings: the trained fixture cross-encoder on TREC DL 2019 (BM25 top-20 of 43 queries)."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from sentence_transformers import CrossEncoder

from crossrank import Reranker

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def st_cross_encoder(fixture_model_dir):
    return CrossEncoder(str(fixture_model_dir), device="cpu")


def test_parity_with_sentence_transformers(fixture_reranker: Reranker, st_cross_encoder, dl19_top20) -> None:
    worst = 0.0
    for row in dl19_top20:
        texts = [hit["text"] for hit in row["hits"]]
        ranking = fixture_reranker.rank(row["query"], texts, top_n=None)
        ours = np.empty(len(texts))
        ours[[hit.index for hit in ranking]] = [hit.score for hit in ranking]
        theirs = st_cross_encoder.predict([(row["query"], text) for text in texts])
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
        # Same order, except where ST's own scores tie to float32 precision.
        assert np.all(np.diff(theirs[[hit.index for hit in ranking]]) <= 1e-5)
    assert worst <= 1e-4, f"max |crossrank - CrossEncoder.predict| = {worst}"


def test_normalized_parity_with_sentence_transformers_sigmoid(fixture_reranker, st_cross_encoder, dl19_top20):
    import torch

    row = dl19_top20[0]
    texts = [hit["text"] for hit in row["hits"]]
    theirs = st_cross_encoder.predict([(row["query"], t) for t in texts], activation_fn=torch.nn.Sigmoid())
    ours = fixture_reranker.score(row["query"], texts, normalize=True)
    assert np.max(np.abs(np.array(ours) - theirs)) <= 1e-6


def _ndcg10(run: dict[str, dict[str, float]], shared_dir) -> float:
    qrels = list(ir_measures.read_trec_qrels(str(shared_dir / "data" / "trec-dl-2019-passage" / "qrels.txt")))
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]


def test_reranking_beats_bm25_on_dl19(fixture_reranker: Reranker, dl19_top20, shared_dir) -> None:
    bm25_run = {
        row["qid"]: {hit["docid"]: float(hit["bm25_score"]) for hit in row["hits"]} for row in dl19_top20
    }
    reranked_run = {}
    moved_up = 0
    for row in dl19_top20:
        texts = [hit["text"] for hit in row["hits"]]
        ranking = fixture_reranker.rank(row["query"], texts, top_n=None)
        reranked_run[row["qid"]] = {row["hits"][hit.index]["docid"]: hit.score for hit in ranking}
        moved_up += ranking[0].index != 0
    bm25, reranked = _ndcg10(bm25_run, shared_dir), _ndcg10(reranked_run, shared_dir)
    # FIXTURE.md: 0.5058 -> 0.5591 for this setting; the gain must be real, not noise.
    assert bm25 == pytest.approx(0.5058, abs=0.002)
    assert reranked > bm25 + 0.03, (bm25, reranked)
    assert moved_up >= 10  # it reorders, rather than echoing BM25


def test_long_passage_keeps_the_query(fixture_reranker: Reranker, dl19_top20) -> None:
    row = dl19_top20[0]
    passage = " ".join(hit["text"] for hit in row["hits"][:12])  # well over 512 tokens
    (pair,) = fixture_reranker._encoder.encode(row["query"], [passage]).first
    query_ids = fixture_reranker._encoder._tokenizer.encode(row["query"], add_special_tokens=False).ids
    assert len(pair.ids) == 512
    assert pair.ids[1 : 1 + len(query_ids)] == query_ids
    assert isinstance(fixture_reranker.score(row["query"], [passage])[0], float)
