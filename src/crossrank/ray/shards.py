"""The input of a batch run, cut into shards and read back: planning on the driver, reading on actors.

:func:`plan_shards` cuts a JSONL or Parquet file into shards (:class:`Shard`) of about
``shard_pairs`` (query, candidate) pairs at record boundaries, in one streaming pass (a query's rows
in the one-pair-per-record shape stay together). :func:`read_shard` reads one shard back on an actor
and checks every record: the good ones become :class:`CandidateSet` objects, the bad ones
``{line, reason}``. The record shapes are described in :mod:`crossrank.ray.batch`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from crossrank.errors import CrossrankError, InputFileError

__all__ = ["CandidateSet", "Format", "Shard", "plan_shards", "read_shard"]

#: The shape of a file's records: candidate sets, or one (query, candidate) pair per record.
Format = Literal["sets", "pairs"]


@dataclass(frozen=True)
class Shard:
    """A slice of the input: bytes ``[start, end)`` of a JSONL file or rows ``[start, end)`` of a Parquet
    file, whose first record is on line (row) ``first_line`` (1-based)."""

    index: int
    start: int
    end: int
    first_line: int
    pairs: int


@dataclass
class CandidateSet:
    """A query's candidates as read and checked from a shard; ``line`` is its first line (row)."""

    qid: str
    query: str
    ids: list[str]
    texts: list[str]
    line: int


# --------------------------------------------------------------------------- planning (driver)


def _input_format(path: Path) -> Literal["jsonl", "parquet"]:
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise InputFileError("input must be .jsonl (.json, .ndjson) or .parquet", path=path)


def _record_format(record: object) -> Format | None:
    if isinstance(record, dict):
        if "candidates" in record or "hits" in record:
            return "sets"
        if "text" in record:
            return "pairs"
    return None


def plan_shards(path: str | os.PathLike[str], shard_pairs: int) -> tuple[Format, list[Shard]]:
    """Cut ``path`` into shards of about ``shard_pairs`` pairs at record boundaries (one streaming pass).

    A query's rows in the one-pair-per-record shape are never split between shards.

    Raises:
        InputFileError: The file can't be read, or holds no record of a known shape.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError("input file not found", path=path)
    if _input_format(path) == "parquet":
        return _plan_parquet(path, shard_pairs)
    return _plan_jsonl(path, shard_pairs)


def _plan_jsonl(path: Path, shard_pairs: int) -> tuple[Format, list[Shard]]:
    fmt: Format | None = None
    shards: list[Shard] = []
    start = offset = 0
    first_line, pairs, boundary_qid = 1, 0, None
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if fmt is None and raw.strip():
                with contextlib.suppress(ValueError):
                    fmt = _record_format(json.loads(raw))
            if pairs >= shard_pairs and raw.strip():
                # The shard is full: it ends before this record, unless this record continues the
                # previous one's query (pairs shape), whose rows stay together.
                qid = _qid_of(raw) if fmt == "pairs" else None
                if fmt != "pairs" or qid is None or qid != boundary_qid:
                    shards.append(Shard(len(shards), start, offset, first_line, pairs))
                    start, first_line, pairs = offset, number, 0
            if raw.strip():
                # A candidate set's pairs: its "text" keys (a text's own quotes are escaped, \").
                pairs += max(1, raw.count(b'"text"'))
                if fmt == "pairs" and pairs >= shard_pairs:
                    boundary_qid = _qid_of(raw)
            offset += len(raw)
    if pairs:
        shards.append(Shard(len(shards), start, offset, first_line, pairs))
    if fmt is None:
        raise InputFileError(
            "no record of a known shape: expected JSON objects with qid, query and candidates "
            "[{id, text}], or qid, query, id and text",
            path=path,
        )
    return fmt, shards


def _qid_of(raw: bytes) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return str(record.get("qid")) if isinstance(record, dict) else None


def _plan_parquet(path: Path, shard_pairs: int) -> tuple[Format, list[Shard]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise InputFileError(f"not a readable Parquet file ({err})", path=path) from None
    names = set(parquet.schema_arrow.names)
    fmt: Format
    if names & {"candidates", "hits"}:
        fmt = "sets"
    elif "text" in names:
        fmt = "pairs"
    else:
        raise InputFileError(
            f"no column 'candidates' (candidate sets) or 'text' (one pair per row); columns: {sorted(names)}",
            path=path,
        )
    shards: list[Shard] = []
    start = row = pairs = 0
    previous = None
    column = "qid" if fmt == "pairs" else ("candidates" if "candidates" in names else "hits")
    if column not in names:
        raise InputFileError(f"no column {column!r}", path=path)
    for batch in parquet.iter_batches(columns=[column], batch_size=4096):
        values = batch.column(0)
        if fmt == "sets":
            import pyarrow.compute as pc

            sizes = pc.fill_null(pc.list_value_length(values), 0).to_pylist()
            qids = [None] * len(sizes)
        else:
            sizes = [1] * len(values)
            qids = [str(value) for value in values.to_pylist()]
        for size, qid in zip(sizes, qids, strict=True):
            if pairs >= shard_pairs and (fmt != "pairs" or qid != previous):
                shards.append(Shard(len(shards), start, row, start + 1, pairs))
                start, pairs = row, 0
            pairs += max(1, size)
            previous = qid
            row += 1
    if row > start:
        shards.append(Shard(len(shards), start, row, start + 1, pairs))
    return fmt, shards


# --------------------------------------------------------------------------- reading and checking (actors)


def _records(path: Path, shard: Shard) -> Iterator[tuple[int, object]]:
    """``(line, record)`` of a shard; a record that isn't JSON is an :class:`InputFileError` in its place."""
    if _input_format(path) == "parquet":
        yield from _parquet_records(path, shard)
        return
    with path.open("rb") as lines:
        lines.seek(shard.start)
        offset, number = shard.start, shard.first_line
        while offset < shard.end:
            raw = lines.readline()
            if not raw:
                break
            offset += len(raw)
            if raw.strip():
                try:
                    yield number, json.loads(raw)
                except ValueError as err:
                    yield number, InputFileError(f"not valid JSON ({err})", path=path, line=number)
            number += 1


