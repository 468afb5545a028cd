"""`POST /v1/classify` without the ORM: the same result, charge and errors as
`run_classification`, in as few database round trips as exactness allows.

Measured (bench/overhead.py), the ORM path cost ~30 ms of CPU a request in DocSift's own code:
9 statements, 3 commits, ~37 aiosqlite thread hops, ORM flushes and identity maps. Here:

PostgreSQL (psycopg, natively async, autocommit: no BEGIN/COMMIT round trips)
- read the document and its pages (1 statement; 2 with a page range);
- hold: one statement, `WITH held AS (UPDATE account ... WHERE balance - reserved >= n
  RETURNING id) INSERT INTO credit_reservation SELECT ... FROM held`. The conditional UPDATE is
  re-checked against the committed row when it waited on a concurrent one, so holds can never
  overdraw; no row back means 402 and nothing was written;
- the model runs (no lock, no transaction, no connection held);
- result and charge: one statement, `WITH freed AS (DELETE the hold RETURNING amount), paid AS
  (UPDATE account: balance - n, reserved - freed, only if the hold was there or the balance still
  covers n), result AS (INSERT classification SELECT ... FROM paid) INSERT ledger_entry SELECT
  ... FROM paid`: the result, the debit row and the balance are written together or not at all;
- on failure, release: one statement (DELETE the hold, UPDATE account FROM it).

SQLite (one writer; aiosqlite would hop to a thread per statement): each step runs whole on a
plain sqlite3 connection: read and hold (reads, then UPDATE + INSERT + COMMIT), result and charge
(DELETE, INSERTs, UPDATE, COMMIT). A step runs as this process's writer (`db.begin_write`'s
lock), as every money write here does: on the event loop on a connection that does not wait for
SQLite's lock, or, when another writer holds it, in one thread hop on a connection that does
(see `SqliteStore._run`). With the writer free the hold is taken without awaiting anything
(`hold_now`); otherwise in a shielded task, so a cancelled request still gives it back.

The ledger invariants are `backend/billing/ledger.py`'s (balance = sum of ledger rows; a hold is
freed exactly once, by whoever's DELETE removed it) and tests/billing checks them on this path.
Requests with an `Idempotency-Key` take the ORM path (the stored response is written with the
result there).
"""

import asyncio
import sqlite3
import time
from collections import namedtuple
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import ReturningDelete

from backend.classification.engine import classify_pages
from backend.classification.service import result_record
from backend.classification.spec import RunSpec
from backend.db import _WRITE_LOCKS, _sqlite_pragmas, is_sqlite
from backend.documents.page_range import parse_page_range
from backend.documents.queries import ensure_processed
from backend.errors import InsufficientCredits, NotFound
from backend.models import (
    Account,
    Classification,
    CreditReservation,
    Document,
    LedgerEntry,
    Page,
    new_id,
    utcnow,
)
from backend.observability import record_usage
from backend.state import AppState

T = TypeVar("T")

ACCOUNT = Account.__table__  # type: ignore[attr-defined]
HOLD = CreditReservation.__table__  # type: ignore[attr-defined]
LEDGER = LedgerEntry.__table__  # type: ignore[attr-defined]
RESULT = Classification.__table__  # type: ignore[attr-defined]
DOCUMENT = Document.__table__  # type: ignore[attr-defined]
PAGE = Page.__table__  # type: ignore[attr-defined]

_READ_DOCUMENT = select(
    DOCUMENT.c.id,
    DOCUMENT.c.account_id,
    DOCUMENT.c.status,
    DOCUMENT.c.error,
    DOCUMENT.c.num_pages,
    DOCUMENT.c.deleted_at,
).where(DOCUMENT.c.id == bindparam("document_id"))
_READ_PAGES = (
    select(PAGE.c.page_number, PAGE.c.text, PAGE.c.ocr_pending)
    .where(
        PAGE.c.document_id == bindparam("document_id"),
        PAGE.c.page_number.in_(bindparam("numbers", expanding=True)),
    )
    .order_by(PAGE.c.page_number)
)
# Every page (no page range, the usual request): the document and its pages in one round trip.
_READ_DOCUMENT_AND_PAGES = (
    select(*_READ_DOCUMENT.selected_columns, PAGE.c.page_number, PAGE.c.text, PAGE.c.ocr_pending)
    .select_from(DOCUMENT.outerjoin(PAGE, PAGE.c.document_id == DOCUMENT.c.id))
    .where(DOCUMENT.c.id == bindparam("document_id"))
    .order_by(PAGE.c.page_number)
)
_AVAILABLE = select(ACCOUNT.c.balance - ACCOUNT.c.reserved).where(
    ACCOUNT.c.id == bindparam("account_id")
)


