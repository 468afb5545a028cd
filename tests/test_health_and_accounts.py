"""The app starts, authenticates keys by hash, and lets an admin manage accounts."""

from sqlmodel import select

from backend.accounts.keys import hash_key
from backend.models import ApiKey


async def test_healthz_needs_no_key(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_missing_and_wrong_key_are_403_in_contract_format(client):
    for headers in ({}, {"x-api-key": "dsk_not-a-real-key"}):
        response = await client.get("/v1/account", headers=headers)
        assert response.status_code == 403
        body = response.json()
        assert body["success"] is False and body["error"] == "invalid_api_key"
        assert body["message"]


async def test_account_shows_opening_balance(client, harness):
    tenant = await harness.tenant(credits=250)
    body = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert body["account_id"] == tenant.account_id
    assert body["balance"] == 250 and body["available"] == 250
    ledger = (await client.get("/v1/account/ledger", headers=tenant.headers)).json()
    assert ledger["total"] == 1 and ledger["items"][0]["amount"] == 250


async def test_only_the_hash_of_a_key_is_stored(harness):
    tenant = await harness.tenant()
    async with harness.app.state.docsift.sessionmaker() as session:
        keys = (await session.exec(select(ApiKey))).all()
    assert tenant.api_key.startswith("dsk_")
    assert [k.key_hash for k in keys] == [hash_key(tenant.api_key)]
    assert all(tenant.api_key not in (k.key_hash, k.display_prefix) for k in keys)


async def test_created_key_works_and_revoked_key_does_not(client, tenant):
    created = await client.post("/v1/account/keys", json={"name": "ci"}, headers=tenant.headers)
    assert created.status_code == 201
    new_key = created.json()["api_key"]
    assert (await client.get("/v1/account", headers={"x-api-key": new_key})).status_code == 200
    key_id = created.json()["key_id"]
    revoked = await client.delete(f"/v1/account/keys/{key_id}", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await client.get("/v1/account", headers={"x-api-key": new_key})).status_code == 403
    listed = (await client.get("/v1/account/keys", headers=tenant.headers)).json()["items"]
    assert all("api_key" not in k for k in listed) and len(listed) == 2


async def test_admin_routes_need_an_admin_key(client, harness, tenant):
    denied = await client.post("/v1/admin/accounts", json={"name": "x"}, headers=tenant.headers)
    assert denied.status_code == 403
    admin = await harness.tenant(admin=True, name="operator")
    made = await client.post(
        "/v1/admin/accounts", json={"name": "newco", "credits": 40}, headers=admin.headers
    )
    assert made.status_code == 201
    new = made.json()
    granted = await client.post(
        f"/v1/admin/accounts/{new['account_id']}/credits", json={"amount": 2}, headers=admin.headers
    )
    assert granted.status_code == 201 and granted.json()["balance"] == 42
    me = (await client.get("/v1/account", headers={"x-api-key": new["api_key"]})).json()
    assert me["balance"] == 42


async def test_unknown_route_and_bad_json_use_the_contract_body(client, tenant):
    missing = await client.get("/v1/nothing-here", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = await client.post(
        "/v1/account/keys",
        content=b"{not json",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
