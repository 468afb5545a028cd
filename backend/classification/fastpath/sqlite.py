"""The fast path's store on SQLite: plain sqlite3 connections, no SQLAlchemy at run time."""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.classification.fastpath.common import (
    ACCOUNT,
    AVAILABLE,
    HOLD,
    LEDGER,
    READ_DOCUMENT,
    READ_DOCUMENT_AND_PAGES,
    READ_PAGE_SPAN,
    RESULT,
    Held,
    Sql,
    debit_values,
    hold_params,
    insufficient,
    pages_of,
    pages_to_read,
    result_values,
    take_hold,
)
from backend.classification.spec import RunSpec
from backend.db import _WRITE_LOCKS, _sqlite_pragmas
from backend.errors import InsufficientCredits
from backend.models import Classification

T = TypeVar("T")

_DIALECT = sqlite_dialect(paramstyle="named")


def _execute(conn: sqlite3.Connection, sql: Sql, params: dict[str, Any]) -> sqlite3.Cursor:
    return conn.execute(sql.text, sql.bound(params))


def _read(conn: sqlite3.Connection, sql: Sql, params: dict[str, Any]) -> list[Any]:
    return sql.rows(_execute(conn, sql, params).fetchall())


class _Busy:
    """A step that found SQLite's writer busy, and did nothing."""


BUSY = _Busy()


class SqliteStore:
    """Two plain sqlite3 connections (DB-API, no SQLAlchemy at run time): each step is a few
    precompiled statements, run on the event loop or, when it must wait for SQLite's lock, in
    one thread hop (see `_run`).

    The statements are Core ones (here and in common.py), compiled once for SQLite with their parameters'
    bind processors (JSON, timestamps), so rows are stored exactly as the ORM stores them.
    Measured (bench.profile_server): executing them through SQLAlchemy's Connection was a
    quarter of DocSift's own CPU per classify; sqlite3's own work is a few microseconds each."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.path = make_url(url).database or ""
        self.lock = _WRITE_LOCKS[engine.sync_engine]
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docsift-sqlite")
        self.conn: sqlite3.Connection | None = None  # waits for SQLite's lock (in the thread)
        self.nowait: sqlite3.Connection | None = None  # never waits (on the event loop)
        self.read_document = Sql.of(READ_DOCUMENT, _DIALECT)
        self.read_document_and_pages = Sql.of(READ_DOCUMENT_AND_PAGES, _DIALECT)
        self.read_page_span = Sql.of(READ_PAGE_SPAN, _DIALECT)
        self.available = Sql.of(AVAILABLE, _DIALECT)
        self.take = Sql.of(
            update(ACCOUNT)
            .where(
                ACCOUNT.c.id == bindparam("account_id"),
                ACCOUNT.c.balance - ACCOUNT.c.reserved >= bindparam("amount"),
            )
            .values(reserved=ACCOUNT.c.reserved + bindparam("amount")),
            _DIALECT,
        )
        self.add_hold = Sql.of(
            insert(HOLD).values(
                request_id=bindparam("request_id"),
                account_id=bindparam("account_id"),
                amount=bindparam("amount"),
                created_at=bindparam("now", type_=HOLD.c.created_at.type),
            ),
            _DIALECT,
        )
        self.free_hold = Sql.of(take_hold(), _DIALECT)
        self.covered = Sql.of(
            select(ACCOUNT.c.id).where(
                ACCOUNT.c.id == bindparam("account_id"),
                ACCOUNT.c.balance - ACCOUNT.c.reserved >= bindparam("amount"),
            ),
            _DIALECT,
        )
        # One UPDATE settles a charge (balance down, hold released) or a release (amount 0).
        self.settle = Sql.of(
            update(ACCOUNT)
            .where(ACCOUNT.c.id == bindparam("account_id"))
            .values(
                balance=ACCOUNT.c.balance - bindparam("amount"),
                reserved=ACCOUNT.c.reserved - bindparam("freed"),
            ),
            _DIALECT,
        )
        self.add_result = Sql.of(
            insert(RESULT), _DIALECT, [column.name for column in RESULT.columns]
        )
        self.debit = Sql.of(
            insert(LEDGER).values(
                account_id=bindparam("account_id"),
                amount=bindparam("debit"),
                kind="debit",
                request_id=bindparam("request_id"),
                model=bindparam("model"),
                pages=bindparam("pages"),
                note=bindparam("note"),
                created_at=bindparam("now", type_=LEDGER.c.created_at.type),
            ),
            _DIALECT,
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
                rows = _read(conn, self.read_document_and_pages, key)
                row = rows[0] if rows else None
            else:
                row = next(iter(_read(conn, self.read_document, key)), None)
            numbers, credits = pages_to_read(
                row, account_id=account_id, document_id=document_id, spec=spec
            )
            if spec.page_range is not None:
                span = key | {"first": min(numbers), "last": max(numbers)}
                rows = _read(conn, self.read_page_span, span)
            pages = pages_of(rows, numbers)
            params = hold_params(account_id, request_id, credits)
            # The read took no lock (sqlite3 begins a transaction at the first write).
            if _execute(conn, self.take, params).rowcount != 1:
                conn.rollback()
                available = next(iter(_read(conn, self.available, params)), (0,))[0]
                raise insufficient(credits, available)
            _execute(conn, self.add_hold, params)
            conn.commit()
            return Held(request_id, document_id, numbers, pages, credits)

        return work

    async def store_and_charge(self, record: Classification) -> None:
        values = result_values(record)
        debit = debit_values(record)

        def work(conn: sqlite3.Connection) -> None:
            freed = _execute(conn, self.free_hold, {"request_id": record.id}).fetchone()
            amount = record.credits_used
            params = {
                "account_id": record.account_id,
                "amount": amount,
                "freed": freed[1] if freed else 0,
            }
            # The hold was swept (the request outlived the sweep window): as ledger.charge,
            # debit only while the balance still covers it.
            if freed is None and amount > 0 and not _read(conn, self.covered, params):
                raise InsufficientCredits("The account can no longer cover this request.")
            _execute(conn, self.add_result, values)
            _execute(conn, self.debit, debit)
            _execute(conn, self.settle, params)
            conn.commit()

        await self._run(work)

    async def release(self, request_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            freed = _execute(conn, self.free_hold, {"request_id": request_id}).fetchone()
            if freed is not None:
                _execute(
                    conn, self.settle, {"account_id": freed[0], "amount": 0, "freed": freed[1]}
                )
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


def _no_wait_pragmas(dbapi_connection, record) -> None:  # noqa: ANN001
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")  # fail at once when another writer holds the lock
    cursor.close()
