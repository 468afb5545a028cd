"""POST /v1/classify serves its common case without FastAPI's dependency resolution
(backend/api/direct.py): a plain request is answered by the direct handler, and every request,
plain or not, gets the same answer as FastAPI's own handler gives it."""

from typing import Any

import fastapi.routing
import pytest

from backend.api import classify as classify_api
from tests.fixtures.db import make_document
from tests.security.test_scopes import _key

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "letter", "description": "Correspondence"},
]
VOLATILE = {"request_id", "created_at", "duration"}


def _stable(value: Any) -> Any:
    """The response without what differs from one run to the next."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


async def _declines(*_args: Any) -> None:
    return None


async def _cases(harness) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(name, headers, request keyword arguments) covering each way the route answers."""
    rich = await harness.tenant(credits=1000, name="rich")
    poor = await harness.tenant(credits=0, name="poor")
    doc = await make_document(harness, rich, ["INVOICE 7, total 12 EUR", "page two"])
    poor_doc = await make_document(harness, poor, ["INVOICE 8"])
    no_classify = await _key(harness, rich.account_id, ["documents:read"])
    body = {"document_id": doc, "classification_schema": SCHEMA}
    key = rich.headers
    return [
        ("plain", key, {"json": body}),
        ("page range", key, {"json": body | {"page_range": "2"}}),
        ("page range out of range", key, {"json": body | {"page_range": "5"}}),
        ("instructions and modes", key, {"json": body | {"instructions": "Be brief."}}),
        ("unknown document", key, {"json": body | {"document_id": "nope"}}),
        ("another tenant's document", key, {"json": body | {"document_id": poor_doc}}),
        ("no credits", poor.headers, {"json": body | {"document_id": poor_doc}}),
        ("one label", key, {"json": body | {"classification_schema": SCHEMA[:1]}}),
        ("unknown model", key, {"json": body | {"query_model": "no-such-model"}}),
        ("missing field", key, {"json": {"document_id": doc}}),
        ("wrong type", key, {"json": body | {"classification_schema": "invoice"}}),
        ("not JSON", key, {"content": b"{nope", "headers": {"content-type": "application/json"}}),
        ("empty body", key, {"content": b"", "headers": {"content-type": "application/json"}}),
        ("JSON sent as text", key, {"json": body, "headers": {"content-type": "text/plain"}}),
        ("no key", {}, {"json": body}),
        ("unknown key", {"x-api-key": "dsk_nope"}, {"json": body}),
        ("no key and a bad body", {}, {"content": b"{nope"}),
        ("key without the classify scope", {"x-api-key": no_classify}, {"json": body}),
    ]


async def test_every_kind_of_request_gets_what_fastapis_handler_gives(harness, monkeypatch):
    cases = await _cases(harness)
    answers = []
    for direct in (True, False):
        if not direct:  # the direct handler declines everything: FastAPI serves it all
            monkeypatch.setattr(classify_api, "json_body", _declines)
        answers.append([])
        for _name, headers, kwargs in cases:
            extra = kwargs.get("headers", {})
            r = await harness.client.post(
                "/v1/classify",
                headers=headers | extra,
                **{k: v for k, v in kwargs.items() if k != "headers"},
            )
            answers[-1].append((r.status_code, _stable(r.json())))
    for (name, _, _), served, usual in zip(cases, *answers, strict=True):
        assert served == usual, name
    statuses = {name: status for (name, _, _), (status, _) in zip(cases, answers[0], strict=True)}
    # The cases do cover the route's answers (a typo in a case would make both sides agree on it).
    assert statuses["plain"] == statuses["page range"] == 200
    assert statuses["no credits"] == 402
    assert statuses["unknown document"] == statuses["another tenant's document"] == 404
    assert statuses["no key"] == statuses["key without the classify scope"] == 403
    assert statuses["not JSON"] == statuses["missing field"] == statuses["JSON sent as text"] == 400


@pytest.fixture
def dependency_solves(monkeypatch) -> list[str]:
    """The paths FastAPI resolved dependencies for."""
    solves: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solves.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return solves


async def test_a_plain_request_is_served_without_resolving_dependencies(harness, dependency_solves):
    tenant = await harness.tenant()
    doc = await make_document(harness, tenant, ["INVOICE 7"])
    body = {"document_id": doc, "classification_schema": SCHEMA}
    r = await harness.client.post("/v1/classify", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert dependency_solves == []
    r = await harness.client.post("/v1/classify", json={"document_id": doc}, headers=tenant.headers)
    assert r.status_code == 400  # not the common case: FastAPI's handler answered
    assert (await harness.client.get("/v1/account", headers=tenant.headers)).status_code == 200
    assert dependency_solves == ["/v1/classify", "/v1/account"]
