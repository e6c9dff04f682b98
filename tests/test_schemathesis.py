"""The OpenAPI document is what the server does: schemathesis sends a real `tallyd serve`
requests generated from its own `/openapi.json`, and every answer must be a documented
status, in a documented content type, with documented headers and a body matching the
documented schema — and never a 5xx."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, SerializationContext
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tallyd.app import OPENAPI
from tests.conftest import Server

pytestmark = pytest.mark.timeout(150)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 100
# Requests per operation, and their statuses: what the run covered, for the summary.
SENT: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: SerializationContext, value: Any) -> bytes:
    """The documented events, one JSON document a line."""
    lines = value if isinstance(value, list) else [value]
    # json, not orjson: generated integers may be past 64 bits.
    return "\n".join(json.dumps(line) for line in lines).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("schemathesis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# The document the server serves at /openapi.json (its bytes are checked below), loaded
# at collection so that each operation is a test of its own.
# The live stream never ends, so a request to it would hang: tests/test_dashboard.py tests it.
STREAMED = "/api/live"
schema = schemathesis.openapi.from_dict(orjson.loads(OPENAPI)).exclude(path=STREAMED)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(
    case: Case[Any], served: Server, session: requests.Session
) -> None:
    response = case.call_and_validate(served.url, session, checks=CHECKS, timeout=10)
    SENT[f"{case.method} {case.path}"] += 1
    STATUSES[response.status_code] += 1


def test_conformance_run_covered_every_operation(served: Server) -> None:
    # Runs after the generated test (pytest keeps the file's order): every operation
    # was sent requests, and the server is still up, healthy, and logged no traceback.
    document = served.get("/openapi.json").json()
    assert served.get("/openapi.json").content == OPENAPI
    operations = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        if path != STREAMED
        for method in item
        if method in ("get", "post", "options")
    }
    print(f"{len(operations)} operations, {sum(SENT.values())} requests, statuses {STATUSES}")
    assert operations <= set(SENT), operations - set(SENT)
    assert sum(SENT.values()) >= 20 * len(operations)
    assert not any(status >= 500 for status in STATUSES), STATUSES
    assert served.get("/healthz").status_code == 200
    assert "Traceback" not in served.log.read_text()
