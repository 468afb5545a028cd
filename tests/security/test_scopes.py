"""Scoped keys: every route declares a scope and refuses a key without it; keys expire; a key
limited to some classifiers sees and uses only those.

The routes are discovered from the app itself, so a route added later fails
`test_every_route_declares_a_scope` until it declares `RequireScope(...)` or `RequireKey()`.
"""

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from backend.accounts.keys import create_key
from backend.accounts.scopes import DEFAULT_SCOPES, SCOPES
from backend.deps import ScopeCheck
from backend.models import Account
from tests.conftest import REPO_ROOT

# Routes outside /v1 that need no key at all, said out loud.
PUBLIC = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _scope_checks(dependant: Dependant) -> list[ScopeCheck]:
    found = [dependant.call] if isinstance(dependant.call, ScopeCheck) else []
    for sub in dependant.dependencies:
        found += _scope_checks(sub)
    return found


def api_routes(app: Any) -> list[tuple[Any, str, list[ScopeCheck]]]:
    """(route, method, its scope checks) for every API route, as served (prefixes included)."""
    out = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute):
            for method in sorted(route.methods):
                out.append((route, method, _scope_checks(route.dependant)))
    return out


def _fill(path: str) -> str:
    """Path parameters filled with ids that exist nowhere (a scope check comes first anyway)."""
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "n" else str(uuid.uuid4()), path)


async def _key(harness, account_id: str, scopes: list[str], **kw: Any) -> str:
    state = harness.app.state.docsift
    async with state.sessionmaker() as session:
        account = await session.get(Account, account_id)
        _, plain = await create_key(
            session,
            account=account,
            prefix=harness.settings.api_key_prefix,
            scopes=scopes,
            **{"is_admin": "admin" in scopes, **kw},
        )
        await session.commit()
    return plain


async def test_every_route_declares_a_scope(harness):
    routes = api_routes(harness.app)
    assert len(routes) > 40
    undeclared = [
        f"{method} {route.path}"
        for route, method, checks in routes
        if not checks and route.path not in PUBLIC
    ]
    assert not undeclared, f"routes without RequireScope/RequireKey: {undeclared}"
    for route, _method, _checks in routes:
        if route.path in PUBLIC:
            assert not route.path.startswith("/v1")


async def test_a_key_lacking_each_scope_is_refused_by_every_route_needing_it(harness):
    tenant = await harness.tenant(admin=True)
    keys_without = {
        scope: await _key(harness, tenant.account_id, [s for s in SCOPES if s != scope])
        for scope in SCOPES
    }
    keys_with_only = {scope: await _key(harness, tenant.account_id, [scope]) for scope in SCOPES}
    no_scopes = await _key(harness, tenant.account_id, [])
    checked: set[str] = set()
    for route, method, checks in api_routes(harness.app):
        if not checks:
            continue
        url = _fill(route.path)
        for check in checks:
            if check.scope is None:
                # Any key, even one without scopes, gets past the check.
                r = await harness.client.request(method, url, headers={"x-api-key": no_scopes})
                assert r.status_code != 403, (method, route.path, r.text)
                continue
            r = await harness.client.request(
                method, url, headers={"x-api-key": keys_without[check.scope]}
            )
            assert r.status_code == 403, (method, route.path, check.scope, r.text)
            assert r.json() == {
                "success": False,
                "error": "forbidden",
                "message": f"This API key lacks the '{check.scope}' scope.",
            }
            # The key holding just that scope is not refused for a scope (404, 422... instead).
            r = await harness.client.request(
                method, url, headers={"x-api-key": keys_with_only[check.scope]}
            )
            assert r.status_code != 403, (method, route.path, check.scope, r.text)
            checked.add(check.scope)
    # Every scope guards some route ("reviews" once its router is merged).
    assert checked >= set(SCOPES) - {"reviews"}


async def test_admin_scope_needs_an_admin_key(harness):
    tenant = await harness.tenant()
    # A non-admin key asking for "admin" gets a key without it.
    key = await _key(harness, tenant.account_id, ["admin", "account:read"], is_admin=False)
    r = await harness.client.post(
        "/v1/admin/accounts", json={"name": "x"}, headers={"x-api-key": key}
    )
    assert r.status_code == 403


