"""LangChain integration of crossrank: rerank retrieved documents with a cross-encoder.

.. code-block:: python

    from langchain_crossrank import CrossrankRerank

    compressor = CrossrankRerank(top_n=3)
    best = compressor.compress_documents(retrieved_docs, "how long does a flea live")
"""

from langchain_crossrank.rerank import CrossrankRerank

__all__ = ["CrossrankRerank"]
