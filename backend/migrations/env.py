"""Alembic environment: runs on a connection handed over by DocSift, or on the settings' URL."""

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers the tables)
from backend.config import get_settings
from backend.db import ensure_sqlite_dir, sync_url

target_metadata = SQLModel.metadata


def run_migrations_on(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations_on(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    ensure_sqlite_dir(url)
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        run_migrations_on(conn)
    engine.dispose()
