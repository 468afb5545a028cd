"""API-key lookups cached per process: revocation here at once, elsewhere within the TTL; and
keys' last_used_at written in batches."""

import asyncio

import pytest
from sqlalchemy import update

from backend.models import ApiKey, utcnow
from tests.conftest import make_settings, start_harness


@pytest.fixture
async def cached(database_url, tmp_path, fake_backend):
    settings = make_settings(database_url, tmp_path, api_key_cache_seconds=0.5)
    async for harness in start_harness(settings, [fake_backend]):
        yield harness


async def revoke_from_another_process(harness, tenant) -> None:  # noqa: ANN001
    """What another API process (or `docsift keys revoke`) does: the row only, no cache here."""
    async with harness.app.state.docsift.sessionmaker() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.account_id == tenant.account_id).values(revoked_at=utcnow())
        )
        await session.commit()


async def test_a_key_revoked_elsewhere_is_refused_within_the_ttl(cached):
    tenant = await cached.tenant()
    assert (await cached.client.get("/v1/account", headers=tenant.headers)).status_code == 200
    await revoke_from_another_process(cached, tenant)
    # Cached: still accepted for now (the documented bound)...
    assert (await cached.client.get("/v1/account", headers=tenant.headers)).status_code == 200
    await asyncio.sleep(0.6)
    # ...and refused once the entry has expired.
    refused = await cached.client.get("/v1/account", headers=tenant.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "invalid_api_key"


async def test_without_cache_a_revocation_elsewhere_counts_at_once(harness):
    harness.app.state.docsift.key_cache.ttl = 0
    tenant = await harness.tenant()
    assert (await harness.client.get("/v1/account", headers=tenant.headers)).status_code == 200
    await revoke_from_another_process(harness, tenant)
    assert (await harness.client.get("/v1/account", headers=tenant.headers)).status_code == 403


async def test_a_key_revoked_through_the_api_is_refused_at_once(cached):
    tenant = await cached.tenant()
    made = await cached.client.post(
        "/v1/account/keys", json={"name": "second"}, headers=tenant.headers
    )
    second = {"x-api-key": made.json()["api_key"]}
    assert (await cached.client.get("/v1/account", headers=second)).status_code == 200  # cached
    revoked = await cached.client.delete(
        f"/v1/account/keys/{made.json()['key_id']}", headers=tenant.headers
    )
    assert revoked.status_code == 200
    assert (await cached.client.get("/v1/account", headers=second)).status_code == 403
    assert (await cached.client.get("/v1/account", headers=tenant.headers)).status_code == 200


async def test_cached_key_still_sees_the_current_balance(cached):
    tenant = await cached.tenant(credits=10)
    first = await cached.client.get("/v1/account", headers=tenant.headers)
    from tests.fixtures.db import make_document

    doc = await make_document(cached, tenant, ["INVOICE 1"])
    body = {
        "document_id": doc,
        "classification_schema": [
            {"label": "invoice", "description": "A bill"},
            {"label": "other", "description": "Anything else"},
        ],
    }
    assert (await cached.client.post("/v1/classify", json=body, headers=tenant.headers)).is_success
    second = await cached.client.get("/v1/account", headers=tenant.headers)
    assert first.json()["balance"] == 10 and second.json()["balance"] == 9


async def test_last_used_at_is_written_in_batches(harness):
    tenant = await harness.tenant()
    keys = (await harness.client.get("/v1/account/keys", headers=tenant.headers)).json()
    # Listing the keys used the key: noted, not yet written.
    assert keys["items"][0]["last_used_at"] is None
    before = utcnow()
    await harness.client.get("/v1/account", headers=tenant.headers)
    assert await harness.app.state.docsift.key_usage.flush() == 1
    assert await harness.app.state.docsift.key_usage.flush() == 0  # nothing new
    keys = (await harness.client.get("/v1/account/keys", headers=tenant.headers)).json()
    used = keys["items"][0]["last_used_at"]
    assert used is not None and used >= before.isoformat()[:19]


async def test_concurrent_requests_with_one_key_share_one_lookup(harness, monkeypatch):
    from backend.accounts import keycache

    lookups = []
    real = keycache.authenticate

    async def counted(session, plain):  # noqa: ANN001, ANN202
        lookups.append(plain)
        await asyncio.sleep(0.05)  # a slow database: every request arrives during the lookup
        return await real(session, plain)

    monkeypatch.setattr(keycache, "authenticate", counted)
    tenant = await harness.tenant()
    responses = await asyncio.gather(
        *[harness.client.get("/v1/account", headers=tenant.headers) for _ in range(30)]
    )
    assert [r.status_code for r in responses] == [200] * 30
    assert len(lookups) == 1
