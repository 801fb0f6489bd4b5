"""Rerank a handful of chunks with crossrank and print them, best first.

python examples/quickstart.py                     # the default hub model (needs the hub or the HF cache)
python examples/quickstart.py ../shared/models/crossrank-fixture-minilm-l6
"""

from __future__ import annotations

import sys

from crossrank import Reranker

query = "How long does a flea live?"
chunks = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "A flea can live up to a year, but most live two to three months, depending on the host.",
    "Flea collars release an insecticide that spreads over the animal's skin.",
    "Coffee contains roughly twice as much caffeine per cup as black tea.",
]

reranker = Reranker(sys.argv[1] if len(sys.argv) > 1 else "cross-encoder/ms-marco-MiniLM-L6-v2")
for hit in reranker.rank(query, chunks, top_n=3, normalize=True):
    print(f"{hit.score:.3f}  [{hit.index}] {hit.text}")
