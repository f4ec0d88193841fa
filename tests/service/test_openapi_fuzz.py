"""Property-based fuzzing of the whole OpenAPI document with schemathesis, against a real server
with the admin key: no input may give a server error (5xx) or a response that its own schema
does not describe. The example count per operation is small and bounded so `make test` stays
fast; raise BEAR_FUZZ_EXAMPLES for a deeper run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.service.serving import ADMIN, API_KEY, Bundle, Server, fill_store, running_server


@schemathesis.serializer("application/gzip")
def _gzip_bytes(ctx: Any, value: Any) -> bytes:
    """Bundle uploads are raw .tar.gz bodies: send whatever bytes the schema made."""
    return value if isinstance(value, bytes) else str(value).encode()


EXAMPLES = int(os.environ.get("BEAR_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def fuzzed_server(
    bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of its own: the fuzzer deletes, promotes and uploads with the admin key."""
    store = tmp_path_factory.mktemp("fuzz") / "store"
    fill_store(store, bundles)
    with running_server(store, BEAR_API_KEYS=API_KEY, BEAR_MAX_CONCURRENT_JOBS="1") as running:
        yield running


def test_no_server_error_and_responses_match_their_schema(fuzzed_server: Server) -> None:
    """Every operation, EXAMPLES generated cases each (derandomized: the same cases every run)."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    checks = [not_a_server_error, response_schema_conformance]
    failures: dict[str, str] = {}
    n_operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        n_operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=checks, timeout=30)

        try:
            call()
        except Exception as err:  # a failed check: collect them all, then report
            failures[operation.label] = str(err)[:2000]
    assert n_operations >= 20, n_operations
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def test_the_fuzzer_reaches_the_api(fuzzed_server: Server) -> None:
    """The fuzzed operations exist: the schema lists the serving, model, dataset and job paths."""
    with fuzzed_server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict", "/value", "/models", "/datasets", "/train", "/jobs"):
        assert path in paths, path
