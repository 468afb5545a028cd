"""Request ids on every response, JSON log lines, Prometheus metrics, per-key rate limits."""

import asyncio
import json
import logging
import time

import pytest

from backend.backends.fake import FunctionBackend
from backend.observability import JsonFormatter, request_id_var
from tests.conftest import make_settings, start_harness
from tests.fixtures.db import make_document


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


class SlowBackend(FunctionBackend):
    """A model that takes 0.3 s to answer."""

    async def classify(self, request):  # noqa: ANN001, ANN201
        await asyncio.sleep(0.3)
        return await super().classify(request)


async def test_overhead_header_and_histogram_leave_the_model_time_out(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path)
    async for harness in start_harness(settings, [SlowBackend()]):
        tenant = await harness.tenant()
        doc = await make_document(harness, tenant, ["INVOICE 7. Amount due 120.00 EUR."])
        body = {
            "document_id": doc,
            "classification_schema": [
                {"label": "invoice", "description": "A request for payment"},
                {"label": "other", "description": "Anything else"},
            ],
        }
        started = time.perf_counter()
        response = await harness.client.post("/v1/classify", json=body, headers=tenant.headers)
        total_ms = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text
        own = float(response.headers["x-docsift-overhead-ms"])
        timing = dict(
            part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
        )
        assert float(timing["docsift"]) == own
        assert float(timing["model"]) >= 300  # the model's wait is counted as the model's...
        assert own + float(timing["model"]) <= total_ms  # ...and not as DocSift's own time
        plain = await harness.client.get("/v1/account", headers=tenant.headers)
        assert "model" not in plain.headers["server-timing"]
        metrics = (await harness.client.get("/metrics")).text
        count = 'docsift_overhead_seconds_count{method="POST",route="/v1/classify"}'
        assert count in metrics


def _charged(metrics: str, model: str) -> float:
    series = f'docsift_credits_charged_total{{model="{model}"}} '
    return next(
        (float(line[len(series) :]) for line in metrics.splitlines() if line.startswith(series)),
        0.0,
    )


@pytest.mark.parametrize("idempotency_key", [None, "usage-1"], ids=["fast path", "ORM path"])
async def test_charged_credits_are_counted_once_on_either_classify_path(
    database_url, tmp_path, idempotency_key
):
    """`POST /v1/classify` without an Idempotency-Key takes the fast path, with one the ORM
    path: both count the credits they charged in `docsift_credits_charged_total`."""
    async for harness in start_harness(make_settings(database_url, tmp_path), [FunctionBackend()]):
        tenant = await harness.tenant(credits=10)
        doc = await make_document(harness, tenant, ["INVOICE 7.", "Amount due 120.00 EUR."])
        body = {
            "document_id": doc,
            "query_model": "fake",
            "classification_schema": [
                {"label": "invoice", "description": "A request for payment"},
                {"label": "other", "description": "Anything else"},
            ],
        }
        headers = dict(tenant.headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        before = _charged((await harness.client.get("/metrics")).text, "fake")
        response = await harness.client.post("/v1/classify", json=body, headers=headers)
        assert response.status_code == 200, response.text
        after = _charged((await harness.client.get("/metrics")).text, "fake")
        assert response.json()["credits_used"] == 2
        assert after - before == 2
