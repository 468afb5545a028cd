"""Schemathesis against the app's own OpenAPI schema: no 5xx, responses as documented."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

schema = schemathesis.pytest.from_fixture("api_schema")
KEYS: list[str] = []


@schemathesis.auth()
class ApiKeyAuth:
    """Every generated request is authenticated, so negative cases test data, not the key."""

    def get(self, case, context):
        return KEYS[0]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "x-api-key": data}


@schemathesis.hook
def filter_body(ctx, body) -> bool:  # noqa: ANN001
    """Multipart has no types: a file part generated as null or a number is sent as its text
    ("null", "-19926654"), which is a valid 4-byte upload, not invalid data the API must refuse.
    Such cases only make negative_data_rejection fail; other fields' mutations are kept."""
    return not (
        isinstance(body, dict) and "file" in body and not isinstance(body["file"], str | bytes)
    )


@pytest.fixture(scope="module")
def api_schema(live_server):
    url, keys = live_server
    KEYS[:] = keys
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_conforms(case, live_server):
    url, _ = live_server
    # Random ids are rightly 404: positive data need not succeed.
    case.call_and_validate(
        base_url=url, excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )
