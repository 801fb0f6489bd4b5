"""Training data: questions with their relevant documents, read and checked, and their hard negatives.

:func:`load_training_data` reads a BEIR folder or a JSONL file (every fault an
:class:`~crossrank.errors.InputFileError` naming the file and the line);
:func:`mine_hard_negatives` takes each question's stage-1 top documents that are not judged
positive; :func:`training_pairs` turns both into the (query, document, label) columns trained on.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossrank.corpus import json_object, numbered_lines, read_corpus
from crossrank.errors import InputFileError, InvalidArgumentError
from crossrank.finetune.config import Stage1

__all__ = [
    "TrainingData",
    "TrainingQuery",
    "load_training_data",
    "mine_hard_negatives",
    "normalized",
    "training_pairs",
]


@dataclass(frozen=True, slots=True)
class TrainingQuery:
    """One training question: its text, the documents that answer it and, optionally, ones that don't.

    Attributes:
        qid: Query id (BEIR ``_id``; for JSONL input, ``"line N"``).
        query: Query text.
        positives: Texts of the relevant documents.
        positive_ids: Corpus ids of the relevant documents (empty for JSONL input).
        negatives: Texts judged not relevant (qrels grade 0, or the JSONL ``negatives``).
    """

    qid: str
    query: str
    positives: tuple[str, ...]
    positive_ids: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Training questions plus the collection hard negatives are mined from.

    Attributes:
        source: The folder or file read.
        queries: The training questions, in file order.
        corpus_ids: Ids of the documents to mine negatives from (for JSONL input, ``"pool N"``).
        corpus_texts: Their texts (for JSONL input: every distinct positive and negative text).
        dev: Judged dev queries (BEIR ``qrels/dev.tsv``), watched during training; empty without one.
    """

    source: Path
    queries: list[TrainingQuery]
    corpus_ids: list[str]
    corpus_texts: list[str]
    dev: list[TrainingQuery] = field(default_factory=list)

    @property
    def is_beir(self) -> bool:
        """Whether the data came from a BEIR folder (then held-out splits can be read from it)."""
        return self.source.is_dir()


def load_training_data(source: str | os.PathLike[str], *, split: str = "train") -> TrainingData:
    """Read training questions from a BEIR folder or a JSONL file, checking everything.

    Args:
        source: A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``, optional
            ``qrels/dev.tsv``) or a JSONL file with one ``{"query", "positives": [text],
            "negatives"?: [text]}`` object per line.
        split: The BEIR qrels file to train on.

    Raises:
        InputFileError: A file is missing or empty, a line is malformed, qrels name an unknown query
            or document, or a query has no positive; the message names the file and the line.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     file = pathlib.Path(folder) / "train.jsonl"
        ...     _ = file.write_text('{"query": "flea lifespan", "positives": ["Fleas live a year."]}\\n')
        ...     load_training_data(file).queries[0].positives
        ('Fleas live a year.',)
    """
    path = Path(source)
    if path.is_dir():
        return _load_beir_training(path, split)
    if not path.exists():
        raise InputFileError(
            "no such file or folder (give a BEIR folder or a JSONL file of {query, positives, negatives?})",
            path=path,
        )
    return _load_jsonl_training(path)


def _numbered_lines(file: Path) -> list[tuple[int, str]]:
    lines = numbered_lines(file)
    if not lines:
        raise InputFileError("the file is empty", path=file)
    return lines


