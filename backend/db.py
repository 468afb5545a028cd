"""Database engine and sessions. SQLite by default, PostgreSQL through the same URL setting.

Services only flush; a route commits once at its end, so a charge and the result it pays for are
written together or not at all.
"""

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession


def async_url(url: str) -> str:
    """Pick the async driver for a plain database URL (`sqlite:///x.db`, `postgresql://...`)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic, the CLI)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The URL as psycopg's own connections and pools take it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# SQLite has one writer at a time. This process's writers of money (holds, charges) queue here
# and are woken in turn, instead of polling in SQLite's busy handler, which sleeps up to 100 ms
# between tries and leaves the database idle meanwhile.
_WRITE_LOCKS: "weakref.WeakKeyDictionary[Engine, asyncio.Lock]" = weakref.WeakKeyDictionary()
_HELD = "docsift_write_lock"


async def begin_write(session: AsyncSession) -> None:
    """On SQLite: wait for this process's turn as the database's writer, kept until the
    transaction ends (commit or rollback). Elsewhere: nothing. Call it before the transaction's
    first write: a transaction that already wrote holds SQLite's lock, and waiting here for a
    writer that waits for that lock would stall both until the busy timeout."""
    lock = _WRITE_LOCKS.get(session.sync_session.get_bind())  # type: ignore[arg-type]
    if lock is None or _HELD in session.info:
        return
    await lock.acquire()
    session.info[_HELD] = lock
    if not session.in_transaction():
        # Begun now (no I/O yet), so its end, even a rollback before any statement, frees the turn.
        session.sync_session.begin()


@event.listens_for(Session, "after_transaction_end")
def _end_write(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and (lock := session.info.pop(_HELD, None)) is not None:
        lock.release()


def create_engine(
    url: str, *, pool_size: int = 20, max_overflow: int = 40, ping_idle_seconds: float = 10.0
) -> AsyncEngine:
    """pool_size / max_overflow / ping_idle_seconds apply to PostgreSQL (Settings.db_*)."""
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        engine = create_async_engine(
            async_url(url), connect_args={"timeout": 30}, pool_size=20, max_overflow=80
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        _WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
        return engine
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=max_overflow)
    _ping_when_idle(engine, ping_idle_seconds)
    return engine


_IDLE_SINCE = "docsift_idle_since"


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """SQLAlchemy's pool_pre_ping, for connections idle longer than `idle_seconds` only.

    pool_pre_ping pings at every checkout: a round trip to the server before each statement of
    the classify path (two of its five). A connection back in the pool for less than
    `idle_seconds` is used as is; one that died meanwhile (the server restarted) fails its
    statement with a 503 and SQLAlchemy then drops every pooled connection of that age."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(_dbapi_connection, record) -> None:  # noqa: ANN001
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:  # noqa: ANN001
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # just opened, or in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError() from error  # the pool opens a new connection


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def session_scope(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
