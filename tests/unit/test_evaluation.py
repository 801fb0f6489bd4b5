"""crossrank.evaluation: dataset layouts, metrics against stage 1, and `crossrank eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank.cli import app
from crossrank.evaluation import evaluate, load_dataset


@pytest.fixture
def own_trec_folder(tmp_path: Path) -> Path:
    """A user's own data in the TREC DL layout: 2 queries, 3 candidates each."""
    folder = tmp_path / "my-trec"
    folder.mkdir()
    (folder / "qrels.txt").write_text("q1 0 a 3\nq1 0 b 0\nq2 0 e 2\nq2 0 d 1\n")
    rows = [
        {
            "qid": "q1",
            "query": "flea life",
            "hits": [
                {"docid": "b", "text": "paris tower", "bm25_score": 9.0, "rank": 1},
                {"docid": "c", "text": "coffee", "bm25_score": 8.0, "rank": 2},
                {"docid": "a", "text": "fleas live a year", "bm25_score": 7.0, "rank": 3},
            ],
        },
        {
            "qid": "q2",
            "query": "tea",
            "hits": [
                {"docid": "d", "text": "tea and coffee", "bm25_score": 5.0, "rank": 1},
                {"docid": "e", "text": "tea", "bm25_score": 4.0, "rank": 2},
                {"docid": "f", "text": "sky", "bm25_score": 3.0, "rank": 3},
            ],
        },
    ]
    (folder / "bm25_top100.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return folder


def _oracle(dataset):
    grades = {(q, d): g for q, d, g in dataset.qrels}
    docids = {
        (dataset.queries[q], c.text): c.docid
        for q, candidates in dataset.candidates.items()
        for c in candidates
    }
    qid_of = {text: q for q, text in dataset.queries.items()}

    def score(query: str, texts: list[str]) -> list[float]:
        return [float(grades.get((qid_of[query], docids[(query, t)]), 0)) for t in texts]

    return score


def test_own_trec_folder_stage1_and_oracle(own_trec_folder: Path) -> None:
    dataset = load_dataset(own_trec_folder)
    assert dataset.relevance_level == 2 and set(dataset.queries) == {"q1", "q2"}
    report = evaluate(
        dataset,
        {"oracle": _oracle(dataset), "stage-1 echo": lambda q, t: list(range(len(t), 0, -1))},
        depths=(3, 2),
    )
    assert report.metrics[3]["oracle"]["nDCG@10"] == pytest.approx(1.0)
    assert report.metrics[3]["oracle"]["MRR@10"] == pytest.approx(1.0)
    assert report.metrics[3]["stage 1"]["nDCG@10"] < 1.0
    assert report.metrics[3]["stage-1 echo"] == report.metrics[3]["stage 1"]
    # At depth 2, q1's relevant passage (stage-1 rank 3) is out of reach even for the oracle.
    assert report.metrics[2]["oracle"]["MRR@10"] == pytest.approx(0.5)
    assert report.timings["oracle"]["pairs"] == 6
    assert json.loads(json.dumps(report.to_dict()))["metrics"]["3"]["oracle"]["nDCG@10"] == pytest.approx(1.0)


def test_own_beir_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "fleas live about a year", "d2": "the eiffel tower in paris", "d3": "tea has caffeine"}
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in docs.items()) + "\n"
    )
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "1", "text": "how long do fleas live"})
        + "\n"
        + json.dumps({"_id": "2", "text": "unjudged query"})
        + "\n"
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n")
    dataset = load_dataset(folder, depth=2)
    assert dataset.queries == {"1": "how long do fleas live"} and dataset.relevance_level == 1
    assert dataset.candidates["1"][0].docid == "d1" and len(dataset.candidates["1"]) == 2


def test_own_beir_folder_with_the_bi_encoder(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = ["Fleas live for about a year.", "The Eiffel Tower is in Paris.", "Tea contains caffeine."]
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) for i, t in enumerate(docs)) + "\n"
    )
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "1", "text": "Where is the Eiffel Tower?"}) + "\n"
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n")
    dataset = load_dataset(folder, stage1="bi-encoder", depth=3)
    assert dataset.stage1 == "bi-encoder"
    ranked = dataset.candidates["1"]
    assert ranked[0].docid == "d1" and len(ranked) == 3
    assert ranked[0].score > ranked[1].score >= ranked[2].score


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="named datasets"):
        load_dataset("trec-dl-1999", data_dir=tmp_path)
    with pytest.raises(ValueError, match="neither a TREC DL folder"):
        load_dataset(tmp_path)


def test_cli_eval_json_is_json_only(own_trec_folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    args = [
        "eval",
        "--dataset",
        str(own_trec_folder),
        "-m",
        str(tiny_model_dir),
        "--depth",
        "3",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    selections = {"+ fusion rrf k=60", "+ fusion weighted w=0.5", "+ dedupe jaccard>=0.8"}
    assert set(payload["metrics"]["3"]) == {"stage 1", "crossrank", *selections}
    assert {"dup@3", "distinct rel@3", "nDCG@3"} <= set(payload["metrics"]["3"]["+ fusion rrf k=60"])
    plain = CliRunner().invoke(app, [*args, "--json", "--no-selection"], env={"COLUMNS": "200"})
    assert set(json.loads(plain.stdout)["metrics"]["3"]) == {"stage 1", "crossrank"}
    assert payload["settings"]["max_length"] == 128 and payload["timings"]["crossrank"]["pairs"] == 6
    assert payload["settings"]["threads"] == 1
    # --output writes the same report to a file and keeps the tables on the screen.
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, [*args, "--output", str(report)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "rerank stage-1 top 3" in result.stdout
    assert json.loads(report.read_text())["metrics"] == payload["metrics"]


def test_cli_eval_onnx_int8(own_trec_folder: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        app,
        [
            *("eval", "-d", str(own_trec_folder), "-m", str(tiny_model_dir)),
            *("--backend", "onnx", "--quantize", "int8", "--depth", "3", "--json"),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["settings"]["backend"] == "onnx" and payload["settings"]["quantize"] == "int8"


def test_cli_eval_without_the_eval_extra(own_trec_folder: Path, tiny_model_dir: Path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ir_measures", None)  # `import ir_measures` raises ImportError
    result = CliRunner().invoke(app, ["eval", "-d", str(own_trec_folder), "-m", str(tiny_model_dir)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "pip install 'crossrank[eval]'" in said and "Traceback" not in result.output


def test_named_datasets_need_a_data_dir(monkeypatch) -> None:
    # No development-layout path (../shared) is built into the package.
    monkeypatch.delenv("CROSSRANK_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir DIR or CROSSRANK_DATA_DIR"):
        load_dataset("trec-dl-2019")


def test_eval_batches_queries_through_score_batch(own_trec_folder: Path, tiny_reranker) -> None:
    """`crossrank eval` scores many queries per call; the figures equal one call per query."""
    dataset = load_dataset(own_trec_folder)
    calls = []

    class Spy:
        def score_batch(self, requests):
            calls.append(len(requests))
            return tiny_reranker.score_batch(requests)

    batched = evaluate(dataset, {"crossrank": Spy()}, depths=(3,))
    per_query = evaluate(dataset, {"crossrank": tiny_reranker.score}, depths=(3,))
    assert calls == [2]
    for name, value in per_query.metrics[3]["crossrank"].items():
        assert batched.metrics[3]["crossrank"][name] == pytest.approx(value, abs=1e-9)
