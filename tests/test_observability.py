"""Request ids on every response, JSON log lines, Prometheus metrics, per-key rate limits."""

import json
import logging

import pytest

from backend.observability import JsonFormatter, request_id_var
from tests.conftest import make_settings, start_harness


async def test_every_response_has_a_request_id_and_keeps_a_sane_incoming_one(client, tenant):
    ok = await client.get("/v1/account", headers=tenant.headers)
    failed = await client.get("/v1/account")
    assert len(ok.headers["x-request-id"]) >= 16 and failed.headers["x-request-id"]
    assert ok.headers["x-request-id"] != failed.headers["x-request-id"]
    mine = await client.get("/healthz", headers={"x-request-id": "trace-123"})
    assert mine.headers["x-request-id"] == "trace-123"
    hostile = await client.get("/healthz", headers={"x-request-id": "a b<script>"})
    assert hostile.headers["x-request-id"] != "a b<script>"


async def test_metrics_count_requests_by_route(client, tenant):
    await client.get("/v1/account", headers=tenant.headers)
    text = (await client.get("/metrics")).text
    assert 'docsift_http_requests_total{method="GET",route="/v1/account",status="200"}' in text
    assert "docsift_http_request_seconds_bucket" in text


def test_json_log_lines_carry_the_request_id():
    token = request_id_var.set("req-42")
    try:
        record = logging.LogRecord(
            "docsift.test", logging.INFO, __file__, 1, "hello %s", ("x",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req-42" and line["message"] == "hello x"


async def test_api_keys_never_reach_the_logs(client, tenant, caplog):
    caplog.set_level(logging.DEBUG)
    await client.get("/v1/account", headers=tenant.headers)
    await client.get("/v1/account", headers={"x-api-key": "dsk_wrong-key-value"})
    assert tenant.api_key not in caplog.text and "dsk_wrong-key-value" not in caplog.text


@pytest.fixture
async def limited(database_url, tmp_path, fake_backend):
    settings = make_settings(database_url, tmp_path)
    settings.rate_limit_per_minute = 3
    async for harness in start_harness(settings, [fake_backend]):
        yield harness


async def test_rate_limit_is_per_key_with_retry_after(limited):
    first, second = await limited.tenant(), await limited.tenant(name="other")
    statuses = [
        (await limited.client.get("/v1/account", headers=first.headers)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    blocked = await limited.client.get("/v1/account", headers=first.headers)
    assert blocked.json()["error"] == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert (await limited.client.get("/v1/account", headers=second.headers)).status_code == 200
