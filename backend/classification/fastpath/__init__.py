"""`POST /v1/classify` without the ORM: the same result, charge and errors as
`run_classification`, in as few database round trips as exactness allows.

Measured (bench/overhead.py), the ORM path cost ~30 ms of CPU a request in DocSift's own code:
9 statements, 3 commits, ~37 aiosqlite thread hops, ORM flushes and identity maps. Here a
request is three steps, each on a store (`postgres.py`, `sqlite.py`; statements in `common.py`):

- read and hold: the document and its pages read, their credits held (`reserved += n` only where
  `balance - reserved >= n`, so concurrent holds never overdraw; 402 and nothing written when
  not). PostgreSQL: one statement for the usual request (whole document), three with a page
  range. SQLite: reads, then UPDATE + INSERT + COMMIT.
- the model runs (no lock, no transaction, no connection held);
- result and charge: the hold deleted, the result and the debit row inserted, the balance
  lowered, together or not at all (PostgreSQL: one statement of CTEs; SQLite: one transaction);
- on failure or cancellation, release: the hold deleted and `reserved` lowered by it.

PostgreSQL statements run on psycopg's own pool, one round trip each; the hold is committed
without waiting for the WAL flush (losing one in a server crash is releasing it), the charge
waits for it. SQLite steps run as this process's writer (`db.begin_write`'s lock), as every
money write here does: on the event loop on a connection that does not wait for SQLite's lock,
or, when another writer holds it, in one thread hop on a connection that does (see
`SqliteStore._run`). With the writer free the hold is taken without awaiting anything
(`hold_now`); otherwise in a shielded task, so a cancelled request still gives it back.

The ledger invariants are `backend/billing/ledger.py`'s (balance = sum of ledger rows; a hold is
freed exactly once, by whoever's DELETE removed it) and tests/billing checks them on this path.
Requests with an `Idempotency-Key` take the ORM path (the stored response is written with the
result there).
"""

import asyncio
import time

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.backends.llm.client import deferred_logging
from backend.classification.engine import classify_pages
from backend.classification.fastpath.common import Held, SlowPathNeeded
from backend.classification.fastpath.postgres import PostgresStore
from backend.classification.fastpath.sqlite import SqliteStore
from backend.classification.service import record_charged_usage, result_record
from backend.classification.spec import RunSpec
from backend.config import Settings
from backend.db import is_sqlite
from backend.models import Classification, new_id
from backend.state import AppState

__all__ = ["FastStore", "Held", "PostgresStore", "SlowPathNeeded", "SqliteStore", "classify_fast"]

FastStore = PostgresStore | SqliteStore


async def open_store(engine: AsyncEngine, settings: Settings) -> FastStore | None:
    """The store for the app's database; None where the fast path does not apply (an in-memory
    SQLite database is private to its connection)."""
    url = settings.database_url
    if is_sqlite(url):
        if make_url(url).database in (None, "", ":memory:"):
            return None
        return SqliteStore(engine, url)
    if engine.dialect.name == "postgresql":
        store = PostgresStore(
            url,
            pool_size=settings.db_classify_pool_size,
            ping_idle_seconds=settings.db_ping_idle_seconds,
        )
        await store.open()
        return store
    return None


_BACKGROUND: set[asyncio.Task] = set()


def _release_if_held(store: "FastStore", holding: asyncio.Future, request_id: str) -> None:
    if not holding.cancelled() and holding.exception() is None:
        task = asyncio.ensure_future(store.release(request_id))
        _BACKGROUND.add(task)  # a strong reference until it is done
        task.add_done_callback(_BACKGROUND.discard)


async def _hold_shielded(store: "FastStore", spec: RunSpec, where: dict[str, str]) -> Held:
    """The hold, taken in a task of its own: a request cancelled (client gone) while it is
    being taken gives it back once it is taken, rather than leave it to the next sweep."""
    holding = asyncio.ensure_future(store.load_and_hold(spec, **where))
    try:
        return await asyncio.shield(holding)
    except asyncio.CancelledError:
        request_id = where["request_id"]
        holding.add_done_callback(lambda _: _release_if_held(store, holding, request_id))
        raise


async def classify_fast(
    state: AppState,
    store: FastStore,
    spec: RunSpec,
    *,
    account_id: str,
    document_id: str,
    kind: str = "classify",
) -> Classification:
    """`run_classification` for an inline spec, on `store`: the stored, charged result."""
    started = time.perf_counter()
    request_id = new_id()
    where = {"account_id": account_id, "document_id": document_id, "request_id": request_id}
    # SQLite with its writer free: the hold is taken right here, with nothing awaited.
    held = store.hold_now(spec, **where)
    if held is None:
        held = await _hold_shielded(store, spec, where)
    with deferred_logging():  # LiteLLM's bookkeeping after the charge, not during it
        try:
            result = await classify_pages(state, spec, held.pages, document_id=document_id)
            record = result_record(
                spec,
                result,
                request_id=request_id,
                account_id=account_id,
                document_id=document_id,
                numbers=held.numbers,
                credits=held.credits,
                kind=kind,
            )
            record.duration = round(time.perf_counter() - started, 3)
            await store.store_and_charge(record)
        except BaseException:
            # Shielded: a cancelled request (client gone) must still give its hold back.
            await asyncio.shield(store.release(request_id))
            raise
    record_charged_usage(spec, result, held.credits)
    return record
