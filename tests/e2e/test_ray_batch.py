"""Batch reranking on Ray Data (`crossrank rerank-batch`): sharding, bad records, parity, resume.

The sharding and record checks run without Ray (``plan_shards``/``score_shard`` with the tiny
model); the DL19 parity test runs the actor pool on the session's local Ray; the resume test runs
the command itself, twice, in a subprocess that starts its own local Ray, and interrupts the first.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossrank import Reranker, RerankerConfig
from crossrank.errors import InputFileError, InvalidArgumentError
from crossrank.ray import RayConfig
from crossrank.ray.batch import plan_shards, rerank_batch, score_shard
from crossrank.results import rank_order

REPO = Path(__file__).resolve().parents[2]


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _set(qid: str, query: str, n: int) -> dict:
    return {
        "qid": qid,
        "query": query,
        "candidates": [{"id": f"{qid}-{i}", "text": f"{query} {i}"} for i in range(n)],
    }


# --------------------------------------------------------------------------- sharding and checks (no Ray)


def test_shards_cut_at_records_and_keep_a_querys_pairs_together(tmp_path: Path) -> None:
    sets = _write_jsonl(tmp_path / "sets.jsonl", [_set(str(q), "flea", 30) for q in range(10)])
    fmt, shards = plan_shards(sets, shard_pairs=100)
    assert fmt == "sets" and [s.pairs for s in shards] == [120, 120, 60]
    assert [s.first_line for s in shards] == [1, 5, 9]
    assert shards[0].start == 0 and shards[-1].end == sets.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(shards))  # every byte in exactly one shard

    rows = [{"qid": str(q), "query": "flea", "id": f"d{i}", "text": "t"} for q in range(4) for i in range(7)]
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    fmt, shards = plan_shards(pairs, shard_pairs=5)
    assert fmt == "pairs" and [s.pairs for s in shards] == [7, 7, 7, 7]  # never a query split in two


def test_parquet_input_plans_and_scores_like_jsonl(tmp_path: Path, tiny_reranker: Reranker) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [_set(str(q), "flea life", 6) for q in range(5)]
    jsonl = _write_jsonl(tmp_path / "sets.jsonl", records)
    parquet = tmp_path / "sets.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet, row_group_size=2)
    (jf, jshards), (pf, pshards) = plan_shards(jsonl, 12), plan_shards(parquet, 12)
    assert jf == pf == "sets" and [s.pairs for s in jshards] == [s.pairs for s in pshards] == [12, 12, 6]
    from_jsonl = [score_shard(tiny_reranker, jsonl, jf, s)["groups"] for s in jshards]
    from_parquet = [score_shard(tiny_reranker, parquet, pf, s)["groups"] for s in pshards]
    assert from_parquet == from_jsonl


def test_bad_records_are_reported_with_line_and_reason(tmp_path: Path, tiny_reranker: Reranker) -> None:
    good = _set("q1", "flea", 3)
    records = [
        good,
        "{not json",
        ["a", "list"],
        {"qid": "q3", "candidates": []},
        {"qid": "q4", "query": " \u200b", "candidates": [{"id": "a", "text": "x"}]},
        {"qid": "q5", "query": "flea", "candidates": [{"id": "a", "text": 3}]},
        {"qid": "q6", "query": "flea", "candidates": [{"id": "a b", "text": "x"}]},
        {"qid": "q7", "query": "flea", "candidates": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
        {"qid": "q8", "query": "flea", "candidates": [{"text": "x"}]},
        {"qid": "q9", "query": "flea", "id": "a", "text": "a pair among sets"},
        _set("q10", "tea", 2),
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl", records)
    fmt, shards = plan_shards(path, shard_pairs=10_000)
    part = score_shard(tiny_reranker, path, fmt, shards[0])
    reasons = {item["line"]: item["reason"] for item in part["bad"]}
    assert sorted(reasons) == list(range(2, 11))
    for line, fragment in {
        2: "not valid JSON",
        3: "must be a JSON object",
        4: "needs 'qid' and 'query'",
        5: "no tokens",
        6: "candidates[0].text is int",
        7: "holds whitespace",
        8: "repeats candidates[0]",
        9: "needs 'id' (or 'docid') and 'text'",
        10: "expected a candidate-set record",
    }.items():
        assert fragment in reasons[line], (line, reasons[line])
    assert [group["qid"] for group in part["groups"]] == ["q1", "q10"]
    assert part["pairs"] == 5


def test_pair_rows_rank_per_query_and_refuse_scattered_queries(
    tmp_path: Path, tiny_reranker: Reranker
) -> None:
    texts = ["fleas live a year", "", "tea", "fleas jump"]
    rows = [{"qid": "1", "query": "flea", "docid": f"d{i}", "text": t} for i, t in enumerate(texts)]
    rows += [{"qid": "2", "query": "tea", "id": "x", "text": "tea"}]
    rows += [{"qid": "1", "query": "flea", "id": "late", "text": "fleas again"}]  # qid 1 again: refused
    rows += [{"qid": "2", "query": "tea", "id": "x", "text": "tea"}]  # follows qid 2's rows: x twice
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    fmt, shards = plan_shards(path, 10_000)
    part = score_shard(tiny_reranker, path, fmt, shards[0], top_n=3)
    scores = tiny_reranker.score("flea", texts)
    expected = rank_order(texts, scores)[:3]
    first = part["groups"][0]
    assert [row[0] for row in first["rows"]] == [f"d{i}" for i in expected]
    assert [row[1] for row in first["rows"]] == [1, 2, 3]
    assert [row[2] for row in first["rows"]] == pytest.approx([scores[i] for i in expected], abs=1e-5)
    assert "d1" not in [row[0] for row in first["rows"]]  # the blank text ranks last, cut by top_n
    assert [item["line"] for item in part["bad"]] == [6, 7]
    assert "qid '1' reappears after other queries (first at line 1)" in part["bad"][0]["reason"]
    assert "id 'x' repeats within qid '2'" in part["bad"][1]["reason"]


def test_input_and_output_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="input file not found"):
        plan_shards(tmp_path / "missing.jsonl", 10)
    unknown = _write_jsonl(tmp_path / "x.jsonl", [{"a": 1}])
    with pytest.raises(InputFileError, match="no record of a known shape"):
        plan_shards(unknown, 10)
    with pytest.raises(InputFileError, match=r"\.jsonl .* or \.parquet"):
        plan_shards(_write_jsonl(tmp_path / "x.csv", ["a"]), 10)
    good = _write_jsonl(tmp_path / "in.jsonl", [_set("1", "flea", 2)])
    with pytest.raises(InvalidArgumentError, match=r"must end in \.jsonl or \.parquet"):
        rerank_batch(good, tmp_path / "out.csv")
    (tmp_path / "out.jsonl").write_text("already here\n")
    with pytest.raises(InvalidArgumentError, match="exists; pass --overwrite"):
        rerank_batch(good, tmp_path / "out.jsonl")


# --------------------------------------------------------------------------- DL19 through Ray Data


@pytest.mark.real_model
def test_dl19_top100_through_ray_data_scores_and_ndcg_as_crossrank_eval(
    ray_local, fixture_model_dir: Path, fixture_reranker: Reranker, shared_dir: Path, tmp_path: Path
) -> None:
    """4,300 pairs on 2 actors: every pair's score is Reranker.score's (fp32, 1e-5), nDCG@10 is eval's."""
    from crossrank.evaluation import evaluate, load_dataset

    source = shared_dir / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"
    output = tmp_path / "dl19.parquet"
    report = rerank_batch(
        source,
        output,
        # the engine of fixture_reranker (torch fp32), so scores can match to 1e-5 on every CPU
        reranker=RerankerConfig(
            model=str(fixture_model_dir), device="cpu", backend="torch", precision="fp32"
        ),
        ray_config=RayConfig(actors=2, num_cpus=0.5, shard_pairs=500),
    )
    assert (report.queries, report.pairs, report.pairs_scored, report.bad_records) == (43, 4300, 4300, 0)
    assert report.shards == 9 and report.bad_report is None

    import pyarrow.parquet as pq

    rows = pq.read_table(output).to_pylist()
    got = {(row["qid"], row["id"]): row["score"] for row in rows}
    assert len(got) == len(rows) == 4300  # no pair twice
    dataset = load_dataset("trec-dl-2019", data_dir=shared_dir / "data", depth=100)
    reference: dict[str, list[float]] = {}
    worst = 0.0
    for qid, candidates in dataset.candidates.items():
        reference[qid] = fixture_reranker.score(dataset.queries[qid], [c.text for c in candidates])
        for candidate, score in zip(candidates, reference[qid], strict=True):
            worst = max(worst, abs(got[(qid, candidate.docid)] - score))
    assert worst <= 1e-5
    run_lines = Path(report.run).read_text().splitlines()
    assert len(run_lines) == 4300 and run_lines[0].split()[1:4:2] == ["Q0", "1"]

    by_query = {dataset.queries[qid]: qid for qid in dataset.candidates}

    def scorer(scores):
        return lambda query, texts: scores[by_query[query]]

    ray_scores = {
        qid: [got[(qid, c.docid)] for c in candidates] for qid, candidates in dataset.candidates.items()
    }
    metrics = evaluate(
        dataset, {"reference": scorer(reference), "ray": scorer(ray_scores)}, depths=(100,)
    ).metrics[100]
    assert metrics["ray"]["nDCG@10"] == metrics["reference"]["nDCG@10"]
    assert metrics["ray"]["nDCG@10"] == pytest.approx(0.5495, abs=5e-5)  # docs/quality.md, crossrank eval


