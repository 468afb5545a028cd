"""Migrations build the schema on SQLite and PostgreSQL alike, from the same database URL setting."""

from sqlalchemy import inspect

from backend.db import async_url, create_engine, sync_url
from backend.migrate import upgrade


def test_plain_urls_get_the_right_drivers():
    assert async_url("sqlite:///./x.db") == "sqlite+aiosqlite:///./x.db"
    assert sync_url("sqlite+aiosqlite:///./x.db") == "sqlite:///./x.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


async def test_migrations_create_every_table(both_databases):
    engine = create_engine(both_databases)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op, as on every restart
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    expected = {
        "account",
        "api_key",
        "ledger_entry",
        "document",
        "page",
        "classification",
        "classifier",
        "classifier_version",
        "example",
        "evaluation",
        "alembic_version",
    }
    assert expected <= tables


def _schema_drift(connection) -> list:  # noqa: ANN001
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import backend.models  # noqa: F401  (registers every table)

    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return [
        diff
        for diff in compare_metadata(context, SQLModel.metadata)
        # Procrastinate's own tables are created by migration 0002 from its shipped schema.
        if not (diff[0] == "remove_table" and diff[1].name.startswith("procrastinate"))
        and not (diff[0] == "remove_index" and diff[1].table.name.startswith("procrastinate"))
    ]


async def test_the_migrations_build_exactly_the_models_tables(both_databases):
    """Every column, index and table of backend/models.py comes from a migration, and nothing
    else: a model change without its migration (or a migration without its model) fails here."""
    engine = create_engine(both_databases)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            drift = await conn.run_sync(_schema_drift)
    finally:
        await engine.dispose()
    assert drift == []
