"""Erasure: DELETE /v1/documents/{id} and the retention job leave nothing of a document on disk
or in any table (a unique token planted in it is searched for everywhere), while the ledger and
the classification history stay."""

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import inspect, text
from sqlmodel import select

from backend.documents.service import store
from backend.models import Classification, Document, LedgerEntry, PurgeRecord, utcnow
from backend.retention import purge_expired
from tests.fixtures.documents import text_pdf
from tests.fixtures.formats import eml_bytes

SCHEMA = [{"label": "invoice"}, {"label": "letter"}]


def files_holding(root: Path, token: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and token in p.read_bytes()]


async def rows_holding(harness, token: str) -> list[str]:
    """Every table of the database, every row, every column: where the token still is."""
    state = harness.app.state.docsift
    found = []
    async with state.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert {"document", "page", "example", "classification"} <= set(tables)
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
            for row in rows:
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if token.encode() in raw:
                        found.append(f"{table}: {row}")
    return found


async def plant(harness, tenant, token: str) -> dict:
    """An e-mail mentioning the token, with a PDF attachment holding it; made an example of a
    classifier, classified, and given a page image beside it."""
    client = harness.client
    data = eml_bytes(
        f"Invoice {token}",
        f"Dear customer, reference {token}.",
        [(f"invoice-{token}.pdf", "application/pdf", text_pdf([f"INVOICE {token} Total 9.00"]))],
    )
    r = await client.post(
        "/v1/documents", headers=tenant.headers, files={"file": (f"{token}.eml", data)}
    )
    assert r.status_code == 201, r.text
    mail = r.json()
    child = mail["children"][0]
    r = await client.post(
        "/v1/classifiers",
        json={"name": "mail", "classification_schema": SCHEMA},
        headers=tenant.headers,
    )
    classifier_id = r.json()["classifier_id"]
    r = await client.post(
        f"/v1/classifiers/{classifier_id}/examples",
        json={"document_id": child["document_id"], "label": "invoice"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    for document_id in (mail["document_id"], child["document_id"]):
        r = await client.post(
            "/v1/classify",
            json={"document_id": document_id, "classification_schema": SCHEMA},
            headers=tenant.headers,
        )
        assert r.status_code == 200, r.text
    # Page images (rendered and cached by the console/API) live in the derived folder.
    files = store(harness.app.state.docsift)
    for document_id in (mail["document_id"], child["document_id"]):
        folder = harness.settings.storage_dir / files.derived_dir(tenant.account_id, document_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "page-1.png").write_bytes(b"\x89PNG " + token.encode())
    return mail


async def test_delete_leaves_nothing_of_the_document(harness, tenant):
    token = f"tok{uuid.uuid4().hex}"
    mail = await plant(harness, tenant, token)
    root = harness.settings.storage_dir
    assert files_holding(root, token.encode())
    assert await rows_holding(harness, token)

    r = await harness.client.delete(f"/v1/documents/{mail['document_id']}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert files_holding(root, token.encode()) == []
    assert await rows_holding(harness, token) == []
    assert [p for p in root.rglob("*") if p.is_file()] == []
    for document_id in (mail["document_id"], mail["children"][0]["document_id"]):
        r = await harness.client.get(f"/v1/documents/{document_id}", headers=tenant.headers)
        assert r.status_code == 404

    # The ledger and the classification history (labels, credits) stay; the purge is recorded.
    async with harness.app.state.docsift.sessionmaker() as session:
        results = (await session.exec(select(Classification))).all()
        assert len(results) == 2 and all(c.classification for c in results)
        debits = (await session.exec(select(LedgerEntry).where(LedgerEntry.kind == "debit"))).all()
        assert len(debits) == 2
        (record,) = (await session.exec(select(PurgeRecord))).all()
        assert record.reason == "deleted" and record.document_id == mail["document_id"]
        assert record.children == 1 and record.examples == 1 and record.files >= 4
        assert record.pages >= 2 and record.bytes > 0


async def test_retention_erases_old_documents_only(harness, tenant):
    token_old, token_new = f"old{uuid.uuid4().hex}", f"new{uuid.uuid4().hex}"
    old = await plant(harness, tenant, token_old)
    new = await plant(harness, tenant, token_new)
    state = harness.app.state.docsift
    r = await harness.client.put(
        "/v1/account/retention", json={"retention_days": 30}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["retention_days"] == 30
    async with state.sessionmaker() as session:
        for document in (
            await session.exec(select(Document).where(Document.account_id == tenant.account_id))
        ).all():
            if (
                document.id == old["document_id"]
                or document.parent_document_id == old["document_id"]
            ):
                document.created_at = utcnow() - timedelta(days=31)
                session.add(document)
        await session.commit()

    assert await purge_expired(state) == 1
    assert files_holding(harness.settings.storage_dir, token_old.encode()) == []
    assert await rows_holding(harness, token_old) == []
    assert files_holding(harness.settings.storage_dir, token_new.encode())
    r = await harness.client.get(f"/v1/documents/{new['document_id']}", headers=tenant.headers)
    assert r.status_code == 200
    async with state.sessionmaker() as session:
        (record,) = (await session.exec(select(PurgeRecord))).all()
        assert record.reason == "retention" and record.document_id == old["document_id"]
    assert await purge_expired(state) == 0  # nothing more is due


async def test_a_classifier_retention_overrides_the_account(harness, tenant):
    mail = await plant(harness, tenant, f"cls{uuid.uuid4().hex}")
    state = harness.app.state.docsift
    classifiers = (await harness.client.get("/v1/classifiers", headers=tenant.headers)).json()
    classifier_id = classifiers["items"][0]["classifier_id"]
    r = await harness.client.patch(
        f"/v1/classifiers/{classifier_id}", json={"retention_days": 1}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["retention_days"] == 1
    # The account keeps documents for ever; the classifier (run on the e-mail's attachment
    # through its example... and on documents it classified) says one day.
    r = await harness.client.post(
        f"/v1/classifiers/{classifier_id}/run",
        json={"document_id": mail["document_id"]},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    async with state.sessionmaker() as session:
        document = await session.get(Document, mail["document_id"])
        document.created_at = utcnow() - timedelta(days=2)
        session.add(document)
        await session.commit()
    assert await purge_expired(state) == 1
    r = await harness.client.get(f"/v1/documents/{mail['document_id']}", headers=tenant.headers)
    assert r.status_code == 404
