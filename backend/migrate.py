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


async def upgrade(engine: AsyncEngine) -> None:
    config = alembic_config()
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, config)