def _parquet_records(path: Path, shard: Shard) -> Iterator[tuple[int, object]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    row = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if row + size > shard.start and row < shard.end:
            table = parquet.read_row_group(group)
            low, high = max(shard.start - row, 0), min(shard.end - row, size)
            for offset, record in enumerate(table.slice(low, high - low).to_pylist()):
                yield row + low + offset + 1, record
        row += size


def _key(value: object, what: str) -> str:
    """A qid or document id as text: a str or an int, without whitespace (a TREC run splits on it)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{what} {text!r} is empty or holds whitespace (a TREC run can't carry it)")
    return text


def _check_set(reranker: Any, record: object) -> CandidateSet:
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    if "qid" not in record or "query" not in record:
        raise ValueError(f"a record needs 'qid' and 'query'; it has {sorted(record)}")
    qid = _key(record["qid"], "qid")
    query = reranker.check_query(record["query"])
    key = "candidates" if "candidates" in record else "hits"
    candidates = record.get(key)
    if not isinstance(candidates, list) or not candidates:
        raise ValueError(f"{key!r} must be a non-empty list of {{id, text}} objects")
    ids, texts, seen = [], [], {}
    for i, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            raise ValueError(f"{key}[{i}] must be an object with id and text, got {type(candidate).__name__}")
        name = "id" if "id" in candidate else "docid"
        if name not in candidate or "text" not in candidate:
            raise ValueError(f"{key}[{i}] needs 'id' (or 'docid') and 'text'; it has {sorted(candidate)}")
        doc = _key(candidate[name], f"{key}[{i}].{name}")
        if doc in seen:
            raise ValueError(f"{key}[{i}].{name} {doc!r} repeats {key}[{seen[doc]}]")
        seen[doc] = i
        if not isinstance(candidate["text"], str):
            raise ValueError(f"{key}[{i}].text is {type(candidate['text']).__name__}, expected a string")
        ids.append(doc)
        texts.append(candidate["text"])
    return CandidateSet(qid, query, ids, texts, 0)


def _check_pair(reranker: Any, record: object) -> tuple[str, str, str, str]:
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    missing = [name for name in ("qid", "query", "text") if name not in record]
    name = "id" if "id" in record else "docid"
    if name not in record:
        missing.append("id")
    if missing:
        raise ValueError(f"a pair record needs qid, query, id and text; missing {', '.join(missing)}")
    if not isinstance(record["text"], str):
        raise ValueError(f"text is {type(record['text']).__name__}, expected a string")
    qid = _key(record["qid"], "qid")
    return qid, reranker.check_query(record["query"]), _key(record[name], name), record["text"]


def read_shard(
    reranker: Any, path: Path, fmt: Format, shard: Shard
) -> tuple[list[CandidateSet], list[dict[str, Any]]]:
    """The shard's good candidate sets, and its bad records as ``{line, reason}``."""
    sets: list[CandidateSet] = []
    bad: list[dict[str, Any]] = []
    first_of: dict[str, int] = {}  # pairs shape: each query's first line in this shard
    seen: set[tuple[str, str]] = set()
    for line, record in _records(path, shard):
        if isinstance(record, InputFileError):
            bad.append({"line": line, "reason": str(record).split(": ", 1)[-1]})
            continue
        if _record_format(record) not in (fmt, None):
            shape = "candidate-set" if fmt == "sets" else "one-pair"
            bad.append({"line": line, "reason": f"expected a {shape} record like the rest of the file"})
            continue
        try:
            if fmt == "sets":
                checked = _check_set(reranker, record)
                checked.line = line
                sets.append(checked)
                continue
            qid, query, doc, text = _check_pair(reranker, record)
            current = sets[-1] if sets else None
            if current is None or current.qid != qid:
                if qid in first_of:
                    raise ValueError(
                        f"qid {qid!r} reappears after other queries (first at line {first_of[qid]}); "
                        "rows of one query must be contiguous"
                    )
                first_of[qid] = line
                current = CandidateSet(qid, query, [], [], line)
                sets.append(current)
            elif query != current.query:
                raise ValueError(f"query differs from line {current.line}'s for qid {qid!r}")
            if (qid, doc) in seen:
                raise ValueError(f"id {doc!r} repeats within qid {qid!r}")
            seen.add((qid, doc))
            current.ids.append(doc)
            current.texts.append(text)
        except (ValueError, TypeError, CrossrankError) as err:
            bad.append({"line": line, "reason": str(err)})
    return sets, bad
