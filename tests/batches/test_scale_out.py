"""The issue's acceptance test, against real PostgreSQL and the real broker (Procrastinate on it):
3 API processes and 2 queue workers, a batch of 300 one-page documents, the model answering
after 200 ms, one worker killed with SIGKILL halfway. Every item completes exactly once, exactly
300 credits are debited, and the batch.completed webhook arrives once with a valid signature."""

import asyncio
import itertools
import json
import signal
import time

import httpx
import psycopg
import pytest

from backend.accounts.service import create_account
from backend.db import create_engine, create_sessionmaker, libpq_url
from tests.batches.cluster import MODEL, Cluster
from tests.batches.receiver import Receiver
from tests.conftest import _create_postgres_database
from tests.fixtures.documents import zip_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOCUMENTS = 300
SCHEMA = [
    {"label": "invoice", "description": "A document requesting payment"},
    {"label": "contract", "description": "A legally binding agreement"},
    {"label": "other", "description": "Anything else"},
]


@pytest.fixture
def database(postgres_server):
    url, drop = _create_postgres_database(postgres_server)
    yield url
    drop()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


async def _create_account(url: str, credits: int) -> dict[str, str]:
    """What `docsift accounts create` does, without starting one more Python process."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            account, key = await create_account(
                session, name="scale", credits=credits, key_prefix="dsk_"
            )
            await session.commit()
            return {"account_id": account.id, "api_key": key}
    finally:
        await engine.dispose()


def _db(url: str, query: str, *args):  # noqa: ANN202
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(query, args).fetchall()


async def test_three_apis_two_workers_one_killed_every_item_exactly_once(
    database, tmp_path, receiver
):
    started = time.monotonic()
    cluster = Cluster(
        database_url=database,
        workdir=tmp_path,
        apis=3,
        workers=2,
        worker_concurrency=10,
        model_delay=0.2,
        env_overrides={
            # A dead worker is noticed within seconds, not the production default of 30.
            "DOCSIFT_WORKER_HEARTBEAT_SECONDS": "1",
            "DOCSIFT_WORKER_STALLED_SECONDS": "6",
            "DOCSIFT_WORKER_RECOVER_SECONDS": "2",
            "DOCSIFT_WEBHOOK_BACKOFF_SECONDS": "0.2",
            # The shared (database) rate limit is on, high enough for this test's requests.
            "DOCSIFT_RATE_LIMIT_PER_MINUTE": "100000",
        },
    )
    stages: dict[str, float] = {}
    try:
        cluster.start()
        stages["processes up"] = time.monotonic() - started
        account = await _create_account(database, credits=1000)
        headers = {"x-api-key": account["api_key"]}
        apis = itertools.cycle(cluster.api_urls)
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:
            config = (
                await client.put(f"{next(apis)}/v1/webhooks", json={"url": receiver.url})
            ).json()
            receiver.secret = config["secret"]
            # 300 one-page documents, uploaded as three zips through the three API processes.
            document_ids: list[str] = []
            for part in range(3):
                archive = zip_of(
                    {
                        f"doc-{part * 100 + i}.txt": f"Invoice {part * 100 + i}: amount due "
                        f"{i * 10} EUR, payable within 30 days.".encode()
                        for i in range(100)
                    }
                )
                uploaded = await client.post(
                    f"{next(apis)}/v1/documents",
                    files={"file": ("part.zip", archive, "application/zip")},
                )
                assert uploaded.status_code == 201, uploaded.text
                docs = uploaded.json()["documents"]
                assert all(d["status"] == "processed" and d["num_pages"] == 1 for d in docs)
                document_ids += [d["document_id"] for d in docs]
            assert len(set(document_ids)) == DOCUMENTS
            stages["documents uploaded"] = time.monotonic() - started
            created = await client.post(
                f"{next(apis)}/v1/batches",
                json={
                    "classification_schema": SCHEMA,
                    "query_model": MODEL,
                    "document_ids": document_ids,
                },
            )
            assert created.status_code == 202, created.text
            assert created.json()["credits_estimate"] == DOCUMENTS
            batch_id = created.json()["batch_id"]
            batch_started = time.monotonic()

            async def progress() -> dict:
                response = await client.get(f"{next(apis)}/v1/batches/{batch_id}?status=failed")
                assert response.status_code == 200, response.text
                return response.json()

            killed_at = None
            deadline = time.monotonic() + 150
            while True:
                body = await progress()
                if killed_at is None and body["done"] >= DOCUMENTS // 2:
                    cluster.worker_procs[0].send_signal(signal.SIGKILL)
                    cluster.worker_procs[0].wait(10)
                    killed_at = body["done"]
                if body["status"] == "completed":
                    break
                assert time.monotonic() < deadline, (
                    f"batch stuck at {body['done']}\n{cluster.logs()}"
                )
                await asyncio.sleep(0.2)
            batch_seconds = time.monotonic() - batch_started
            assert killed_at is not None and killed_at < DOCUMENTS
            assert (body["succeeded"], body["failed"], body["items"]) == (DOCUMENTS, 0, [])
            assert body["credits_used"] == DOCUMENTS

            # The webhook: once, signed with the account's secret.
            for _ in range(100):
                if receiver.received:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a duplicate would arrive by now
            completed = [
                r for r in receiver.received if json.loads(r.body)["type"] == "batch.completed"
            ]
            assert len(completed) == 1 and len(receiver.received) == 1
            assert completed[0].signature_valid is True
            event = json.loads(completed[0].body)
            assert event["data"]["batch_id"] == batch_id
            assert event["data"]["succeeded"] == DOCUMENTS
            deliveries = (await client.get(f"{next(apis)}/v1/webhooks/deliveries")).json()
            assert [d["status"] for d in deliveries["items"]] == ["succeeded"]

        # Straight from the database: one result per item and per document, 300 debits.
        items = _db(
            database,
            "SELECT status, attempts, classification_id, id FROM batch_item WHERE batch_id = %s",
            batch_id,
        )
        assert len(items) == DOCUMENTS
        assert {row[0] for row in items} == {"completed"}
        assert all(row[2] == row[3] for row in items)  # the result is keyed by the item
        retried = sum(1 for row in items if row[1] > 1)
        assert retried >= 1, "the killed worker had items in flight; they must have been redone"
        per_document = _db(
            database,
            "SELECT document_id, count(*) FROM classification WHERE account_id = %s "
            "GROUP BY document_id",
            account["account_id"],
        )
        assert len(per_document) == DOCUMENTS and {n for _, n in per_document} == {1}
        debits = _db(
            database,
            "SELECT count(*), sum(amount), count(DISTINCT request_id) FROM ledger_entry "
            "WHERE account_id = %s AND kind = 'debit'",
            account["account_id"],
        )
        assert debits == [(DOCUMENTS, -DOCUMENTS, DOCUMENTS)]
        balance = _db(
            database,
            "SELECT balance, reserved FROM account WHERE id = %s",
            account["account_id"],
        )
        assert balance == [(1000 - DOCUMENTS, 0)]
        assert _db(database, "SELECT count(*) FROM credit_reservation") == [(0,)]
        assert cluster.worker_procs[1].poll() is None  # the other worker is alive and well
        stages["whole test"] = time.monotonic() - started
        print(
            f"\nscale-out: batch of {DOCUMENTS} in {batch_seconds:.1f} s, worker killed at "
            f"{killed_at} done, {retried} items redone; "
            + ", ".join(f"{k} at {v:.1f} s" for k, v in stages.items())
        )
    finally:
        cluster.stop()
