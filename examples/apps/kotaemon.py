"""Kotaemon (flowsettings.py): crossrank as a TEI reranking resource.

Kotaemon POSTs {query, texts, is_truncated} to ``endpoint_url`` in batches of 6 documents.
"""

KH_RERANKINGS = {
    "crossrank": {
        "spec": {
            "__type__": "kotaemon.rerankings.TeiFastReranking",
            "endpoint_url": "http://localhost:8080/rerank",
            "model_name": "crossrank",
            "is_truncated": True,
            "max_tokens": 512,
        },
        "default": True,
    }
}
