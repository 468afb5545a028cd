"""Bring a database to the newest schema with Alembic (run at start-up and by `docsift migrate`)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade_on(connection, config: Config) -> None:  # noqa: ANN001
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


# Any constant: the key of the PostgreSQL advisory lock migrations hold.
MIGRATION_LOCK = 7_301_185_513


async def upgrade(engine: AsyncEngine) -> None:
    config = alembic_config()
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several API and worker processes start at once: one migrates, the others wait
            # and then find the schema at head (the lock ends with the transaction).
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        await connection.run_sync(_upgrade_on, config)