async def test_expired_keys_stop_working(harness):
    tenant = await harness.tenant()
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = await _key(harness, tenant.account_id, list(DEFAULT_SCOPES), expires_at=past)
    r = await harness.client.get("/v1/account", headers={"x-api-key": expired})
    assert r.status_code == 403
    assert r.json()["error"] == "invalid_api_key"
    # The account API makes expiring keys; a past expiry is a validation error.
    r = await harness.client.post(
        "/v1/account/keys",
        json={"name": "soon", "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        headers=tenant.headers,
    )
    assert r.status_code == 201
    assert r.json()["expires_at"] is not None
    r = await harness.client.post(
        "/v1/account/keys", json={"expires_at": past.isoformat()}, headers=tenant.headers
    )
    assert r.status_code == 400


async def test_account_api_makes_scoped_keys_never_stronger_than_the_caller(harness):
    tenant = await harness.tenant()
    r = await harness.client.post(
        "/v1/account/keys",
        json={"name": "reader", "scopes": ["documents:read", "keys:write"]},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    reader = r.json()
    assert reader["scopes"] == ["documents:read", "keys:write"]
    reader_headers = {"x-api-key": reader["api_key"]}
    assert (await harness.client.get("/v1/documents", headers=reader_headers)).status_code == 200
    r = await harness.client.post(
        "/v1/classify",
        json={"document_id": "x", "classification_schema": [{"label": "a"}, {"label": "b"}]},
        headers=reader_headers,
    )
    assert r.status_code == 403
    # It may not mint a key with a scope it lacks.
    r = await harness.client.post(
        "/v1/account/keys", json={"scopes": ["classify"]}, headers=reader_headers
    )
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    r = await harness.client.post(
        "/v1/account/keys", json={"scopes": ["no:such"]}, headers=tenant.headers
    )
    assert r.status_code == 400
    listing = (await harness.client.get("/v1/account/keys", headers=tenant.headers)).json()
    assert {k["name"]: k["scopes"] for k in listing["items"]}["reader"] == [
        "documents:read",
        "keys:write",
    ]


async def test_a_key_limited_to_classifiers_uses_only_those(harness):
    tenant = await harness.tenant()
    ids = []
    for name in ("mine", "other"):
        r = await harness.client.post(
            "/v1/classifiers",
            json={"name": name, "classification_schema": [{"label": "a"}, {"label": "b"}]},
            headers=tenant.headers,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["classifier_id"])
    mine, other = ids
    r = await harness.client.post(
        "/v1/account/keys", json={"classifier_ids": [mine]}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    limited = {"x-api-key": r.json()["api_key"]}
    listing = (await harness.client.get("/v1/classifiers", headers=limited)).json()
    assert [c["classifier_id"] for c in listing["items"]] == [mine]
    assert (await harness.client.get(f"/v1/classifiers/{mine}", headers=limited)).status_code == 200
    r = await harness.client.get(f"/v1/classifiers/{other}", headers=limited)
    assert r.status_code == 403
    r = await harness.client.post(
        f"/v1/classifiers/{other}/run", json={"document_id": "x"}, headers=limited
    )
    assert r.status_code == 403
    schema = [{"label": "a"}, {"label": "b"}]
    for path, body in [
        ("/v1/classify", {"document_id": "x", "classification_schema": schema}),
        ("/v1/split", {"document_id": "x", "classifier_id": other}),
        ("/v1/batches", {"document_ids": ["x"], "classifier_id": other}),
        (
            "/v1/evaluations",
            {"items": [{"document_id": "x", "expected_label": "a"}], "classifier_id": other},
        ),
    ]:
        r = await harness.client.post(path, json=body, headers=limited)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"] == "forbidden", (path, r.text)
    # A key limited to unknown classifiers cannot be made.
    r = await harness.client.post(
        "/v1/account/keys", json={"classifier_ids": [str(uuid.uuid4())]}, headers=tenant.headers
    )
    assert r.status_code == 404


def test_cli_creates_scoped_expiring_keys(settings, tmp_path):
    env = {
        **os.environ,
        "DOCSIFT_DATABASE_URL": settings.database_url,
        "DOCSIFT_STORAGE_DIR": str(tmp_path / "files"),
        "PYTHONPATH": str(REPO_ROOT),
    }

    def cli(*args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "backend.cli", *args, "--json"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    subprocess.run(
        [sys.executable, "-m", "backend.cli", "migrate"], env=env, cwd=REPO_ROOT, check=True
    )
    account = cli("accounts", "create", "--name", "cli")
    key = cli(
        "keys",
        "create",
        account["account_id"],
        "--scope",
        "documents:read",
        "--scope",
        "classify",
        "--expires-in-days",
        "30",
    )
    assert key["scopes"] == ["documents:read", "classify"]
    assert key["expires_at"] is not None
