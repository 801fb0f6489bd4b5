"""Evaluation sets: queries, graded judgements, and the stage-1 candidates to rerank.

Two on-disk layouts are understood, so users can bring their own data in either:

* **TREC DL** (``queries.tsv``, ``qrels.txt``, ``bm25_top100.jsonl``): the first-stage run ships
  with passage texts, one JSON line per query ``{"qid", "query", "hits": [{"docid", "text",
  "bm25_score" | "score", "rank"}]}``.
* **BEIR** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``): stage 1 is computed here, with
  BM25 (``bm25s``: Lucene BM25, k1=1.5, b=0.75, English stop words, no stemming) or the
  all-MiniLM-L6-v2 bi-encoder, over ``title + " " + text`` (read by :func:`crossrank.corpus.read_corpus`,
  as ``crossrank rank`` and ``crossrank demo`` read it).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from crossrank.corpus import read_corpus

__all__ = ["NAMED_DATASETS", "Candidate", "EvalDataset", "default_data_dir", "load_dataset"]

#: Dataset names ``load_dataset`` knows, and their folder under the data directory.
NAMED_DATASETS = {
    "trec-dl-2019": "trec-dl-2019-passage",
    "trec-dl-2020": "trec-dl-2020-passage",
    "trec-dl-2021": "trec-dl-2021-passage",
    "beir-scifact": "beir-scifact",
}

Stage1 = Literal["bm25", "bi-encoder"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stage-1 result: document id, its text, and the stage-1 score."""

    docid: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class EvalDataset:
    """What an evaluation needs.

    Attributes:
        name: Display name.
        queries: Query text by query id (only judged queries).
        qrels: ``(query_id, doc_id, grade)`` judgements.
        candidates: Stage-1 ranking per query id, best first.
        stage1: Name of the stage-1 system (``"bm25"``, ``"bi-encoder"``).
        relevance_level: Lowest grade that counts as relevant for MRR and recall (2 on TREC DL
            passage, as ``trec_eval -l 2``; 1 on BEIR).
    """

    name: str
    queries: dict[str, str]
    qrels: list[tuple[str, str, int]]
    candidates: dict[str, list[Candidate]]
    stage1: str
    relevance_level: int


def default_data_dir() -> Path | None:
    """Where named datasets live: ``CROSSRANK_DATA_DIR``, or None when it is not set."""
    value = os.environ.get("CROSSRANK_DATA_DIR")
    return Path(value) if value else None


def load_dataset(
    dataset: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    stage1: Stage1 = "bm25",
    depth: int = 100,
    progress: Callable[[str], None] | None = None,
    split: str = "test",
) -> EvalDataset:
    """Load a named dataset (see :data:`NAMED_DATASETS`) or a folder in the TREC DL or BEIR layout.

    Args:
        dataset: A name such as ``"trec-dl-2019"`` or a path to a folder.
        data_dir: Where named datasets live. Defaults to :func:`default_data_dir`
            (``CROSSRANK_DATA_DIR``); a named dataset without either is an error.
        stage1: For BEIR folders, how to retrieve candidates. TREC DL folders use their BM25 run.
        depth: Candidates kept per query.
        progress: Called with a short message before slow steps (indexing, embedding).
        split: For BEIR folders, the judgements to evaluate on: ``qrels/{split}.tsv`` (``"test"``;
            ``"dev"`` to tune without touching the test split).

    Raises:
        FileNotFoundError: The folder or one of its files is missing (the message says which).
        ValueError: ``dataset`` is neither a known name nor a folder in a known layout.
    """
    name = os.fspath(dataset)
    if name in NAMED_DATASETS and not Path(name).is_dir():
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        if root is None:
            raise FileNotFoundError(
                f"{name!r} is a named dataset: say where the data folder holding "
                f"{NAMED_DATASETS[name]}/ is, with --data-dir DIR or CROSSRANK_DATA_DIR=DIR"
            )
        folder = root / NAMED_DATASETS[name]
    else:
        folder = Path(name)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset folder not found: {str(folder)!r} (named datasets: {', '.join(NAMED_DATASETS)}; "
            "set CROSSRANK_DATA_DIR or --data-dir to where they live)"
        )
    if (folder / "bm25_top100.jsonl").is_file():
        if stage1 != "bm25":
            raise ValueError(f"{folder} ships a BM25 run; stage1={stage1!r} is only for BEIR folders")
        return _load_trec_dl(folder, name, depth)
    if (folder / "corpus.jsonl").is_file():
        return _load_beir(folder, name, stage1, depth, progress, split)
    raise ValueError(
        f"{folder} is neither a TREC DL folder (bm25_top100.jsonl, qrels.txt) nor a BEIR folder "
        "(corpus.jsonl, queries.jsonl, qrels/test.tsv)"
    )


def _load_trec_dl(folder: Path, name: str, depth: int) -> EvalDataset:
    qrels = []
    with (folder / "qrels.txt").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                qid, _, docid, grade = line.split()
                qrels.append((qid, docid, int(grade)))
    queries, candidates = {}, {}
    with (folder / "bm25_top100.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            queries[row["qid"]] = row["query"]
            hits = row["hits"][:depth]
            candidates[row["qid"]] = [
                Candidate(hit["docid"], hit["text"], float(hit.get("bm25_score", hit.get("score", 0.0))))
                for hit in hits
            ]
    return EvalDataset(name, queries, qrels, candidates, stage1="bm25", relevance_level=2)


def _load_beir(
    folder: Path,
    name: str,
    stage1: Stage1,
    depth: int,
    progress: Callable[[str], None] | None,
    split: str = "test",
) -> EvalDataset:
    qrels = []
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file, delimiter="\t"):
            qrels.append((row["query-id"], row["corpus-id"], int(row["score"])))
    judged = {qid for qid, _, _ in qrels}
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["_id"] in judged:
                queries[record["_id"]] = record["text"]
    corpus = read_corpus(folder / "corpus.jsonl")
    ids, texts = [document.id for document in corpus], [document.text for document in corpus]
    qids = list(queries)
    if stage1 == "bm25":
        if progress:
            progress(f"stage 1: BM25 index over {len(texts)} documents")
        from crossrank.evaluation.stage1 import bm25_search

        results = bm25_search(texts, [queries[q] for q in qids], k=depth)
    else:
        if progress:
            progress(f"stage 1: embedding {len(texts)} documents with the bi-encoder")
        from crossrank.evaluation.stage1 import bi_encoder_search

        results = bi_encoder_search(texts, [queries[q] for q in qids], k=depth)
    candidates = {
        qid: [Candidate(ids[i], texts[i], score) for i, score in hits]
        for qid, hits in zip(qids, results, strict=True)
    }
    return EvalDataset(name, queries, qrels, candidates, stage1=stage1, relevance_level=1)
