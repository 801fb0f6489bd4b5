"""Haystack integration of crossrank: rank Documents with a local cross-encoder.

.. code-block:: python

    from haystack_integrations.components.rankers.crossrank import CrossrankRanker

    ranker = CrossrankRanker(top_k=3)
    best = ranker.run(query="how long does a flea live", documents=retrieved)["documents"]
"""

from haystack_integrations.components.rankers.crossrank.ranker import CrossrankRanker

__all__ = ["CrossrankRanker"]