# --------------------------------------------------------------------------- interrupt and resume


def _command(input_path: Path, output: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "crossrank", "rerank-batch", str(input_path), str(output),
        "--model", str(model), "--actors", "1", "--shard-pairs", "100", "--local-cpus", "2", "--json",
        *extra,
    ]  # fmt: skip


def _ray_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-f", "gcs_server|raylet"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_AUTH_MODE": "disabled"}


@contextlib.contextmanager
def _running(command: list[str]) -> Iterator[subprocess.Popen]:
    """``command`` in a process group of its own, killed with its group if still running at the end."""
    process = subprocess.Popen(
        command,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _interrupt_after_shards(process: subprocess.Popen, parts: Path, shards: int) -> None:
    deadline = time.monotonic() + 150
    while len(list(parts.glob("shard-*.json"))) < shards:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)


@pytest.mark.real_model
def test_ctrl_c_exits_within_the_grace_even_if_rays_shutdown_hangs(
    fixture_model_dir: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """A clean-up that never ends (here ``ray.shutdown``, made to hang) can't keep the command alive:
    it exits 130 once the grace is spent, and the local Ray it started goes with it."""
    source = shared_dir / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"
    output = tmp_path / "out.jsonl"
    command = _command(source, output, fixture_model_dir)
    hang = (
        "import sys, time, ray; ray.shutdown = lambda *a, **k: time.sleep(3600); "
        "import crossrank.cli as cli; cli.interrupt.INTERRUPT_GRACE_S = 3.0; sys.argv[0] = 'crossrank'; "
        "cli.main()"
    )
    before = _ray_pids()
    with _running([sys.executable, "-c", hang, *command[3:]]) as process:
        _interrupt_after_shards(process, tmp_path / "out.jsonl.parts", 3)
        started = _ray_pids() - before
        interrupted = time.monotonic()
        process.wait(timeout=60)
        waited = time.monotonic() - interrupted
    log = process.stdout.read()
    assert process.returncode == 130 and "interrupted" in log, log[-3000:]
    assert 3.0 <= waited < 30, waited  # the grace was given, and was the bound
    assert started  # the command's own local Ray ...
    deadline = time.monotonic() + 30
    while started & _ray_pids():  # ... is gone with it
        assert time.monotonic() < deadline, f"Ray processes left behind: {started & _ray_pids()}"
        time.sleep(0.2)
    assert not output.exists()


@pytest.mark.real_model
def test_interrupted_run_resumes_without_rescoring_or_losing_pairs(
    fixture_model_dir: Path, fixture_reranker: Reranker, shared_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C mid-run, then the same command: complete output, each pair once, finished shards kept.

    The trained model, not the tiny one: its shards take long enough (about a second each here)
    that the interrupt lands while most of the 43 shards are still to do, on an idle machine too.
    """
    source = shared_dir / "data" / "trec-dl-2019-passage" / "bm25_top100.jsonl"
    doubled = [json.loads(line) for line in source.read_text().splitlines()]  # 43 shards of 100 pairs
    input_path = _write_jsonl(tmp_path / "in.jsonl", doubled)
    output = tmp_path / "out.jsonl"
    parts = tmp_path / "out.jsonl.parts"
    same_engine = ("--backend", "torch", "--precision", "fp32")  # as fixture_reranker, on every CPU
    with _running(_command(input_path, output, fixture_model_dir, *same_engine)) as first:
        _interrupt_after_shards(first, parts, 3)
        first.wait(timeout=60)
    done_before = {p.name: p.stat().st_mtime_ns for p in parts.glob("shard-*.json")}
    assert first.returncode == 130 and not output.exists() and 3 <= len(done_before) < 43

    second = subprocess.run(
        _command(input_path, output, fixture_model_dir, *same_engine),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout)
    assert report["shards"] == 43 and report["shards_resumed"] == len(done_before)
    assert report["pairs_scored"] == 4300 - 100 * len(done_before)  # finished shards were not redone
    assert not parts.exists()

    rows = [json.loads(line) for line in output.read_text().splitlines()]
    keys = [(row["qid"], row["id"]) for row in rows]
    expected = {(r["qid"], h["docid"]) for r in doubled for h in r["hits"]}
    assert len(keys) == len(set(keys)) == 4300 and set(keys) == expected  # complete, each pair once
    scores = {key: row["score"] for key, row in zip(keys, rows, strict=True)}
    for record in doubled[::11]:
        alone = fixture_reranker.score(record["query"], [h["text"] for h in record["hits"]])
        got = [scores[(record["qid"], h["docid"])] for h in record["hits"]]
        assert got == pytest.approx(alone, abs=1e-5)
    assert len(Path(report["run"]).read_text().splitlines()) == 4300


# --------------------------------------------------------------------------- an LLM reranker


@pytest.mark.real_model
def test_an_llm_reranker_scores_through_ray_data_as_alone(ray_local, tmp_path: Path) -> None:
    """A tiny Qwen3-Reranker with an instruction: every pair Ray's actors score is Reranker.score's."""
    import pyarrow.parquet as pq

    from crossrank.families_testing import build_tiny_qwen3_reranker

    model = build_tiny_qwen3_reranker(tmp_path / "Qwen3-Reranker-tiny")
    records = [
        {
            "qid": "q1",
            "query": "how long does a flea live",
            "hits": [
                {"docid": f"d{i}", "text": text}
                for i, text in enumerate(
                    ["fleas live a year", "the eiffel tower is in paris", "bread dough rests"]
                )
            ],
        },
        {
            "qid": "q2",
            "query": "capital of france",
            "hits": [
                {"docid": f"e{i}", "text": text} for i, text in enumerate(["paris is the capital", "tea"])
            ],
        },
    ]
    source = _write_jsonl(tmp_path / "in.jsonl", records)
    config = RerankerConfig(model=str(model), device="cpu", backend="torch", instruction="Find facts")
    report = rerank_batch(
        source, tmp_path / "out.parquet", reranker=config, ray_config=RayConfig(actors=1, num_cpus=0.5)
    )
    assert (report.queries, report.pairs_scored, report.bad_records) == (2, 5, 0)
    got = {
        (row["qid"], row["id"]): row["score"] for row in pq.read_table(tmp_path / "out.parquet").to_pylist()
    }
    alone = Reranker.from_config(config)
    assert alone.family == "qwen3-reranker"
    for record in records:
        scores = alone.score(record["query"], [hit["text"] for hit in record["hits"]])
        for hit, score in zip(record["hits"], scores, strict=True):
            assert abs(got[(record["qid"], hit["docid"])] - score) <= 1e-5
