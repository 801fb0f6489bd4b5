"""`crossrank finetune`: data checks, hard negatives, the training run's guarantees, the CLI.

Training runs use the tiny random cross-encoder on a tiny synthetic BEIR folder (seconds each);
the real SciFact measurement is benchmarks/finetune_scifact.py.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank import Reranker
from crossrank.cli import app
from crossrank.errors import InputFileError, InvalidArgumentError, UnsupportedModelError
from crossrank.finetune import (
    FinetuneConfig,
    FinetuneResult,
    finetune,
    load_training_data,
    mine_hard_negatives,
)

runner = CliRunner()

TOPICS = [
    "flea", "tea", "coffee", "paris", "bread", "sun", "dog", "cat", "tower", "yeast",
    "earth", "sky", "light", "host", "dough", "city", "model", "query", "token", "chunk",
]  # fmt: skip
#: Small, fast settings for the tiny model (max 128 tokens).
FAST = {"max_length": 48, "num_negatives": 2, "batch_size": 4, "eval_depth": 10}


def write_beir(
    root: Path, *, train: range = range(14), test: range = range(14, 18), dev: bool = True
) -> Path:
    """A BEIR folder: two documents per topic, query i about topic i, its first document relevant."""
    rng = random.Random(0)
    filler = ["the", "a", "of", "to", "in", "is", "and", "for", "on", "with"]
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for i, topic in enumerate(TOPICS):
            for j in range(2):
                words = [topic] * 3 + rng.sample(filler, 5)
                rng.shuffle(words)
                record = {"_id": f"d{i}-{j}", "title": topic if j == 0 else "", "text": " ".join(words)}
                corpus.write(json.dumps(record) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for i, topic in enumerate(TOPICS):
            queries.write(json.dumps({"_id": f"q{i}", "text": f"what is a {topic}"}) + "\n")
    splits = {"train.tsv": train, "test.tsv": test, **({"dev.tsv": range(18, 20)} if dev else {})}
    for name, ids in splits.items():
        lines = ["query-id\tcorpus-id\tscore", *(f"q{i}\td{i}-0\t1" for i in ids)]
        (root / "qrels" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "beir")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> FinetuneResult:
    """One complete run, shared by the tests that only read its output."""
    root = tmp_path_factory.mktemp("trained")
    return finetune(
        write_beir(root / "beir"), tiny_model_dir, root / "model", epochs=2, learning_rate=1e-3, **FAST
    )


# --------------------------------------------------------------------------- data


def test_beir_training_data_is_read_with_texts_ids_and_dev(beir: Path) -> None:
    data = load_training_data(beir)
    assert [q.qid for q in data.queries] == [f"q{i}" for i in range(14)]
    assert data.queries[3].positive_ids == ("d3-0",)
    assert data.queries[3].positives == (data.corpus_texts[data.corpus_ids.index("d3-0")],)
    assert data.queries[3].positives[0].startswith("paris ")  # title + " " + text, as crossrank eval reads
    assert [q.qid for q in data.dev] == ["q18", "q19"]
    assert len(data.corpus_texts) == 2 * len(TOPICS)


def test_jsonl_training_data_pools_its_texts(tmp_path: Path) -> None:
    file = tmp_path / "train.jsonl"
    rows = [
        {"query": "flea life", "positives": ["fleas live a year"], "negatives": ["tea is hot"]},
        {"query": "paris", "positives": ["paris is in france", "the eiffel tower"]},
    ]
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = load_training_data(file)
    assert [q.qid for q in data.queries] == ["line 1", "line 2"]
    assert data.queries[0].negatives == ("tea is hot",)
    assert sorted(data.corpus_texts) == sorted(
        ["fleas live a year", "tea is hot", "paris is in france", "the eiffel tower"]
    )


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "where", "says"),
    [
        (lambda r: (r / "qrels" / "train.tsv").unlink(), "qrels/train.tsv", "no such file"),
        (lambda r: (r / "corpus.jsonl").write_text(""), "corpus.jsonl", "no documents"),
        (lambda r: _edit(r / "qrels" / "train.tsv", "q2\td2-0", "q99\td2-0"), "train.tsv:4", "'q99'"),
        (lambda r: _edit(r / "qrels" / "train.tsv", "q2\td2-0", "q2\tnope"), "train.tsv:4", "'nope'"),
        (
            lambda r: _edit(r / "qrels" / "train.tsv", "q2\td2-0\t1", "q2\td2-0\t0"),
            "train.tsv:4",
            "no positive",
        ),
        (
            lambda r: _edit(r / "qrels" / "train.tsv", "q2\td2-0\t1", "q2\td2-0\thigh"),
            "train.tsv:4",
            "not a number",
        ),
        (
            lambda r: _edit(r / "queries.jsonl", '{"_id": "q1"', '{"_id": "q1",'),
            "queries.jsonl:2",
            "not valid JSON",
        ),
    ],
    ids=[
        "missing-qrels",
        "empty-corpus",
        "unknown-query",
        "unknown-doc",
        "no-positive",
        "bad-score",
        "bad-json",
    ],
)
def test_bad_beir_input_names_file_and_line(beir: Path, damage, where: str, says: str) -> None:
    damage(beir)
    with pytest.raises(InputFileError) as caught:
        load_training_data(beir)
    assert where in str(caught.value).replace("\\", "/")
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"query": "flea", "positives": []}', "has no positives"),
        ('{"query": "", "positives": ["x"]}', "non-empty string 'query'"),
        ('{"query": "flea", "positives": "fleas"}', "'positives' must be a list"),
        ('{"query": "flea", "positives": ["x"], "negatives": [1]}', "'negatives' must be a list"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_jsonl_input_names_the_line(tmp_path: Path, line: str, says: str) -> None:
    file = tmp_path / "train.jsonl"
    file.write_text('{"query": "ok", "positives": ["fine"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=f"train.jsonl:2: .*{says}"):
        load_training_data(file)


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nowhere\.jsonl: no such file"):
        load_training_data(tmp_path / "nowhere.jsonl")


# --------------------------------------------------------------------------- hard negatives


def test_mined_negatives_are_top_stage1_documents_but_never_positives(beir: Path) -> None:
    data = load_training_data(beir)
    mined = mine_hard_negatives(data, num_negatives=3)
    assert mined == mine_hard_negatives(data, num_negatives=3)  # deterministic
    for query in data.queries:
        negatives = mined[query.qid]
        assert len(negatives) == 3
        assert not set(negatives) & set(query.positives)
        topic = query.query.split()[-1]
        # BM25's best non-positive for "what is a TOPIC" is the topic's other document
        assert negatives[0].split().count(topic) == 3


# --------------------------------------------------------------------------- a training run


def test_the_fine_tuned_model_loads_and_scores_on_torch_and_onnx_int8(
    trained: FinetuneResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path / "cache"))  # the ONNX export's cache
    texts = ["what is a flea", "fleas live a year", "tea is hot"]
    torch_scores = Reranker(trained.output, device="cpu").score(texts[0], texts[1:])
    int8_scores = Reranker(trained.output, backend="onnx", quantize="int8").score(texts[0], texts[1:])
    assert all(math.isfinite(s) for s in torch_scores + int8_scores)
    assert int8_scores == pytest.approx(torch_scores, abs=0.5)


def test_the_run_is_reported_and_carded(trained: FinetuneResult, tiny_model_dir: Path) -> None:
    assert trained.train_queries == 14
    assert trained.train_pairs == 14 * (1 + FAST["num_negatives"])
    assert trained.steps == 2 * math.ceil(trained.train_pairs / FAST["batch_size"])
    assert trained.epochs == pytest.approx(2.0)
    assert not trained.stopped_by_budget
    report = trained.reports["beir (test)"]
    assert report.num_queries == 4
    assert set(report.metrics[10]) == {"stage 1", "base", "fine-tuned"}
    assert report.settings["systems"] == {"base": str(tiny_model_dir), "fine-tuned": str(trained.output)}
    assert set(trained.dev_metrics) >= {"dev_ndcg@10"}  # sentence-transformers' evaluator on qrels/dev.tsv
    saved = json.loads((trained.output / "finetune.json").read_text(encoding="utf-8"))
    assert saved["steps"] == trained.steps
    assert (
        saved["evaluation"]["beir (test)"]["metrics"]["10"]["fine-tuned"] == report.metrics[10]["fine-tuned"]
    )
    card = (trained.output / "README.md").read_text(encoding="utf-8")
    assert str(tiny_model_dir) in card and f"| steps / epochs | {trained.steps} / 2.00 |" in card
    fine = report.metrics[10]["fine-tuned"]["nDCG@10"]
    assert f"| fine-tuned | {fine:.4f} |" in card
    assert not any(
        p.name.startswith(".model") for p in trained.output.parent.iterdir()
    )  # no work folder left


def test_the_weights_move_and_the_saved_model_keeps_the_base_scoring_length(
    trained: FinetuneResult, tiny_model_dir: Path
) -> None:
    base, tuned = Reranker(tiny_model_dir, device="cpu"), Reranker(trained.output, device="cpu")
    assert tuned.max_length == base.max_length == 128  # trained at 48 tokens, scores like the base
    query, documents = "what is a flea", ["flea flea flea the", "tea tea tea of", "dog dog dog a"]
    assert tuned.score(query, documents) != pytest.approx(base.score(query, documents), abs=1e-4)


def test_same_seed_same_model_other_seed_other_model(
    tmp_path: Path, tiny_model_dir: Path, beir: Path
) -> None:
    runs = {
        name: finetune(
            beir, tiny_model_dir, tmp_path / name, seed=seed, learning_rate=1e-3, evaluate_base=False, **FAST
        )
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    }
    scores = {
        name: Reranker(run.output, device="cpu").score("what is a flea", ["flea the a", "tea of"])
        for name, run in runs.items()
    }
    assert scores["a"] == scores["b"]
    assert scores["a"] != scores["c"]


def test_time_budget_stops_training_and_keeps_the_model(
    tmp_path: Path, tiny_model_dir: Path, beir: Path
) -> None:
    result = finetune(beir, tiny_model_dir, tmp_path / "out", max_minutes=1e-6, evaluate_base=False, **FAST)
    assert result.stopped_by_budget
    assert result.steps == 1
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert "(stopped by the time budget)" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_an_interrupted_run_leaves_no_output_and_resumes(
    tmp_path: Path, tiny_model_dir: Path, beir: Path
) -> None:
    output = tmp_path / "out"
    settings = {
        **FAST,
        "batch_size": 2,
        "epochs": 2.0,
        "evaluate_base": False,
    }  # 21 steps/epoch, saves every 10

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "training" and done == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(beir, tiny_model_dir, output, progress=interrupt, **settings)
    assert not output.exists()
    work = tmp_path / ".out.partial"
    assert (work / "checkpoints" / "checkpoint-10").is_dir()
    with pytest.raises(InvalidArgumentError, match="--resume"):
        finetune(beir, tiny_model_dir, output, **settings)

    steps: list[int] = []
    result = finetune(
        beir,
        tiny_model_dir,
        output,
        resume=True,
        progress=lambda s, d, t: steps.append(d) if s == "training" else None,
        **settings,
    )
    assert result.steps == 42
    assert steps[0] == 11  # continued after checkpoint-10, not from scratch
    assert (output / "model.safetensors").is_file()
    assert not work.exists()


def test_existing_output_is_refused_unless_overwrite(
    tmp_path: Path, tiny_model_dir: Path, beir: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        finetune(beir, tiny_model_dir, output, **FAST)
    assert (output / "keep.txt").read_text() == "mine"
    finetune(beir, tiny_model_dir, output, overwrite=True, max_minutes=1e-6, evaluate_base=False, **FAST)
    assert not (output / "keep.txt").exists() and (output / "finetune.json").is_file()


# --------------------------------------------------------------------------- held-out split


def test_a_query_in_train_and_test_is_refused_before_anything_is_written(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    beir = write_beir(tmp_path / "beir", train=range(14), test=range(12, 18))
    with pytest.raises(InvalidArgumentError, match=r"2 query id\(s\) .* held-out qrels/test.tsv .*q12, q13"):
        finetune(beir, tiny_model_dir, tmp_path / "out", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beir"]


def test_a_training_query_with_a_held_out_querys_text_is_left_out(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    beir = write_beir(tmp_path / "beir")
    _edit(beir / "queries.jsonl", "what is a flea", "What is a  COFFEE")  # q0 reads like q2
    _edit(beir / "qrels" / "test.tsv", "q14\t", "q2\t")  # ... and q2 is now held out
    _edit(beir / "qrels" / "train.tsv", "q2\td2-0\t1\n", "")
    result = finetune(beir, tiny_model_dir, tmp_path / "out", max_minutes=1e-6, evaluate_base=False, **FAST)
    assert result.left_out == ["q0"]
    assert result.train_queries == 12


# --------------------------------------------------------------------------- command line


def test_cli_json_is_the_result_and_the_only_stdout(tmp_path: Path, tiny_model_dir: Path, beir: Path) -> None:
    output = tmp_path / "model"
    result = runner.invoke(
        app,
        ["finetune", "-d", str(beir), "-m", str(tiny_model_dir), "-o", str(output), "--json",
         "--max-length", "48", "--negatives", "1", "--eval-depth", "10", "--seed", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["output"] == str(output)
    assert payload["settings"]["num_negatives"] == 1 and payload["settings"]["seed"] == 3
    assert payload == json.loads((output / "finetune.json").read_text(encoding="utf-8"))
    # the options not given take FinetuneConfig's defaults: the CLI declares none of its own
    for name in ("epochs", "batch_size", "learning_rate", "bf16", "stage1", "eval_split", "max_minutes"):
        assert payload["settings"][name] == FinetuneConfig.model_fields[name].default, name
    assert set(FinetuneConfig.model_fields) < set(payload["settings"])  # the whole config is recorded


def test_bf16_training_saves_float32_weights_that_moved(
    tmp_path: Path, tiny_model_dir: Path, beir: Path
) -> None:
    from safetensors import safe_open

    result = finetune(
        beir, tiny_model_dir, tmp_path / "out", bf16=True, learning_rate=1e-3, evaluate_base=False, **FAST
    )
    assert result.settings["bf16"] is True
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as tensors:
        assert {str(tensors.get_tensor(k).dtype) for k in tensors.keys()}  # noqa: SIM118 (no __iter__) == {"torch.float32"}
    base, tuned = Reranker(tiny_model_dir, device="cpu"), Reranker(result.output, device="cpu")
    documents = ["flea flea flea the", "tea tea tea of"]
    assert tuned.score("what is a flea", documents) != pytest.approx(base.score("what is a flea", documents))


def test_cli_options_are_the_fields_of_finetune_config() -> None:
    """Declared once: every FinetuneConfig field is an option, with its help, bounds and env name."""
    import typer

    params = {p.name: p for p in typer.main.get_command(app).commands["finetune"].params}
    for name, field in FinetuneConfig.model_fields.items():
        assert field.description in params[name].help, name
    assert "Env: CROSSRANK_FINETUNE_EPOCHS." in params["epochs"].help
    assert "Env: CROSSRANK_DATA_DIR." in params["data_dir"].help
    flags = {name: (params[name].opts, params[name].secondary_opts) for name in params}
    assert flags["num_negatives"] == (["--negatives"], [])
    assert flags["also_evaluate"] == (["--also-eval"], [])
    assert flags["max_train_queries"] == (["--max-queries"], [])
    assert flags["bf16"] == (["--bf16"], ["--fp32"])
    assert flags["resume"] == (["--resume"], []) and flags["overwrite"] == (["--overwrite"], [])
    assert sorted(flags["dataset"][0]) == ["--dataset", "-d"] and sorted(flags["output"][0]) == [
        "--output",
        "-o",
    ]
    assert (params["num_negatives"].min, params["max_length"].min, params["eval_depth"].min) == (0, 8, 1)
    assert params["also_evaluate"].multiple


def test_cli_settings_come_from_options_then_env_then_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[FinetuneConfig] = []

    def fake_finetune(dataset, model, output, config, progress=None):
        seen.append(config)
        raise InvalidArgumentError("stopped before training")

    monkeypatch.setattr("crossrank.finetune.finetune", fake_finetune)
    settings = tmp_path / "app.yaml"
    settings.write_text(
        "finetune:\n  epochs: 1\n  num_negatives: 3\n  seed: 4\n  also_evaluate: [trec-dl-2019]\n"
    )
    args = ["finetune", "-d", "data", "-m", "model", "-o", str(tmp_path / "out"), "--config", str(settings)]
    env = {
        "CROSSRANK_FINETUNE_EPOCHS": "3",
        "CROSSRANK_FINETUNE_SEED": "5",
        "CROSSRANK_DATA_DIR": str(tmp_path),
    }
    result = runner.invoke(app, [*args, "--negatives", "5", "--seed", "6", "--bf16"], env=env)
    assert result.exit_code == 1 and "stopped before training" in result.output
    config = seen[0]
    assert (config.epochs, config.num_negatives, config.seed, config.bf16) == (3.0, 5, 6, True)
    assert config.also_evaluate == ("trec-dl-2019",) and config.data_dir == tmp_path
    bad = runner.invoke(app, args, env={"CROSSRANK_FINETUNE_BATCH_SIZE": "0"})
    assert bad.exit_code == 1 and "batch_size: Input should be greater than 0" in " ".join(bad.output.split())
    assert "Traceback" not in bad.output and len(seen) == 1


def test_bad_or_unknown_options_are_refused_before_anything_is_read(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    with pytest.raises(InvalidArgumentError, match="epochs: Input should be greater than 0"):
        finetune(tmp_path / "nowhere", tiny_model_dir, tmp_path / "out", epochs=0)
    with pytest.raises(InvalidArgumentError, match="epoch: Extra inputs are not permitted"):
        finetune(tmp_path / "nowhere", tiny_model_dir, tmp_path / "out", FinetuneConfig(), epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_bad_qrels_exit_1_with_file_and_line(tmp_path: Path, tiny_model_dir: Path, beir: Path) -> None:
    _edit(beir / "qrels" / "train.tsv", "q5\td5-0", "q5\td77-0")
    output = tmp_path / "model"
    result = runner.invoke(
        app,
        ["finetune", "-d", str(beir), "-m", str(tiny_model_dir), "-o", str(output)],
        env={"COLUMNS": "1000"},
    )
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert "train.tsv:7: corpus id 'd77-0' is not in corpus.jsonl" in said
    assert "Traceback" not in result.output
    assert not output.exists() and not (tmp_path / ".model.partial").exists()


def test_an_llm_reranker_is_refused_with_the_reason(beir: Path, tmp_path: Path) -> None:
    """sentence-transformers would train a causal LM on bare pairs, without its prompt: refused."""
    from crossrank.families_testing import build_tiny_qwen3_reranker

    model = build_tiny_qwen3_reranker(tmp_path / "Qwen3-Reranker-tiny")
    with pytest.raises(UnsupportedModelError, match="LLM reranker"):
        finetune(beir, model, tmp_path / "out", **FAST)
    assert not (tmp_path / "out").exists()
