"""The served OpenAPI schema, fuzzed with schemathesis: no input gets a 5xx, every answer matches it.

Schemathesis generates requests from the schema the server publishes (valid and invalid bodies,
odd strings, huge numbers...) against a real server over the tiny model, on each engine of
``SERVING_ENGINES``; the checks are that no response is a server error and that every response
matches its declared schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from crossrank import Reranker
from crossrank.server import ServerConfig, create_app
from crossrank.testing import SERVING_ENGINES, engine_id

EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module", params=SERVING_ENGINES, ids=engine_id)
def api_schema(request, tiny_model_dir, served):
    reranker = Reranker(tiny_model_dir, device="cpu", backend=request.param)
    with served(create_app(reranker, ServerConfig(max_client_batch_size=64, max_wait_ms=0))) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_no_5xx_and_responses_match_the_schema(api_schema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /rerank",
        "POST /v2/rerank",
        "GET /info",
        "GET /health",
        "GET /metrics",
    }
    seen: dict[str, set[int]] = {}

    def fuzz(operation) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(timeout=60)
            seen.setdefault(operation.path, set()).add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])

        check()

    for operation in operations:
        fuzz(operation)
    assert 200 in seen["/rerank"]  # valid bodies were generated too, not only rejected ones
    assert seen["/v2/rerank"] and all(status < 500 for statuses in seen.values() for status in statuses)
