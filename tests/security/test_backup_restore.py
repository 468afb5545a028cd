"""`docsift backup` then `docsift restore` into a fresh database and folder: every document,
classifier, example and ledger row is there, the files read back, and the restored server
serves them (SQLite, and PostgreSQL with DOCSIFT_TEST_DATABASE=postgres)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import SQLModel

from backend.models import Classifier, Document, Example, LedgerEntry
from tests.conftest import (
    REPO_ROOT,
    _create_postgres_database,
    make_settings,
    start_harness,
)
from tests.fixtures.documents import text_pdf
from tests.fixtures.formats import eml_bytes

SCHEMA = [{"label": "invoice"}, {"label": "letter"}]


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path, request) -> Iterator[str]:
    """A second, empty database of the same kind to restore into."""
    if database_url.startswith("postgres"):
        url, drop = _create_postgres_database(request.getfixturevalue("postgres_server"))
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'restored' / 'docsift.db'}"


def cli(database_url: str, storage: Path, *args: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DOCSIFT_DATABASE_URL": database_url,
        "DOCSIFT_STORAGE_DIR": str(storage),
    }
    out = subprocess.run(
        [sys.executable, "-m", "backend.cli", *args, "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


async def snapshot(harness) -> dict[str, list]:
    """Every row of the tables a restore must bring back, as plain tuples."""
    out = {}
    async with harness.app.state.docsift.engine.connect() as conn:
        for model in (Document, Classifier, Example, LedgerEntry):
            table = SQLModel.metadata.tables[model.__tablename__]
            rows = (await conn.execute(select(table).order_by(*table.primary_key))).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


async def test_backup_restores_into_a_fresh_folder(database_url, fresh_url, tmp_path, fake_backend):
    settings = make_settings(database_url, tmp_path)
    async for harness in start_harness(settings, [fake_backend]):
        http = harness.client
        tenants = [await harness.tenant(name=n) for n in ("a", "b")]
        for tenant in tenants:
            mail = eml_bytes(
                "Hello", "Body text", [("x.pdf", "application/pdf", text_pdf(["INVOICE 1"]))]
            )
            r = await http.post(
                "/v1/documents", headers=tenant.headers, files={"file": ("m.eml", mail)}
            )
            doc = r.json()
            r = await http.post(
                "/v1/classifiers",
                json={"name": "c", "classification_schema": SCHEMA},
                headers=tenant.headers,
            )
            classifier = r.json()["classifier_id"]
            r = await http.post(
                f"/v1/classifiers/{classifier}/examples",
                json={"document_id": doc["children"][0]["document_id"], "label": "invoice"},
                headers=tenant.headers,
            )
            assert r.status_code == 201, r.text
            r = await http.post(
                f"/v1/classifiers/{classifier}/run",
                json={"document_id": doc["document_id"]},
                headers=tenant.headers,
            )
            assert r.status_code == 200, r.text
        before = await snapshot(harness)
        files_before = {
            str(p.relative_to(settings.storage_dir)): p.read_bytes()
            for p in settings.storage_dir.rglob("*")
            if p.is_file()
        }
        # Taken while the server runs.
        archive = tmp_path / "backup.tar.gz"
        manifest = cli(database_url, settings.storage_dir, "backup", str(archive))
    assert manifest["rows"]["document"] == 4 and manifest["missing_files"] == []
    assert manifest["files"] == len(files_before) >= 6

    restored_dir = tmp_path / "restored" / "files"
    cli(fresh_url, restored_dir, "restore", str(archive))
    files_after = {
        str(p.relative_to(restored_dir)): p.read_bytes()
        for p in restored_dir.rglob("*")
        if p.is_file()
    }
    assert files_after == files_before

    restored = make_settings(fresh_url, tmp_path / "restored")
    async for harness in start_harness(restored, [fake_backend]):
        assert await snapshot(harness) == before
        assert len(before["example"]) == 2 and len(before["classifier"]) == 2
        assert len(before["ledger_entry"]) == 4  # two grants, two debits
        for tenant in tenants:  # the same keys work; the files read back
            listing = (await harness.client.get("/v1/documents", headers=tenant.headers)).json()
            assert listing["total"] == 2
            for item in listing["items"]:
                r = await harness.client.post(
                    f"/v1/documents/{item['document_id']}/extract", headers=tenant.headers
                )
                assert r.status_code == 200, r.text
            balance = (await harness.client.get("/v1/account", headers=tenant.headers)).json()
            assert balance["balance"] == 1000 - balance["usage"]["total_credits"]
            # New rows continue after the restored ids (PostgreSQL sequences).
            r = await harness.client.post(
                "/v1/classify",
                json={
                    "document_id": listing["items"][0]["document_id"],
                    "classification_schema": SCHEMA,
                },
                headers=tenant.headers,
            )
            assert r.status_code == 200, r.text

    # Restoring again over the restored data is refused.
    env_out = subprocess.run(  # noqa: ASYNC221
        [sys.executable, "-m", "backend.cli", "restore", str(archive)],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DOCSIFT_DATABASE_URL": fresh_url,
            "DOCSIFT_STORAGE_DIR": str(tmp_path / "empty"),
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert env_out.returncode != 0 and "already holds accounts" in env_out.stderr