@dataclass
class Held:
    """A request's pages with their credits held."""

    request_id: str
    document_id: str
    numbers: list[int]
    pages: list[tuple[int, str]]
    credits: int


class SlowPathNeeded(Exception):
    """The request needs what only run_classification does (OCR on demand); nothing was held."""


def _texts(rows: Any) -> list[tuple[int, str]]:
    """(number, text) of the pages read, or SlowPathNeeded when one still waits for its OCR."""
    if any(r.ocr_pending for r in rows):
        raise SlowPathNeeded
    return [(r.page_number, r.text) for r in rows]


def _insufficient(amount: int, available: int | None) -> InsufficientCredits:
    return InsufficientCredits(
        f"This request needs {amount} credits; the account has {available or 0} available."
    )


def _pages_to_read(
    row: Any, *, account_id: str, document_id: str, spec: RunSpec
) -> tuple[list[int], int]:
    if row is None or row.account_id != account_id or row.deleted_at is not None:
        raise NotFound(f"Document {document_id} not found.")
    ensure_processed(row)
    numbers = parse_page_range(spec.page_range, row.num_pages)
    return numbers, len(numbers) * spec.info.credits_per_page


def _result_row(record: Classification) -> dict[str, Any]:
    """The record's column values, defaults (created_at, request_status, ...) included."""
    return {"c_" + column.name: getattr(record, column.key) for column in RESULT.columns}


def _debit_values(record: Classification) -> dict[str, Any]:
    return {
        "account_id": record.account_id,
        "request_id": record.id,
        "amount": record.credits_used,
        "debit": -record.credits_used,
        "model": record.model,
        "pages": record.num_pages,
        "note": record.kind,
        "now": utcnow(),
    }


