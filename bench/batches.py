"""Throughput of the batch path: documents per second per queue worker.

    python -m bench.batches [--documents 300] [--delay 0.2] [--concurrency 10]

For each set-up, a fresh database, one API process, N `docsift worker` processes (or, on SQLite,
the API process's own worker) and a fake OpenAI-compatible model answering after `--delay`
seconds, all on 127.0.0.1; one batch of one-page documents; the time from the batch's creation
to its completion. PostgreSQL comes from DOCSIFT_TEST_POSTGRES_URL (as for the tests; `bash
.ci/setup --test` starts one). Writes bench/results/batches.json.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

from bench.harness import write_result
from tests.batches.cluster import MODEL, Cluster
from tests.conftest import POSTGRES_URL, _create_postgres_database, _psycopg_dsn
from tests.fixtures.documents import zip_of

SCHEMA = [
    {"label": "invoice", "description": "A document requesting payment"},
    {"label": "contract", "description": "A legally binding agreement"},
    {"label": "other", "description": "Anything else"},
]


async def _account(url: str) -> str:
    from backend.accounts.service import create_account
    from backend.db import create_engine, create_sessionmaker
    from backend.migrate import upgrade

    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            _, key = await create_account(session, name="bench", credits=10**9, key_prefix="dsk_")
            await session.commit()
            return key
    finally:
        await engine.dispose()


class ConnectionWatch:
    """The most PostgreSQL connections open at once while the batch ran."""

    def __init__(self, url: str | None) -> None:
        self.url, self.peak, self._stop = url, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(_psycopg_dsn(POSTGRES_URL), autocommit=True) as conn:
            while not self._stop.wait(0.5):
                (count,) = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
                self.peak = max(self.peak, count)

    def __enter__(self) -> "ConnectionWatch":
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.url:
            self._thread.join(5)


async def run_one(database: str, workers: int, args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="docsift-bench-batches-"))
    postgres = database == "postgres"
    if postgres:
        url, drop = _create_postgres_database(POSTGRES_URL)
    else:
        url, drop = f"sqlite:///{workdir / 'bench.db'}", (lambda: None)
    cluster = Cluster(
        database_url=url,
        workdir=workdir,
        apis=1,
        workers=workers if postgres else 0,
        worker_concurrency=args.concurrency,
        model_delay=args.delay,
        env_overrides={
            "DOCSIFT_RATE_LIMIT_PER_MINUTE": "0",
            "DOCSIFT_MAX_ZIP_ENTRIES": str(args.documents),
        },
    )
    try:
        cluster.start()
        key = await _account(url)
        api = cluster.api_urls[0]
        async with httpx.AsyncClient(
            base_url=api, headers={"x-api-key": key}, timeout=300
        ) as client:
            archive = zip_of(
                {
                    f"doc-{i}.txt": f"Invoice {i}: amount due {i} EUR within 30 days.".encode()
                    for i in range(args.documents)
                }
            )
            uploaded = await client.post(
                "/v1/documents", files={"file": ("docs.zip", archive, "application/zip")}
            )
            uploaded.raise_for_status()
            ids = [d["document_id"] for d in uploaded.json()["documents"]]
            with ConnectionWatch(url if postgres else None) as watch:
                started = time.monotonic()
                created = await client.post(
                    "/v1/batches",
                    json={
                        "classification_schema": SCHEMA,
                        "query_model": MODEL,
                        "document_ids": ids,
                    },
                )
                created.raise_for_status()
                batch_id = created.json()["batch_id"]
                while True:
                    body = (await client.get(f"/v1/batches/{batch_id}?status=failed")).json()
                    if body["status"] == "completed":
                        break
                    await asyncio.sleep(0.1)
                seconds = time.monotonic() - started
        assert body["succeeded"] == args.documents, body
        effective_workers = workers if postgres else 1
        result = {
            "database": database,
            "workers": effective_workers if postgres else "embedded (API process)",
            "documents": args.documents,
            "seconds": round(seconds, 2),
            "docs_per_second": round(args.documents / seconds, 2),
            "docs_per_second_per_worker": round(args.documents / seconds / effective_workers, 2),
            "ideal_per_worker": round(args.concurrency / args.delay, 1),
            "peak_postgres_connections": watch.peak if postgres else None,
        }
        print(result, flush=True)
        return result
    finally:
        cluster.stop()
        drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    runs = [
        await run_one("postgres", 1, args),
        await run_one("postgres", 2, args),
        await run_one("sqlite", 0, args),
    ]
    load = os.getloadavg()
    path = write_result(
        "batches",
        {
            "command": "python -m bench.batches "
            f"--documents {args.documents} --delay {args.delay} --concurrency {args.concurrency}",
            "model_delay_seconds": args.delay,
            "worker_concurrency": args.concurrency,
            "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}",
            "load_average_after": [round(x, 2) for x in load],
            "runs": runs,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
