"""Webhooks: Stripe-style signatures, the batch.completed event (once), per-item events, retries
with backoff, the delivery log, secret rotation, redelivery."""

import asyncio
import json
import time

import pytest

from backend.webhooks.signing import sign, verify
from tests.batches.receiver import Receiver
from tests.conftest import make_settings
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


@pytest.fixture
def settings(database_url, tmp_path):
    return make_settings(
        database_url,
        tmp_path,
        webhook_backoff_seconds=0.05,
        webhook_max_backoff_seconds=0.2,
        webhook_max_attempts=3,
        webhook_timeout_seconds=5,
    )


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


async def _batch(client, harness, tenant, n: int = 2, **options) -> str:
    ids = [await make_document(harness, tenant, [f"invoice {i}"]) for i in range(n)]
    response = await client.post(
        "/v1/batches",
        json={
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "document_ids": ids,
            **options,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    return response.json()["batch_id"]


async def _deliveries(client, tenant, until, seconds: float = 20.0) -> list[dict]:
    for _ in range(int(seconds / 0.05)):
        items = (await client.get("/v1/webhooks/deliveries", headers=tenant.headers)).json()[
            "items"
        ]
        if until(items):
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries never reached the expected state: {items}")


def test_signatures_verify_only_with_the_secret_the_body_and_a_recent_time():
    body = b'{"id":"e1","type":"batch.completed"}'
    header = sign("whsec_a", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("whsec_a", body, header, now=1_700_000_010)
    assert not verify("whsec_b", body, header, now=1_700_000_010)  # another secret
    assert not verify("whsec_a", body + b" ", header, now=1_700_000_010)  # another body
    assert not verify("whsec_a", body, header, now=1_700_000_000 + 301)  # a replay, too late
    assert not verify("whsec_a", body, "v1=abc", now=1_700_000_000)
    assert not verify("whsec_a", body, None)


async def test_webhook_config_and_secret_rotation(client, tenant, receiver):
    empty = (await client.get("/v1/webhooks", headers=tenant.headers)).json()
    assert empty["url"] is None and empty["secret"] is None
    assert empty["signature_header"] == "DocSift-Signature"
    bad = await client.put("/v1/webhooks", json={"url": "not a url"}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    set_ = (
        await client.put("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
    ).json()
    assert set_["url"] == receiver.url and set_["secret"].startswith("whsec_")
    again = (
        await client.put("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
    ).json()
    assert again["secret"] == set_["secret"]  # setting the URL again keeps the secret
    rotated = (await client.post("/v1/webhooks/secret", headers=tenant.headers)).json()
    assert rotated["secret"] != set_["secret"] and rotated["url"] == receiver.url
    cleared = (await client.put("/v1/webhooks", json={"url": None}, headers=tenant.headers)).json()
    assert cleared["url"] is None


async def test_batch_completion_is_sent_once_signed_and_logged(client, harness, tenant, receiver):
    config = (
        await client.put("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
    ).json()
    receiver.secret = config["secret"]
    batch_id = await _batch(client, harness, tenant, n=3)
    deliveries = await _deliveries(
        client, tenant, lambda items: items and items[0]["status"] == "succeeded"
    )
    await asyncio.sleep(0.3)  # time for a duplicate to show up, if there were one
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.signature_valid is True
    event = json.loads(got.body)
    assert event["type"] == "batch.completed" and got.headers["docsift-event-type"] == event["type"]
    assert event["data"]["batch_id"] == batch_id and event["data"]["status"] == "completed"
    assert (event["data"]["succeeded"], event["data"]["failed"]) == (3, 0)
    assert event["data"]["credits_used"] == 3
    assert abs(event["created"] - time.time()) < 60
    (delivery,) = deliveries
    assert delivery["delivery_id"] == event["id"] == got.event_id
    assert delivery["batch_id"] == batch_id and delivery["attempts"] == 1
    assert delivery["response_status"] == 200 and delivery["delivered_at"] is not None
    assert delivery["payload"] == event
    assert [a["status_code"] for a in delivery["log"]] == [200]
    one = await client.get(f"/v1/webhooks/deliveries/{event['id']}", headers=tenant.headers)
    assert one.json()["delivery_id"] == event["id"]
    by_batch = await client.get(
        f"/v1/webhooks/deliveries?batch_id={batch_id}&status=succeeded", headers=tenant.headers
    )
    assert by_batch.json()["total"] == 1
    # Another account sees none of it.
    intruder = await harness.tenant(name="intruder")
    assert (await client.get("/v1/webhooks/deliveries", headers=intruder.headers)).json()[
        "total"
    ] == 0
    assert (
        await client.get(f"/v1/webhooks/deliveries/{event['id']}", headers=intruder.headers)
    ).status_code == 404


async def test_per_item_events_and_a_batch_url(client, harness, tenant, receiver):
    batch_id = await _batch(
        client, harness, tenant, n=3, webhook_url=receiver.url, webhook_item_events=True
    )
    secret = (await client.get("/v1/webhooks", headers=tenant.headers)).json()["secret"]
    assert secret  # created for the batch's URL
    await _deliveries(
        client,
        tenant,
        lambda items: len(items) == 4 and all(d["status"] == "succeeded" for d in items),
    )
    events = [json.loads(r.body) for r in receiver.received]
    assert all(verify(secret, r.body, r.headers["docsift-signature"]) for r in receiver.received)
    types = sorted(e["type"] for e in events)
    assert types == ["batch.completed"] + ["batch.item.completed"] * 3
    items = [e["data"]["item"] for e in events if e["type"] == "batch.item.completed"]
    assert all(e["data"]["batch_id"] == batch_id for e in events)
    assert all(i["result"]["classification"] == "invoice" for i in items)
    assert len({i["item_id"] for i in items}) == 3


async def test_failed_attempts_are_retried_with_backoff_and_logged(
    client, harness, tenant, receiver
):
    receiver.status_for = lambda n: 500 if n < 2 else 200
    config = (
        await client.put("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
    ).json()
    receiver.secret = config["secret"]
    await _batch(client, harness, tenant, n=1)
    (delivery,) = await _deliveries(
        client, tenant, lambda items: items and items[0]["status"] == "succeeded"
    )
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["log"]] == [500, 500, 200]
    assert delivery["log"][0]["error"] == "HTTP 500"
    # Every attempt was signed afresh, for the same event.
    assert [r.signature_valid for r in receiver.received] == [True, True, True]
    assert len({r.event_id for r in receiver.received}) == 1


async def test_a_delivery_that_keeps_failing_fails_and_can_be_sent_again(
    client, harness, tenant, receiver
):
    receiver.status_for = lambda n: 503 if n < 3 else 200
    await client.put("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
    await _batch(client, harness, tenant, n=1)
    (delivery,) = await _deliveries(
        client, tenant, lambda items: items and items[0]["status"] == "failed"
    )
    assert delivery["attempts"] == 3 and delivery["last_error"] == "HTTP 503"
    assert len(receiver.received) == 3
    not_failed = await client.post("/v1/webhooks/deliveries/nope/retry", headers=tenant.headers)
    assert not_failed.status_code == 404
    again = await client.post(
        f"/v1/webhooks/deliveries/{delivery['delivery_id']}/retry", headers=tenant.headers
    )
    assert again.status_code == 202 and again.json()["status"] == "pending"
    (delivery,) = await _deliveries(
        client, tenant, lambda items: items and items[0]["status"] == "succeeded"
    )
    assert delivery["attempts"] == 1 and len(receiver.received) == 4
    twice = await client.post(
        f"/v1/webhooks/deliveries/{delivery['delivery_id']}/retry", headers=tenant.headers
    )
    assert twice.status_code == 400


async def test_an_unreachable_url_is_logged_as_an_error(client, harness, tenant):
    from tests.served import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    await _batch(client, harness, tenant, n=1, webhook_url=url)
    (delivery,) = await _deliveries(
        client, tenant, lambda items: items and items[0]["status"] == "failed"
    )
    assert delivery["response_status"] is None and "Connect" in delivery["last_error"]


async def test_private_addresses_can_be_refused(database_url, tmp_path, fake_backend):
    from tests.conftest import start_harness

    settings = make_settings(database_url, tmp_path, webhook_block_private_networks=True)
    async for harness in start_harness(settings, [fake_backend]):
        tenant = await harness.tenant()
        for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x"):
            response = await harness.client.put(
                "/v1/webhooks", json={"url": url}, headers=tenant.headers
            )
            assert response.status_code == 400, url
            assert "private" in response.json()["message"]


async def test_two_runs_of_one_delivery_post_it_once(harness, tenant, receiver):
    """A delivery job retried while its first run still lives (a worker slow to send heartbeats)
    must not send the event twice."""
    from backend.models import WebhookDelivery
    from backend.webhooks.delivery import deliver

    state = harness.app.state.docsift
    async with state.sessionmaker() as session:
        delivery = WebhookDelivery(
            account_id=tenant.account_id,
            event_key="test:twice",
            event_type="test.event",
            url=receiver.url,
            body='{"id":"x","type":"test.event"}',
        )
        session.add(delivery)
        await session.commit()
    await asyncio.gather(deliver(state, delivery.id), deliver(state, delivery.id))
    await deliver(state, delivery.id)  # and a late retry finds it delivered
    assert len(receiver.received) == 1
    async with state.sessionmaker() as session:
        stored = await session.get(WebhookDelivery, delivery.id)
        assert (stored.status, stored.attempts, stored.claimed_until) == ("succeeded", 1, None)
