"""/v1/classify's fast path (Core statements, one round trip per step): credits exact under
concurrency and failure on SQLite and PostgreSQL, the same results and errors as the ORM path."""

import asyncio
import sqlite3

import psycopg
import pytest
from psycopg.errors import IntegrityError
from psycopg_pool import PoolTimeout
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError

from backend.backends.base import ClassifyRequest
from backend.backends.fake import FunctionBackend, first_label_wins
from backend.classification.fastpath import PostgresStore, SqliteStore
from backend.classification.fastpath.common import hold_params
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.spec import inline_spec
from backend.errors import InsufficientCredits, ModelError
from backend.models import (
    Account,
    Classification,
    CreditReservation,
    Document,
    LedgerEntry,
    new_id,
    utcnow,
)
from tests.conftest import _create_postgres_database, make_settings, start_harness
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


class FlakyBackend(FunctionBackend):
    """Answers after a short wait; fails on pages that say FAIL."""

    async def classify(self, request: ClassifyRequest):  # noqa: ANN201
        await asyncio.sleep(0.05)
        if "FAIL" in request.pages[0]:
            raise ModelError("the model failed")
        return await super().classify(request)


@pytest.fixture
async def app(both_databases, tmp_path):
    async for harness in start_harness(
        make_settings(both_databases, tmp_path), [FlakyBackend(first_label_wins)]
    ):
        yield harness


def fake_spec(state):  # noqa: ANN001, ANN201
    """What the store is given for a plain request with SCHEMA on the fake model."""
    return inline_spec(
        state,
        labels=validate_schema([SchemaItem(**s) for s in SCHEMA], state.settings),
        model="fake",
    )


async def money(harness, account_id: str) -> tuple[int, int, int, int, int]:
    """balance, reserved, sum of the ledger, holds left, results stored."""
    async with harness.app.state.docsift.sessionmaker() as session:
        account = await session.get(Account, account_id)
        ledger = (
            await session.execute(
                select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account_id == account_id)
            )
        ).scalar()
        holds = (
            await session.execute(
                select(func.count()).where(CreditReservation.account_id == account_id)
            )
        ).scalar()
        results = (
            await session.execute(
                select(func.count()).where(Classification.account_id == account_id)
            )
        ).scalar()
        return account.balance, account.reserved, ledger, holds, results


async def test_the_fast_path_serves_both_databases(app):
    store = app.app.state.docsift.fast_store
    url = app.settings.database_url
    assert isinstance(store, SqliteStore if url.startswith("sqlite") else PostgresStore)


async def test_concurrent_successes_failures_and_refusals_leave_exact_credits(app):
    tenant = await app.tenant(credits=25)
    good = await make_document(app, tenant, ["INVOICE 1", "page two"])  # 2 credits each
    bad = await make_document(app, tenant, ["FAIL"])

    async def call(doc: str):  # noqa: ANN202
        body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
        return await app.client.post("/v1/classify", json=body, headers=tenant.headers)

    responses = await asyncio.gather(*[call(good if i % 3 else bad) for i in range(30)])
    codes = [r.status_code for r in responses]
    paid = codes.count(200)
    # Which requests win the last credits depends on timing (a failing one holds 1 credit until
    # it fails); what is charged and stored may not.
    assert paid >= 8 and codes.count(502) >= 1 and paid + codes.count(502) + codes.count(402) == 30
    balance, reserved, ledger, holds, results = await money(app, tenant.account_id)
    assert (balance, reserved, ledger, holds, results) == (25 - 2 * paid, 0, 25 - 2 * paid, 0, paid)
    body = next(r.json() for r in responses if r.status_code == 200)
    assert body["credits_used"] == 2 and body["pages_used"] == [1, 2]
    assert body["classification"] == "invoice" and sum(body["confidence_scores"].values()) == 1
    stored = await app.client.get(
        f"/v1/classifications/{body['request_id']}", headers=tenant.headers
    )
    assert (
        stored.status_code == 200
        and stored.json()["confidence_scores"] == body["confidence_scores"]
    )