def _read_queries(file: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in _numbered_lines(file):
        record = json_object(line, file, number)
        qid, text = record.get("_id", record.get("id")), record.get("text")
        if qid is None or not isinstance(text, str) or not text.strip():
            raise InputFileError("expected {'_id': ..., 'text': non-empty string}", path=file, line=number)
        queries[str(qid)] = text
    return queries


def _read_qrels(
    file: Path, queries: Mapping[str, str], documents: Mapping[str, str]
) -> dict[str, tuple[list[str], list[str], int]]:
    """``{qid: (positive ids, negative ids, first line)}`` from a BEIR qrels TSV, every id checked."""
    judged: dict[str, tuple[list[str], list[str], int]] = {}
    rows = _numbered_lines(file)
    header = rows[0][1].split("\t")
    if [column.strip() for column in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise InputFileError(
            "expected the header 'query-id<TAB>corpus-id<TAB>score'", path=file, line=rows[0][0]
        )
    for number, line in rows[1:]:
        cells = [cell.strip() for cell in next(csv.reader([line], delimiter="\t"))]
        if len(cells) < 3:
            raise InputFileError(
                f"expected 3 tab-separated columns, found {len(cells)}", path=file, line=number
            )
        qid, docid, grade_text = cells[:3]
        try:
            grade = int(float(grade_text))
        except ValueError:
            raise InputFileError(f"score {grade_text!r} is not a number", path=file, line=number) from None
        if qid not in queries:
            raise InputFileError(f"query id {qid!r} is not in queries.jsonl", path=file, line=number)
        if docid not in documents:
            raise InputFileError(f"corpus id {docid!r} is not in corpus.jsonl", path=file, line=number)
        positives, negatives, _ = judged.setdefault(qid, ([], [], number))
        (positives if grade > 0 else negatives).append(docid)
    if not judged:
        raise InputFileError("no judgements below the header", path=file)
    for qid, (positives, _, first) in judged.items():
        if not positives:
            raise InputFileError(
                f"query {qid!r} has no positive (every judgement is 0): nothing to learn from",
                path=file,
                line=first,
            )
    return judged


def _load_beir_training(folder: Path, split: str) -> TrainingData:
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise InputFileError(
                "no such file (a BEIR training folder holds corpus.jsonl, queries.jsonl and "
                f"qrels/{split}.tsv)",
                path=folder / name,
            )
    corpus = read_corpus(folder / "corpus.jsonl")  # InputFileError for an empty or malformed corpus
    documents = {document.id: document.text for document in corpus}
    queries = _read_queries(folder / "queries.jsonl")

    def build(file: Path) -> list[TrainingQuery]:
        return [
            TrainingQuery(
                qid,
                queries[qid],
                tuple(documents[d] for d in positives),
                tuple(positives),
                tuple(documents[d] for d in negatives),
            )
            for qid, (positives, negatives, _) in _read_qrels(file, queries, documents).items()
        ]

    dev_file = folder / "qrels" / "dev.tsv"
    dev = build(dev_file) if split != "dev" and dev_file.is_file() else []
    return TrainingData(
        folder, build(folder / "qrels" / f"{split}.tsv"), list(documents), list(documents.values()), dev
    )


def _load_jsonl_training(file: Path) -> TrainingData:
    def texts(record: dict[str, Any], key: str, number: int) -> tuple[str, ...]:
        value = record.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise InputFileError(f"'{key}' must be a list of non-empty strings", path=file, line=number)
        return tuple(value)

    queries = []
    for number, line in _numbered_lines(file):
        record = json_object(line, file, number)
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InputFileError("expected a non-empty string 'query'", path=file, line=number)
        positives = texts(record, "positives", number)
        if not positives:
            raise InputFileError(
                f"query {query!r} has no positives: nothing to learn from", path=file, line=number
            )
        queries.append(
            TrainingQuery(f"line {number}", query, positives, (), texts(record, "negatives", number))
        )
    pool = list(dict.fromkeys(text for q in queries for text in (*q.positives, *q.negatives)))
    return TrainingData(file, queries, [f"pool {i}" for i in range(len(pool))], pool)


# --------------------------------------------------------------------------- hard negatives


def mine_hard_negatives(
    data: TrainingData,
    queries: Sequence[TrainingQuery] | None = None,
    *,
    num_negatives: int = 8,
    stage1: Stage1 = "bm25",
) -> dict[str, list[str]]:
    """Each query's hard negatives: its stage-1 top documents that are not judged positive.

    The documents a reranker will see in production are the ones stage 1 retrieves, so those are
    the negatives worth learning from. Judged positives are excluded by id and by text.

    Args:
        data: From :func:`load_training_data` (its corpus is searched).
        queries: The queries to mine for (default: all of ``data.queries``).
        num_negatives: Negatives per query, best-ranked first.
        stage1: ``"bm25"`` (``bm25s``) or ``"bi-encoder"`` (all-MiniLM-L6-v2).

    Returns:
        ``{qid: [negative text, ...]}``, at most ``num_negatives`` each.
    """
    if num_negatives < 0:
        raise InvalidArgumentError(f"num_negatives must be >= 0, got {num_negatives}")
    chosen = list(data.queries if queries is None else queries)
    if num_negatives == 0 or not chosen:
        return {q.qid: [] for q in chosen}
    depth = num_negatives + max(len(q.positives) for q in chosen) + 5
    texts = [q.query for q in chosen]
    if stage1 == "bm25":
        from crossrank.evaluation.stage1 import bm25_search

        results = bm25_search(data.corpus_texts, texts, k=depth)
    elif stage1 == "bi-encoder":
        from crossrank.evaluation.stage1 import bi_encoder_search

        results = bi_encoder_search(data.corpus_texts, texts, k=depth)
    else:
        raise InvalidArgumentError(f"stage1 must be 'bm25' or 'bi-encoder', got {stage1!r}")
    mined = {}
    for query, hits in zip(chosen, results, strict=True):
        excluded_ids, excluded_texts = set(query.positive_ids), set(query.positives)
        negatives = [
            data.corpus_texts[i]
            for i, _ in hits
            if data.corpus_ids[i] not in excluded_ids and data.corpus_texts[i] not in excluded_texts
        ]
        mined[query.qid] = negatives[:num_negatives]
    return mined


def training_pairs(
    queries: Sequence[TrainingQuery], mined: Mapping[str, list[str]]
) -> tuple[list[str], list[str], list[float]]:
    """(query, document, label) columns: every positive, the given negatives, the mined negatives.

    Example:
        >>> query = TrainingQuery("q1", "flea", ("fleas live a year",), negatives=("tea",))
        >>> training_pairs([query], {"q1": ["tea", "dogs"]})
        (['flea', 'flea', 'flea'], ['fleas live a year', 'tea', 'dogs'], [1.0, 0.0, 0.0])
    """
    left, right, labels = [], [], []
    for query in queries:
        given = list(query.negatives)
        negatives = given + [text for text in mined.get(query.qid, []) if text not in given]
        for text, label in [(t, 1.0) for t in query.positives] + [(t, 0.0) for t in negatives]:
            left.append(query.query)
            right.append(text)
            labels.append(label)
    return left, right, labels


def normalized(text: str) -> str:
    """A query's text as compared with held-out queries: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())
