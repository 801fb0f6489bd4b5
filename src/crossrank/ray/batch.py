"""Batch reranking on Ray Data: candidate sets from JSONL or Parquet in, ranked pairs and a TREC run out.

The input is cut into **shards** of about ``shard_pairs`` (query, candidate) pairs at record
boundaries by one streaming pass over the file on the driver (nothing is parsed but what a boundary
needs; :mod:`crossrank.ray.shards` plans and reads them). The shards go through ``ray.data``
``map_batches`` to an actor pool (``ActorPoolStrategy(size=actors)``) of :class:`ShardScorer`; each
actor holds one :class:`crossrank.Reranker` built from a :class:`crossrank.RerankerConfig`, reads
its shard, checks every record and scores the good ones with :meth:`crossrank.Reranker.score_batch`
(the one scoring path; a candidate set of at least ``batch_size`` pairs is planned alone, so its
scores are those of ``Reranker.score``, smaller ones share forward passes). The driver writes each
finished shard to ``OUTPUT.parts/`` (write, then rename), so an interrupted run resumes where it
stopped: a shard whose part exists is never scored again. When all are done, the parts are merged,
in input order, into OUTPUT (JSONL or Parquet, one row per ranked pair), a TREC run, and a report of
bad records (file, line, reason); OUTPUT appears only complete.

Input records, one per JSONL line or Parquet row, in either shape:

* a candidate set: ``{"qid": ..., "query": ..., "candidates": [{"id": ..., "text": ...}, ...]}``
  (``hits`` with ``docid`` is read the same: the shape of Pyserini-style run dumps);
* one pair per record: ``{"qid": ..., "query": ..., "id": ..., "text": ...}``; a query's rows must be
  contiguous (as in a TREC run), and are ranked together.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossrank.config import RerankerConfig
from crossrank.errors import InputFileError, InvalidArgumentError, ScoringError
from crossrank.ray.config import RayConfig
from crossrank.ray.shards import CandidateSet, Format, Shard, plan_shards, read_shard
from crossrank.results import rank_order

__all__ = ["BatchReport", "ShardScorer", "plan_shards", "rerank_batch", "score_shard"]

logger = logging.getLogger(__name__)

#: Pairs per ``score_batch`` call inside a shard: full forward passes, bounded memory.
PAIRS_PER_CALL = 1024
_PARTS_VERSION = 1


@dataclass
class BatchReport:
    """What :func:`rerank_batch` did.

    Attributes:
        input, output, run, bad_report: The files (``bad_report`` is None when every record was good).
        format: ``"sets"`` (candidate sets) or ``"pairs"`` (one pair per record).
        shards: Shards of the input; ``shards_resumed`` of them were already done by an earlier run.
        queries, pairs: Ranked queries and pairs written to OUTPUT (top_n applied).
        pairs_scored: Pairs scored by this run (the resumed shards' excluded).
        bad_records: Records reported in ``bad_report`` and left out of OUTPUT.
        seconds: Wall time of the scoring stage of this run.
        actors: Size of the actor pool.
    """

    input: str
    output: str
    run: str
    bad_report: str | None
    format: str
    shards: int
    shards_resumed: int
    queries: int
    pairs: int
    pairs_scored: int
    bad_records: int
    seconds: float
    actors: int
    bad_examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pairs_per_second(self) -> float:
        """Pairs this run scored per second of its scoring stage."""
        return self.pairs_scored / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {**asdict(self), "pairs_per_second": self.pairs_per_second}


# --------------------------------------------------------------------------- scoring (actors)


def score_shard(
    reranker: Any, path: str | os.PathLike[str], fmt: Format, shard: Shard, top_n: int | None = None
) -> dict[str, Any]:
    """Read, check and score one shard with ``reranker`` (a :class:`crossrank.Reranker`).

    Returns:
        ``{"shard", "pairs", "groups": [{"qid", "line", "rows": [[id, rank, score], ...]}], "bad":
        [{"line", "reason"}]}``, groups in input order, each ranked by
        :func:`crossrank.results.rank_order` (score, ties in input order, blank texts last).
    """
    sets, bad = read_shard(reranker, Path(path), fmt, shard)
    scores: list[list[float] | None] = []
    chunk: list[CandidateSet] = []

    def flush() -> None:
        try:
            scores.extend(reranker.score_batch([(s.query, s.texts) for s in chunk]))
        except ScoringError:  # a set the model can't score (NaN) fails alone, not its batch-mates
            for one in chunk:
                try:
                    scores.extend(reranker.score_batch([(one.query, one.texts)]))
                except ScoringError as err:
                    scores.append(None)
                    bad.append({"line": one.line, "reason": str(err)})
        chunk.clear()

    # A set that fills forward passes on its own is planned alone: its batches, and so its scores, are
    # bit for bit those of Reranker.score(query, texts). Smaller sets share calls so that passes stay
    # full; mixing moves a logit by float rounding only (measured up to ~1e-5 on DL19).
    for candidate_set in sets:
        alone = len(candidate_set.texts) >= reranker.batch_size
        if chunk and (alone or sum(len(s.texts) for s in chunk) + len(candidate_set.texts) > PAIRS_PER_CALL):
            flush()
        chunk.append(candidate_set)
        if alone:
            flush()
    if chunk:
        flush()
    groups = []
    for candidate_set, set_scores in zip(sets, scores, strict=True):
        if set_scores is None:
            continue
        order = rank_order(candidate_set.texts, set_scores)[:top_n]
        rows = [[candidate_set.ids[i], rank, set_scores[i]] for rank, i in enumerate(order, start=1)]
        groups.append({"qid": candidate_set.qid, "line": candidate_set.line, "rows": rows})
    bad.sort(key=lambda item: item["line"])
    return {
        "shard": shard.index,
        "pairs": sum(len(s.texts) for s, sc in zip(sets, scores, strict=True) if sc is not None),
        "groups": groups,
        "bad": bad,
    }


class ShardScorer:
    """The callable class of ``map_batches``: one Reranker per actor, one shard per row of the batch."""

    def __init__(self, config: dict[str, Any], path: str, fmt: Format, top_n: int | None) -> None:
        from crossrank.reranker import Reranker

        self.reranker = Reranker(**config)
        self.path, self.fmt, self.top_n = path, fmt, top_n

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        parts = []
        for index, start, end, first, pairs in zip(
            batch["index"], batch["start"], batch["end"], batch["first_line"], batch["pairs"], strict=True
        ):
            shard = Shard(int(index), int(start), int(end), int(first), int(pairs))
            parts.append(json.dumps(score_shard(self.reranker, self.path, self.fmt, shard, self.top_n)))
        return {"shard": np.asarray(batch["index"]), "part": np.asarray(parts, dtype=object)}


# --------------------------------------------------------------------------- the run (driver)


def _output_kind(path: Path) -> Literal["jsonl", "parquet"]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InvalidArgumentError(f"OUTPUT must end in .jsonl or .parquet, got {str(path)!r}")


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _input_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _prepare(
    input_path: Path, output: Path, settings: dict[str, Any], shard_pairs: int, overwrite: bool
) -> tuple[Format, list[Shard], Path, int]:
    """Plan the shards, or read the plan of the interrupted run this one resumes."""
    parts = _parts_dir(output)
    manifest_path = parts / "manifest.json"
    identity = _input_identity(input_path)
    if manifest_path.is_file() and not overwrite:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("input") != identity or manifest.get("settings") != settings:
            raise InvalidArgumentError(
                f"{str(parts)!r} holds a partial run of another input or other settings; resume it with "
                "the same ones, or pass --overwrite to start over"
            )
        shards = [Shard(**shard) for shard in manifest["shards"]]
        done = sum(1 for shard in shards if _part_path(parts, shard.index).is_file())
        return manifest["format"], shards, parts, done
    if output.exists() and not overwrite:
        raise InvalidArgumentError(f"{str(output)!r} exists; pass --overwrite to replace it")
    if parts.exists():
        shutil.rmtree(parts)
    fmt, shards = plan_shards(input_path, shard_pairs)
    parts.mkdir(parents=True)
    manifest = {
        "version": _PARTS_VERSION,
        "input": identity,
        "settings": settings,
        "format": fmt,
        "shards": [asdict(shard) for shard in shards],
    }
    _write_atomic(manifest_path, json.dumps(manifest))
    return fmt, shards, parts, 0


def _part_path(parts: Path, index: int) -> Path:
    return parts / f"shard-{index:07d}.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def rerank_batch(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    reranker: RerankerConfig | None = None,
    ray_config: RayConfig | None = None,
    top_n: int | None = None,
    run: str | os.PathLike[str] | None = None,
    run_tag: str = "crossrank",
    overwrite: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> BatchReport:
    """Rerank every candidate set of ``input_path`` with a Ray Data actor pool; write ranked results.

    Args:
        input_path: JSONL or Parquet of candidate sets ``{qid, query, candidates: [{id, text}]}`` or
            of pairs ``{qid, query, id, text}`` (see the module's docstring).
        output: ``.jsonl`` or ``.parquet``: one row ``{qid, id, rank, score}`` per ranked pair, in
            input order, each query's pairs by rank. Scores are ``Reranker.score``'s (raw logits
            unless the config sets ``normalize``).
        reranker: The model; each actor builds ``Reranker(**reranker.model_dump())``. Default:
            ``RerankerConfig()`` (reads ``CROSSRANK_*``).
        ray_config: Actors, resources, shard size and the cluster (``address``); default
            ``RayConfig()``. Uses the Ray this process already joined if there is one.
        top_n: Keep each query's best ``top_n``; None keeps all.
        run: The TREC run to write; default: OUTPUT with the suffix ``.run``.
        run_tag: The run's last column.
        overwrite: Replace an existing OUTPUT, or a partial run of other inputs or settings.
        progress: Called as ``progress(shards_done, shards_total, pairs_done)`` after each shard.

    Returns:
        A :class:`BatchReport`. Bad records are in ``OUTPUT.bad.jsonl`` (``{file, line, reason}``;
        for Parquet, ``line`` is the 1-based row) and left out of OUTPUT; never dropped silently.

    Raises:
        InputFileError: The input can't be read or has no record of a known shape.
        InvalidArgumentError: OUTPUT exists, or a partial run there was made with another input or
            settings (without ``overwrite``).

    Example:
        >>> from crossrank import RerankerConfig
        >>> from crossrank.ray import RayConfig
        >>> report = rerank_batch("bm25_top100.jsonl", "reranked.jsonl",  # doctest: +SKIP
        ...     reranker=RerankerConfig(model="cross-encoder/ms-marco-MiniLM-L6-v2"),
        ...     ray_config=RayConfig(actors=2, num_cpus=1))
        >>> report.pairs, report.bad_records  # doctest: +SKIP
        (4300, 0)
    """
    from crossrank.ray.runtime import ray_cluster, require_ray

    require_ray()
    input_path, output = Path(input_path), Path(output)
    if not input_path.is_file():
        raise InputFileError("input file not found", path=input_path)
    kind = _output_kind(output)
    run_path = Path(run) if run is not None else output.with_suffix(".run")
    reranker = reranker or RerankerConfig()
    ray_config = ray_config or RayConfig()
    config = ray_config.actor_reranker_config(reranker).model_dump()
    settings = {"reranker": reranker.model_dump(), "top_n": top_n}
    fmt, shards, parts, resumed = _prepare(input_path, output, settings, ray_config.shard_pairs, overwrite)
    todo = [shard for shard in shards if not _part_path(parts, shard.index).is_file()]
    pairs_scored, started = 0, time.perf_counter()
    if progress is not None:
        progress(len(shards) - len(todo), len(shards), 0)
    if todo:
        with ray_cluster(ray_config) as ray:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            items = [asdict(shard) for shard in todo]
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardScorer,
                fn_constructor_kwargs={
                    "config": config,
                    "path": str(input_path.resolve()),
                    "fmt": fmt,
                    "top_n": top_n,
                },
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=ray_config.actors),
                **ray_config.actor_options(),
            )
            done = len(shards) - len(todo)
            for row in dataset.iter_rows():
                part = json.loads(row["part"])
                _write_atomic(_part_path(parts, int(row["shard"])), json.dumps(part))
                done += 1
                pairs_scored += part["pairs"]
                if progress is not None:
                    progress(done, len(shards), pairs_scored)
    seconds = time.perf_counter() - started
    queries, pairs, bad = _merge(input_path, output, kind, run_path, run_tag, parts, shards)
    bad_path = output.with_name(output.name + ".bad.jsonl")
    if bad:
        _write_atomic(bad_path, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in bad))
    elif bad_path.exists():
        bad_path.unlink()
    shutil.rmtree(parts)
    return BatchReport(
        input=str(input_path),
        output=str(output),
        run=str(run_path),
        bad_report=str(bad_path) if bad else None,
        format=fmt,
        shards=len(shards),
        shards_resumed=resumed,
        queries=queries,
        pairs=pairs,
        pairs_scored=pairs_scored,
        bad_records=len(bad),
        seconds=seconds,
        actors=ray_config.actors,
        bad_examples=bad[:5],
    )


def _merge(
    input_path: Path,
    output: Path,
    kind: str,
    run_path: Path,
    run_tag: str,
    parts: Path,
    shards: list[Shard],
) -> tuple[int, int, list[dict[str, Any]]]:
    """Merge the parts, in input order, into OUTPUT and the run (each written whole, then renamed)."""
    tmp_output = output.with_name(output.name + ".tmp")
    tmp_run = run_path.with_name(run_path.name + ".tmp")
    first_line: dict[str, int] = {}
    bad: list[dict[str, Any]] = []
    queries = pairs = 0
    with tmp_run.open("w", encoding="utf-8") as run_file, _OutputWriter(tmp_output, kind) as writer:
        for shard in shards:
            part = json.loads(_part_path(parts, shard.index).read_text(encoding="utf-8"))
            bad += [{"file": str(input_path), **item} for item in part["bad"]]
            for group in part["groups"]:
                qid = group["qid"]
                if qid in first_line:  # the same query twice: the later one is reported, not merged
                    bad.append(
                        {
                            "file": str(input_path),
                            "line": group["line"],
                            "reason": f"qid {qid!r} was already ranked from line {first_line[qid]}",
                        }
                    )
                    continue
                first_line[qid] = group["line"]
                queries += 1
                pairs += len(group["rows"])
                writer.write(qid, group["rows"])
                run_file.writelines(
                    f"{qid} Q0 {doc} {rank} {score!r} {run_tag}\n" for doc, rank, score in group["rows"]
                )
    bad.sort(key=lambda item: item["line"])
    os.replace(tmp_output, output)
    os.replace(tmp_run, run_path)
    return queries, pairs, bad


class _OutputWriter:
    """Rows ``{qid, id, rank, score}`` to JSONL or Parquet, streamed."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind

    def __enter__(self) -> _OutputWriter:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.schema = pa.schema(
                [("qid", pa.string()), ("id", pa.string()), ("rank", pa.int32()), ("score", pa.float64())]
            )
            self.parquet = pq.ParquetWriter(self.path, self.schema)
            self.buffer: list[tuple[Any, ...]] = []
        else:
            self.file = self.path.open("w", encoding="utf-8")
        return self

    def write(self, qid: str, rows: list[list[Any]]) -> None:
        if self.kind == "parquet":
            self.buffer += [(qid, *row) for row in rows]
            if len(self.buffer) >= 65536:  # row groups of a useful size, not one per query
                self._flush()
        else:
            self.file.writelines(
                json.dumps({"qid": qid, "id": doc, "rank": rank, "score": score}, ensure_ascii=False) + "\n"
                for doc, rank, score in rows
            )

    def _flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            columns = dict(
                zip(("qid", "id", "rank", "score"), map(list, zip(*self.buffer, strict=True)), strict=True)
            )
            self.parquet.write_table(pa.Table.from_pydict(columns, schema=self.schema))
            self.buffer = []

    def __exit__(self, *exc: object) -> None:
        if self.kind == "parquet":
            self._flush()
            self.parquet.close()
        else:
            self.file.close()