async def test_errors_match_the_orm_path(app):
    tenant, other = await app.tenant(), await app.tenant(name="other")
    theirs = await make_document(app, other, ["x"])
    converting = await make_document(app, tenant, [], status="processing")
    body = {"classification_schema": SCHEMA, "query_model": "fake"}
    for doc, status, code in [
        (theirs, 404, "not_found"),
        ("nope", 404, "not_found"),
        (converting, 400, "document_not_processed"),
    ]:
        response = await app.client.post(
            "/v1/classify", json=body | {"document_id": doc}, headers=tenant.headers
        )
        assert (response.status_code, response.json()["error"]) == (status, code)
    assert (await money(app, tenant.account_id))[:4] == (1000, 0, 1000, 0)


async def test_documents_it_refuses_hold_nothing(app):
    """On PostgreSQL the read and the hold are one statement: a document it must refuse (deleted,
    with no pages, a page range outside it) is refused as the ORM path refuses it, and nothing
    is held or charged; a page range still reads and holds only its pages."""
    tenant = await app.tenant(credits=10)
    deleted = await make_document(app, tenant, ["gone"])
    empty = await make_document(app, tenant, [])
    three = await make_document(app, tenant, ["INVOICE", "two", "three"])
    async with app.app.state.docsift.sessionmaker() as session:
        document = await session.get(Document, deleted)
        document.deleted_at = utcnow()
        await session.commit()
    body = {"classification_schema": SCHEMA, "query_model": "fake"}
    for extra, status, code in [
        ({"document_id": deleted}, 404, "not_found"),
        ({"document_id": empty}, 400, "invalid_request"),
        ({"document_id": three, "page_range": "7-9"}, 400, "invalid_request"),
    ]:
        response = await app.client.post("/v1/classify", json=body | extra, headers=tenant.headers)
        assert (response.status_code, response.json()["error"]) == (status, code), extra
    assert await money(app, tenant.account_id) == (10, 0, 10, 0, 0)
    response = await app.client.post(
        "/v1/classify",
        json=body | {"document_id": three, "page_range": "2-"},
        headers=tenant.headers,
    )
    assert response.json()["pages_used"] == [2, 3]
    assert await money(app, tenant.account_id) == (8, 0, 8, 0, 1)