class PostgresStore:
    """Core statements on the app's async engine, each in autocommit (one round trip each)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        held = (
            update(ACCOUNT)
            .where(
                ACCOUNT.c.id == bindparam("account_id"),
                ACCOUNT.c.balance - ACCOUNT.c.reserved >= bindparam("amount"),
            )
            .values(reserved=ACCOUNT.c.reserved + bindparam("amount"))
            .returning(ACCOUNT.c.id)
            .cte("held")
        )
        self.hold_statement = (
            insert(HOLD)
            .from_select(
                ["request_id", "account_id", "amount", "created_at"],
                select(
                    bindparam("request_id", type_=HOLD.c.request_id.type),
                    held.c.id,
                    bindparam("amount", type_=HOLD.c.amount.type),
                    bindparam("now", type_=HOLD.c.created_at.type),
                ).select_from(held),
            )
            .returning(HOLD.c.request_id)
        )
        freed = _take_hold().cte("freed")
        amount = bindparam("amount", type_=ACCOUNT.c.balance.type)
        paid = (
            update(ACCOUNT)
            .where(
                ACCOUNT.c.id == bindparam("account_id"),
                # The hold was there (it is consumed), or it was swept (the request outlived the
                # sweep window) and the balance still covers the debit: as ledger.charge.
                exists(select(freed.c.amount))
                | (ACCOUNT.c.balance - ACCOUNT.c.reserved >= amount)
                | (amount <= 0),
            )
            .values(
                balance=ACCOUNT.c.balance - amount,
                reserved=ACCOUNT.c.reserved
                - func.coalesce(select(func.sum(freed.c.amount)).scalar_subquery(), 0),
            )
            .returning(ACCOUNT.c.id)
            .cte("paid")
        )
        result = (
            insert(RESULT)
            .from_select(
                [column.name for column in RESULT.columns],
                select(
                    *[bindparam("c_" + column.name, type_=column.type) for column in RESULT.columns]
                ).select_from(paid),
            )
            .cte("result")
        )
        self.charge_statement = (
            insert(LEDGER)
            .from_select(
                [
                    "account_id",
                    "amount",
                    "kind",
                    "request_id",
                    "model",
                    "pages",
                    "note",
                    "created_at",
                ],
                select(
                    paid.c.id,
                    bindparam("debit", type_=LEDGER.c.amount.type),
                    bindparam("kind", "debit", type_=LEDGER.c.kind.type),
                    bindparam("request_id", type_=LEDGER.c.request_id.type),
                    bindparam("model", type_=LEDGER.c.model.type),
                    bindparam("pages", type_=LEDGER.c.pages.type),
                    bindparam("note", type_=LEDGER.c.note.type),
                    bindparam("now", type_=LEDGER.c.created_at.type),
                ).select_from(paid),
            )
            .add_cte(result)
            .returning(LEDGER.c.id)
        )
        unheld = _take_hold().cte("unheld")
        self.release_statement = (
            update(ACCOUNT)
            .where(ACCOUNT.c.id == unheld.c.account_id)
            .values(reserved=ACCOUNT.c.reserved - unheld.c.amount)
        )

    def hold_now(self, spec: RunSpec, **where: str) -> Held | None:
        """None: every step here is a round trip to the server (see `_hold_shielded`)."""
        return None

    async def load_and_hold(
        self, spec: RunSpec, *, account_id: str, document_id: str, request_id: str
    ) -> Held:
        async with self.engine.connect() as conn:
            if spec.page_range is None:
                rows = (
                    await conn.execute(_READ_DOCUMENT_AND_PAGES, {"document_id": document_id})
                ).all()
                numbers, credits = _pages_to_read(
                    rows[0] if rows else None,
                    account_id=account_id,
                    document_id=document_id,
                    spec=spec,
                )
                wanted = set(numbers)
                pages = _texts([r for r in rows if r.page_number in wanted])
            else:
                row = (await conn.execute(_READ_DOCUMENT, {"document_id": document_id})).first()
                numbers, credits = _pages_to_read(
                    row, account_id=account_id, document_id=document_id, spec=spec
                )
                pages = _texts(
                    (
                        await conn.execute(
                            _READ_PAGES, {"document_id": document_id, "numbers": numbers}
                        )
                    ).all()
                )
            params = {
                "account_id": account_id,
                "amount": credits,
                "request_id": request_id,
                "now": utcnow(),
            }
            if (await conn.execute(self.hold_statement, params)).first() is None:
                available = (await conn.execute(_AVAILABLE, params)).scalar()
                raise _insufficient(credits, available)
        return Held(request_id, document_id, numbers, [tuple(p) for p in pages], credits)

    async def store_and_charge(self, record: Classification) -> None:
        params = _debit_values(record) | _result_row(record)
        async with self.engine.connect() as conn:
            if (await conn.execute(self.charge_statement, params)).first() is None:
                raise InsufficientCredits("The account can no longer cover this request.")

    async def release(self, request_id: str) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(self.release_statement, {"request_id": request_id})

    async def close(self) -> None:
        return None


class _Busy:
    """A step that found SQLite's writer busy, and did nothing."""


BUSY = _Busy()


