"""The fast path's store on PostgreSQL: psycopg's own async pool, autocommit, each step one
statement compiled once (`common.Sql`), so one round trip and no SQLAlchemy at run time.

Measured (bench.request_path --database postgres): through SQLAlchemy's async engine a checkout
and a statement cost 0.21 ms against 0.08 ms on psycopg_pool; its greenlet switches, cache key
and result objects were most of the PostgreSQL path's own CPU.
"""

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Integer, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from backend.classification.fastpath.common import (
    ACCOUNT,
    AVAILABLE,
    DOCUMENT,
    HOLD,
    LEDGER,
    PAGE,
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
from backend.db import libpq_url
from backend.errors import InsufficientCredits
from backend.models import Classification

_DIALECT = psycopg_dialect()
_CHECKS: set[asyncio.Task] = set()


# Selected by each statement that takes a hold: the statement is its own transaction
# (autocommit), and this makes that transaction's commit skip the WAL flush.
#
# A hold needs no durability: one lost in a server crash is a hold released, which is what a
# crash does to its request anyway. The charge that follows is flushed, and with it every earlier
# write. Measured (bench.overhead, sequential): the flush was about 0.2 ms of a durable
# statement here. Set inside the statement rather than by a `SET LOCAL` before it: BEGIN, SET,
# statement and COMMIT sent as one pipeline took 0.17 ms longer (0.78 -> 0.61 ms a hold, in
# place). Nothing else on this path skips the flush.
UNFLUSHED = func.set_config("synchronous_commit", "off", True).label("unflushed")


def _held_cte(amount: Any) -> Any:
    """`reserved += amount` where the balance covers it: the conditional UPDATE is re-checked
    against the committed row when it waited on a concurrent one, so holds never overdraw."""
    return (
        update(ACCOUNT)
        .where(
            ACCOUNT.c.id == bindparam("account_id"),
            ACCOUNT.c.balance - ACCOUNT.c.reserved >= amount,
        )
        .values(reserved=ACCOUNT.c.reserved + amount)
        .returning(ACCOUNT.c.id, amount.label("amount"))
        .cte("held")
    )


def _hold_row(held: Any) -> Any:
    """The hold's row for the account `held` returned (none when it returned none)."""
    return insert(HOLD).from_select(
        ["request_id", "account_id", "amount", "created_at"],
        select(
            bindparam("request_id", type_=HOLD.c.request_id.type),
            held.c.id,
            held.c.amount,
            bindparam("now", type_=HOLD.c.created_at.type),
        ).select_from(held),
    )


def _read_and_hold() -> Any:
    """A whole document's pages read and its credits held in one statement (the usual request).

    The hold is taken only for a document the ORM path would classify (the account's, live,
    processed, with pages and none waiting for OCR), for num_pages x credits_per_page; the
    statement returns what `pages_to_read` needs to say why not otherwise, the amount held (NULL
    if none) and what the account had available."""
    doc = (
        select(DOCUMENT.c.num_pages)
        .where(
            DOCUMENT.c.id == bindparam("document_id"),
            DOCUMENT.c.account_id == bindparam("account_id"),
            DOCUMENT.c.deleted_at.is_(None),
            DOCUMENT.c.status == "processed",
            DOCUMENT.c.num_pages >= 1,
            ~exists().where(PAGE.c.document_id == DOCUMENT.c.id, PAGE.c.ocr_pending.is_(True)),
        )
        .cte("doc")
    )
    held = _held_cte(doc.c.num_pages * bindparam("credits_per_page", type_=Integer))
    hold = _hold_row(held).returning(HOLD.c.amount).cte("hold")
    return (
        select(
            *READ_DOCUMENT_AND_PAGES.selected_columns,
            select(hold.c.amount).scalar_subquery().label("held"),
            AVAILABLE.scalar_subquery().label("available"),
            UNFLUSHED,
        )
        .select_from(READ_DOCUMENT_AND_PAGES.get_final_froms()[0])
        .where(DOCUMENT.c.id == bindparam("document_id"))
        .order_by(PAGE.c.page_number)
    )


def _charge() -> Any:
    """Result and charge in one statement: `WITH freed AS (DELETE the hold RETURNING amount),
    paid AS (UPDATE account: balance - n, reserved - freed, only if the hold was there or the
    balance still covers n), result AS (INSERT classification SELECT ... FROM paid) INSERT
    ledger_entry SELECT ... FROM paid`: the result, the debit row and the balance are written
    together or not at all."""
    freed = take_hold().cte("freed")
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
    return (
        insert(LEDGER)
        .from_select(
            ["account_id", "amount", "kind", "request_id", "model", "pages", "note", "created_at"],
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


def _release() -> Any:
    unheld = take_hold().cte("unheld")
    return (
        update(ACCOUNT)
        .where(ACCOUNT.c.id == unheld.c.account_id)
        .values(reserved=ACCOUNT.c.reserved - unheld.c.amount)
    )


async def _write(conn: AsyncConnection, sql: Sql, params: dict[str, Any]) -> Any:
    return await conn.execute(sql.text, sql.bound(params))  # type: ignore[arg-type]


async def _read(conn: AsyncConnection, sql: Sql, params: dict[str, Any]) -> list[Any]:
    return sql.rows(await (await _write(conn, sql, params)).fetchall())


class PostgresStore:
    """Statements on a small psycopg pool of the store's own, separate from the ORM's: at most
    `DOCSIFT_DB_CLASSIFY_POOL_SIZE` connections, in autocommit (a statement is its own
    transaction: no BEGIN/COMMIT round trips). Like the ORM's pool it pings a connection idle
    longer than `DOCSIFT_DB_PING_IDLE_SECONDS` before using it (one dropped meanwhile is
    replaced without an error)."""

    def __init__(self, url: str, *, pool_size: int = 10, ping_idle_seconds: float = 10.0) -> None:
        self.ping_idle_seconds = ping_idle_seconds
        self._idle_since: weakref.WeakKeyDictionary[AsyncConnection, float] = (
            weakref.WeakKeyDictionary()
        )
        self.pool = AsyncConnectionPool(
            libpq_url(url),
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=self._idle_from_now,  # a new connection
            reset=self._idle_from_now,  # one given back
            check=self._ping_when_idle,
            name="docsift-classify",
            open=False,
        )
        self.read_and_hold = Sql.of(_read_and_hold(), _DIALECT)
        self.read_document = Sql.of(READ_DOCUMENT, _DIALECT)
        self.read_page_span = Sql.of(READ_PAGE_SPAN, _DIALECT)
        held = _held_cte(bindparam("amount", type_=HOLD.c.amount.type))
        self.hold = Sql.of(_hold_row(held).returning(HOLD.c.request_id, UNFLUSHED), _DIALECT)
        self.available = Sql.of(AVAILABLE, _DIALECT)
        self.charge = Sql.of(_charge(), _DIALECT)
        self.release_hold = Sql.of(_release(), _DIALECT)

    async def open(self) -> None:
        await self.pool.open(wait=False)  # connects in the background; the first use waits

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection. One found dead (the server restarted) fails its statement with a
        503; the pool's other idle connections are then checked at once, as SQLAlchemy drops
        its pool on a disconnect, so the next requests do not fail one connection at a time."""
        async with self.pool.connection() as conn:
            try:
                yield conn
            except psycopg.OperationalError:
                if conn.closed:
                    task = asyncio.ensure_future(self.pool.check())
                    _CHECKS.add(task)  # a strong reference until it is done
                    task.add_done_callback(_CHECKS.discard)
                raise

    async def _idle_from_now(self, conn: AsyncConnection) -> None:
        self._idle_since[conn] = time.monotonic()

    async def _ping_when_idle(self, conn: AsyncConnection) -> None:
        since = self._idle_since.pop(conn, None)
        if since is not None and time.monotonic() - since >= self.ping_idle_seconds:
            await AsyncConnectionPool.check_connection(conn)  # raises: the pool replaces it

    def hold_now(self, spec: RunSpec, **where: str) -> Held | None:
        """None: every step here is a round trip to the server (see `_hold_shielded`)."""
        return None

    async def load_and_hold(
        self, spec: RunSpec, *, account_id: str, document_id: str, request_id: str
    ) -> Held:
        key = {"document_id": document_id}
        async with self._connection() as conn:
            if spec.page_range is None:  # every page: read and hold in one statement
                rows = await _read(
                    conn,
                    self.read_and_hold,
                    hold_params(account_id, request_id)
                    | key
                    | {"credits_per_page": spec.info.credits_per_page},
                )
                row = rows[0] if rows else None
                held = row.held if row is not None else None
                try:
                    numbers, credits = pages_to_read(
                        row, account_id=account_id, document_id=document_id, spec=spec
                    )
                    pages = pages_of(rows, numbers)
                    if held not in (None, credits):
                        raise RuntimeError(f"held {held} credits for a {credits}-credit request")
                except BaseException:
                    if held is not None:  # the statement held what the checks here refuse
                        await _write(conn, self.release_hold, {"request_id": request_id})
                    raise
                if held is not None:
                    return Held(request_id, document_id, numbers, pages, credits)
                if row.available is None or row.available < credits:
                    raise insufficient(credits, row.available)
                # Not held, though the balance read covered it: a concurrent hold or charge
                # changed it meanwhile; the plain hold below decides.
            else:
                row = next(iter(await _read(conn, self.read_document, key)), None)
                numbers, credits = pages_to_read(
                    row, account_id=account_id, document_id=document_id, spec=spec
                )
                span = key | {"first": min(numbers), "last": max(numbers)}
                pages = pages_of(await _read(conn, self.read_page_span, span), numbers)
            params = hold_params(account_id, request_id, credits)
            if not await _read(conn, self.hold, params):
                available = await _read(conn, self.available, params)
                raise insufficient(credits, available[0][0] if available else None)
        return Held(request_id, document_id, numbers, pages, credits)

    async def store_and_charge(self, record: Classification) -> None:
        params = debit_values(record) | {"c_" + k: v for k, v in result_values(record).items()}
        async with self._connection() as conn:
            if not await _read(conn, self.charge, params):
                raise InsufficientCredits("The account can no longer cover this request.")

    async def release(self, request_id: str) -> None:
        async with self._connection() as conn:
            await _write(conn, self.release_hold, {"request_id": request_id})

    async def close(self) -> None:
        await self.pool.close()