async def test_a_failed_hold_statement_leaves_its_connection_usable(app):
    """A hold whose statement fails (here: a request id already held) raises, holds nothing more,
    and gives its connection back clean: the next request is served."""
    state = app.app.state.docsift
    tenant = await app.tenant(credits=10)
    doc = await make_document(app, tenant, ["INVOICE"])
    spec = fake_spec(state)
    where = {"account_id": tenant.account_id, "document_id": doc, "request_id": new_id()}
    await state.fast_store.load_and_hold(spec, **where)
    with pytest.raises(IntegrityError if app.settings.is_postgres else sqlite3.IntegrityError):
        await state.fast_store.load_and_hold(spec, **where)
    assert await money(app, tenant.account_id) == (10, 1, 10, 1, 0)
    await state.fast_store.release(where["request_id"])
    body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    for _ in range(3):  # more requests than the one connection the pool may have
        response = await app.client.post("/v1/classify", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
    assert await money(app, tenant.account_id) == (7, 0, 7, 0, 3)


@pytest.fixture
async def pg_app(postgres_server, tmp_path):
    url, drop = _create_postgres_database(postgres_server)
    try:
        async for harness in start_harness(
            make_settings(url, tmp_path), [FlakyBackend(first_label_wins)]
        ):
            yield harness
    finally:
        drop()


@pytest.mark.parametrize("statement", ["read_and_hold", "hold"])
async def test_a_hold_skips_the_wal_flush_for_its_own_commit_only(pg_app, statement):
    """Each statement that takes a hold turns `synchronous_commit` off for its own transaction
    (a hold lost in a server crash is a hold released); the connection's next transaction,
    the charge's, waits for the flush as the server is set."""
    store = pg_app.app.state.docsift.fast_store
    tenant = await pg_app.tenant(credits=10)
    doc = await make_document(pg_app, tenant, ["INVOICE"])
    sql = getattr(store, statement)
    params = hold_params(tenant.account_id, new_id(), 1) | {
        "document_id": doc,
        "credits_per_page": 1,
    }
    async with store.pool.connection() as conn:
        setting = "SELECT current_setting('synchronous_commit')"
        before = (await (await conn.execute(setting)).fetchone())[0]
        async with conn.transaction(force_rollback=True):
            held = await (await conn.execute(sql.text, sql.bound(params))).fetchall()
            during = (await (await conn.execute(setting)).fetchone())[0]
        after = (await (await conn.execute(setting)).fetchone())[0]
    assert held  # the statement did take the hold
    assert (before, during, after) == ("on", "off", "on")
    assert await money(pg_app, tenant.account_id) == (10, 0, 10, 0, 0)  # rolled back


async def test_the_periodic_recover_task_releases_holds_a_request_never_gave_back(app):
    """Start-up is not the only sweep: a hold older than any request may live (whatever lost
    it) is released by the recover task the queue runs every few seconds."""
    from types import SimpleNamespace

    from backend.billing import ledger
    from backend.queue import _recover

    state = app.app.state.docsift
    tenant = await app.tenant(credits=10)
    doc = await make_document(app, tenant, ["INVOICE", "two"])
    spec = fake_spec(state)
    old, recent = new_id(), new_id()
    for request_id in (old, recent):
        await state.fast_store.load_and_hold(
            spec, account_id=tenant.account_id, document_id=doc, request_id=request_id
        )
    async with state.sessionmaker() as session:
        hold = await session.get(CreditReservation, old)
        hold.created_at = utcnow() - ledger.stale_after(state.settings.model_total_timeout_seconds)
        await session.commit()
    assert await money(app, tenant.account_id) == (10, 4, 10, 2, 0)
    await _recover(SimpleNamespace(additional_context={"state": state}), timestamp=0)
    assert await money(app, tenant.account_id) == (10, 2, 10, 1, 0)  # the recent one is kept


async def test_a_swept_hold_is_charged_only_while_the_balance_covers_it(app):
    state = app.app.state.docsift
    tenant = await app.tenant(credits=3)
    doc = await make_document(app, tenant, ["a", "b"])
    spec = fake_spec(state)

    async def held_then_swept() -> Classification:
        request_id = new_id()
        held = await state.fast_store.load_and_hold(
            spec, account_id=tenant.account_id, document_id=doc, request_id=request_id
        )
        async with state.sessionmaker() as session:  # what release_stale does, minus the hold
            await session.execute(
                delete(CreditReservation).where(CreditReservation.request_id == request_id)
            )
            account = await session.get(Account, tenant.account_id)
            account.reserved -= held.credits
            await session.commit()
        return Classification(
            id=request_id,
            account_id=tenant.account_id,
            document_id=doc,
            model="fake",
            classification_schema=SCHEMA,
            pages_used=held.numbers,
            credits_used=held.credits,
            num_pages=2,
        )

    await state.fast_store.store_and_charge(await held_then_swept())  # 3 cover 2
    assert await money(app, tenant.account_id) == (1, 0, 1, 0, 1)
    with pytest.raises(InsufficientCredits):
        await state.fast_store.load_and_hold(
            spec, account_id=tenant.account_id, document_id=doc, request_id=new_id()
        )
    assert await money(app, tenant.account_id) == (1, 0, 1, 0, 1)


async def test_a_cancelled_request_gives_its_hold_back(app):
    tenant = await app.tenant(credits=10)
    doc = await make_document(app, tenant, ["slow"])
    body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    request = asyncio.create_task(
        app.client.post("/v1/classify", json=body, headers=tenant.headers)
    )
    await asyncio.sleep(0.03)  # the hold is taken, the model is working
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    # Given back by a task of its own, after the hold is taken (if the cancel landed while it was
    # being taken): moments, or longer on a loaded machine, not the recover task's ten minutes.
    for _ in range(250):  # 5 s at most
        if (await money(app, tenant.account_id))[1] == 0:
            break
        await asyncio.sleep(0.02)
    assert await money(app, tenant.account_id) == (10, 0, 10, 0, 0)


async def test_sqlite_step_waits_in_its_thread_while_another_process_writes(tmp_path):
    """Another process holding SQLite's write lock: the step cannot run on the event loop, so
    it runs in the SQLite thread, which waits for the lock; the loop stays free meanwhile."""
    import sqlite3

    settings = make_settings(f"sqlite:///{tmp_path / 'busy.db'}", tmp_path)
    async for harness in start_harness(settings, [FlakyBackend(first_label_wins)]):
        tenant = await harness.tenant(credits=5)
        doc = await make_document(harness, tenant, ["INVOICE"])
        other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process would hold it
        body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
        request = asyncio.create_task(
            harness.client.post("/v1/classify", json=body, headers=tenant.headers)
        )
        await asyncio.sleep(0.3)
        assert not request.done()  # waiting for the lock, without blocking the event loop
        other.execute("COMMIT")
        other.close()
        response = await request
        assert response.status_code == 200, response.text
        assert await money(harness, tenant.account_id) == (4, 0, 4, 0, 1)


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("connect", {}, Exception("sorry, too many clients already")),
        psycopg.OperationalError("sorry, too many clients already"),  # the PostgreSQL store's
        PoolTimeout("couldn't get a connection after 30.00 sec"),  # its pool, exhausted
    ],
    ids=["sqlalchemy", "psycopg", "psycopg_pool"],
)
async def test_a_database_at_its_connection_limit_is_a_503_not_a_500(app, monkeypatch, error):
    """PostgreSQL's "too many clients" (or an exhausted pool) is a retryable 503 in the
    contract's format, and nothing is charged."""
    import backend.api.classify as classify_api

    tenant = await app.tenant(credits=10)
    doc = await make_document(app, tenant, ["INVOICE 1"])
    before = await money(app, tenant.account_id)

    async def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(classify_api, "classify_fast", refused)
    response = await app.client.post(
        "/v1/classify",
        json={"document_id": doc, "classification_schema": SCHEMA},
        headers=tenant.headers,
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"
    assert await money(app, tenant.account_id) == before


async def test_a_fast_path_row_reads_back_as_the_orm_path_writes_it(app):
    """The same request on both paths (the Idempotency-Key one takes the ORM path): the stored
    rows agree column by column once ids, times and durations are set aside, and each reads
    back through GET /v1/classifications (JSON columns, timestamps with their time zone)."""
    tenant = await app.tenant(credits=50)
    doc = await make_document(app, tenant, ["INVOICE 7", "terms", "appendix"])
    body = {
        "document_id": doc,
        "classification_schema": SCHEMA,
        "query_model": "fake",
        "page_range": "2-3",
    }
    fast = await app.client.post("/v1/classify", json=body, headers=tenant.headers)
    slow = await app.client.post(
        "/v1/classify", json=body, headers=tenant.headers | {"Idempotency-Key": "orm-path"}
    )
    assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
    assert fast.json()["pages_used"] == [2, 3]
    async with app.app.state.docsift.sessionmaker() as session:
        rows = [await session.get(Classification, r.json()["request_id"]) for r in (fast, slow)]
    skip = {"id", "created_at", "duration"}
    columns = [c.key for c in Classification.__table__.columns if c.key not in skip]
    assert {k: getattr(rows[0], k) for k in columns} == {k: getattr(rows[1], k) for k in columns}
    assert rows[0].created_at.tzinfo is not None
    for response in (fast, slow):
        stored = await app.client.get(
            f"/v1/classifications/{response.json()['request_id']}", headers=tenant.headers
        )
        assert stored.status_code == 200
        assert stored.json()["confidence_scores"] == response.json()["confidence_scores"]
    assert await money(app, tenant.account_id) == (46, 0, 46, 0, 2)


async def test_a_sqlite_driver_error_is_a_503_and_nothing_is_charged(tmp_path, monkeypatch):
    """The SQLite fast path speaks sqlite3 directly: its driver's errors (a disk that fails, a
    database that stays locked) are the same retryable 503 as SQLAlchemy's."""
    import sqlite3

    settings = make_settings(f"sqlite:///{tmp_path / 'err.db'}", tmp_path)
    async for harness in start_harness(settings, [FlakyBackend(first_label_wins)]):
        tenant = await harness.tenant(credits=5)
        doc = await make_document(harness, tenant, ["INVOICE"])
        store = harness.app.state.docsift.fast_store

        def failing(work):  # noqa: ANN001, ANN202
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_now", failing)  # every step, at once or waiting
        monkeypatch.setattr(store, "_run", lambda work: asyncio.sleep(0, failing(work)))
        body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
        response = await harness.client.post("/v1/classify", json=body, headers=tenant.headers)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "service_unavailable"
        assert await money(harness, tenant.account_id) == (5, 0, 5, 0, 0)