class SqliteStore:
    """Two plain sqlite3 connections (DB-API, no SQLAlchemy at run time): each step is a few
    precompiled statements, run on the event loop or, when it must wait for SQLite's lock, in
    one thread hop (see `_run`).

    The statements are the Core ones below, compiled once for SQLite with their parameters'
    bind processors (JSON, timestamps), so rows are stored exactly as the ORM stores them.
    Measured (bench.profile_server): executing them through SQLAlchemy's Connection was a
    quarter of DocSift's own CPU per classify; sqlite3's own work is a few microseconds each."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.path = make_url(url).database or ""
        self.lock = _WRITE_LOCKS[engine.sync_engine]
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docsift-sqlite")
        self.conn: sqlite3.Connection | None = None  # waits for SQLite's lock (in the thread)
        self.nowait: sqlite3.Connection | None = None  # never waits (on the event loop)
        self.read_document = _Sql.of(_READ_DOCUMENT)
        self.read_document_and_pages = _Sql.of(_READ_DOCUMENT_AND_PAGES)
        self.read_page_span = _Sql.of(
            select(PAGE.c.page_number, PAGE.c.text, PAGE.c.ocr_pending)
            .where(
                PAGE.c.document_id == bindparam("document_id"),
                PAGE.c.page_number.between(bindparam("first"), bindparam("last")),
            )
            .order_by(PAGE.c.page_number)
        )
        self.available = _Sql.of(_AVAILABLE)
        self.take = _Sql.of(
            update(ACCOUNT)
            .where(
                ACCOUNT.c.id == bindparam("account_id"),
                ACCOUNT.c.balance - ACCOUNT.c.reserved >= bindparam("amount"),
            )
            .values(reserved=ACCOUNT.c.reserved + bindparam("amount"))
        )
        self.add_hold = _Sql.of(
            insert(HOLD).values(
                request_id=bindparam("request_id"),
                account_id=bindparam("account_id"),
                amount=bindparam("amount"),
                created_at=bindparam("now", type_=HOLD.c.created_at.type),
            )
        )
        self.free_hold = _Sql.of(_take_hold())
        self.covered = _Sql.of(
            select(ACCOUNT.c.id).where(
                ACCOUNT.c.id == bindparam("account_id"),
                ACCOUNT.c.balance - ACCOUNT.c.reserved >= bindparam("amount"),
            )
        )
        # One UPDATE settles a charge (balance down, hold released) or a release (amount 0).
        self.settle = _Sql.of(
            update(ACCOUNT)
            .where(ACCOUNT.c.id == bindparam("account_id"))
            .values(
                balance=ACCOUNT.c.balance - bindparam("amount"),
                reserved=ACCOUNT.c.reserved - bindparam("freed"),
            )
        )
        self.add_result = _Sql.of(insert(RESULT), [column.name for column in RESULT.columns])
        self.debit = _Sql.of(
            insert(LEDGER).values(
                account_id=bindparam("account_id"),
                amount=bindparam("debit"),
                kind="debit",
                request_id=bindparam("request_id"),
                model=bindparam("model"),
                pages=bindparam("pages"),
                note=bindparam("note"),
                created_at=bindparam("now", type_=LEDGER.c.created_at.type),
            )
        )

    def _connect(self, *, wait: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        (_sqlite_pragmas if wait else _no_wait_pragmas)(conn, None)
        return conn

    def _now(self, work: Callable[[sqlite3.Connection], T]) -> T | _Busy:
        """`work` right here, unless this process's writer is in use (BUSY then)."""
        return BUSY if self.lock.locked() else self._attempt(work)

    def _attempt(self, work: Callable[[sqlite3.Connection], T]) -> T | _Busy:
        """`work` on a connection that never waits for SQLite's lock; BUSY when another process
        holds it.

        The steps are a few statements of well under a millisecond and WAL readers never wait,
        so running them on the event loop costs less than the two thread switches a hop does
        (measured: the hop was most of the step's CPU). A busy database fails at the step's
        first write, before anything is written. Nothing here awaits: no other request runs in
        between and no cancellation can land half-way."""
        if self.nowait is None:
            self.nowait = self._connect(wait=False)
        try:
            return work(self.nowait)
        except sqlite3.OperationalError as error:
            self.nowait.rollback()
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            return BUSY
        except BaseException:
            self.nowait.rollback()
            raise

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` as this process's writer (one at a time): at once if it can, else in the
        SQLite thread, which waits for the lock (the step is then run again whole)."""
        async with self.lock:
            done = self._attempt(work)
            if not isinstance(done, _Busy):
                return done

            def call() -> T:
                if self.conn is None:
                    self.conn = self._connect(wait=True)
                try:
                    return work(self.conn)
                except BaseException:
                    self.conn.rollback()
                    raise

            return await asyncio.get_running_loop().run_in_executor(self.thread, call)

    def hold_now(
        self, spec: RunSpec, *, account_id: str, document_id: str, request_id: str
    ) -> Held | None:
        """`load_and_hold` without awaiting anything, if the writer is free (else None)."""
        done = self._now(self._hold(spec, account_id, document_id, request_id))
        return None if isinstance(done, _Busy) else done

    async def load_and_hold(
        self, spec: RunSpec, *, account_id: str, document_id: str, request_id: str
    ) -> Held:
        return await self._run(self._hold(spec, account_id, document_id, request_id))

    def _hold(
        self, spec: RunSpec, account_id: str, document_id: str, request_id: str
    ) -> Callable[[sqlite3.Connection], Held]:
        def work(conn: sqlite3.Connection) -> Held:
            key = {"document_id": document_id}
            if spec.page_range is None:  # every page, the usual request: one statement
                rows = self.read_document_and_pages.rows(conn, key)
                row = rows[0] if rows else None
            else:
                row = next(iter(self.read_document.rows(conn, key)), None)
            numbers, credits = _pages_to_read(
                row, account_id=account_id, document_id=document_id, spec=spec
            )
            if spec.page_range is not None:
                span = key | {"first": min(numbers), "last": max(numbers)}
                rows = self.read_page_span.rows(conn, span)
            wanted = set(numbers)
            pages = _texts([r for r in rows if r.page_number in wanted])
            params = {
                "account_id": account_id,
                "amount": credits,
                "request_id": request_id,
                "now": utcnow(),
            }
            # The read took no lock (sqlite3 begins a transaction at the first write).
            if self.take.run(conn, params).rowcount != 1:
                conn.rollback()
                available = next(iter(self.available.rows(conn, params)), (0,))[0]
                raise _insufficient(credits, available)
            self.add_hold.run(conn, params)
            conn.commit()
            return Held(request_id, document_id, numbers, pages, credits)

        return work

    async def store_and_charge(self, record: Classification) -> None:
        values = {column.name: getattr(record, column.key) for column in RESULT.columns}
        debit = _debit_values(record)

        def work(conn: sqlite3.Connection) -> None:
            freed = self.free_hold.run(conn, {"request_id": record.id}).fetchone()
            amount = record.credits_used
            params = {
                "account_id": record.account_id,
                "amount": amount,
                "freed": freed[1] if freed else 0,
            }
            # The hold was swept (the request outlived the sweep window): as ledger.charge,
            # debit only while the balance still covers it.
            if freed is None and amount > 0 and not self.covered.rows(conn, params):
                raise InsufficientCredits("The account can no longer cover this request.")
            self.add_result.run(conn, values)
            self.debit.run(conn, debit)
            self.settle.run(conn, params)
            conn.commit()

        await self._run(work)

    async def release(self, request_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            freed = self.free_hold.run(conn, {"request_id": request_id}).fetchone()
            if freed is not None:
                self.settle.run(conn, {"account_id": freed[0], "amount": 0, "freed": freed[1]})
            conn.commit()

        await self._run(work)

    async def close(self) -> None:
        if self.nowait is not None:
            self.nowait.close()

        def shut() -> None:
            if self.conn is not None:
                self.conn.close()

        await asyncio.get_running_loop().run_in_executor(self.thread, shut)
        self.thread.shutdown(wait=False)


_SQLITE_DIALECT = sqlite_dialect(paramstyle="named")


@dataclass(frozen=True)
class _Sql:
    """A Core statement compiled once for sqlite3: its SQL and each parameter's bind processor
    (the conversion SQLAlchemy itself applies: JSON to text, datetimes to ISO strings)."""

    text: str
    defaults: dict[str, Any]  # values written into the statement (`kind="debit"`)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    row_type: Any  # a namedtuple of the selected columns: rows read by name, as Core rows are

    @classmethod
    def of(cls, statement: Any, column_keys: list[str] | None = None) -> "_Sql":
        compiled = statement.compile(dialect=_SQLITE_DIALECT, column_keys=column_keys)
        processors = []
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(_SQLITE_DIALECT).bind_processor(_SQLITE_DIALECT)
            if processor is not None:
                processors.append((name, processor))
        defaults = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.value is not None
        }
        columns = [c.key for c in getattr(statement, "selected_columns", ())]
        row_type = namedtuple("Row", columns, rename=True)  # noqa: PYI024
        return cls(str(compiled), defaults, tuple(processors), row_type)

    def run(self, conn: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        if self.processors or self.defaults:
            params = self.defaults | params
            for name, processor in self.processors:
                if name in params:
                    params[name] = processor(params[name])
        return conn.execute(self.text, params)

    def rows(self, conn: sqlite3.Connection, params: dict[str, Any]) -> list[Any]:
        """The rows, with attribute access by column name (as Core rows have)."""
        return [self.row_type(*values) for values in self.run(conn, params).fetchall()]


def _take_hold() -> ReturningDelete:
    """The request's hold deleted, giving back (account_id, amount): on PostgreSQL a CTE of the
    charge's and the release's one statement, on SQLite a step of its own."""
    return (
        delete(HOLD)
        .where(HOLD.c.request_id == bindparam("request_id"))
        .returning(HOLD.c.account_id, HOLD.c.amount)
    )


def _no_wait_pragmas(dbapi_connection, record) -> None:  # noqa: ANN001
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")  # fail at once when another writer holds the lock
    cursor.close()


FastStore = PostgresStore | SqliteStore


def open_store(engine: AsyncEngine, url: str) -> FastStore | None:
    """The store for the app's database; None where the fast path does not apply (an in-memory
    SQLite database is private to its connection)."""
    if is_sqlite(url):
        if make_url(url).database in (None, "", ":memory:"):
            return None
        return SqliteStore(engine, url)
    if engine.dialect.name == "postgresql":
        return PostgresStore(engine)
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
    record_usage(
        spec.model,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        credits=held.credits,
    )
    return record
