"""`docsift backup` / `docsift restore`: the database and the stored files in one archive.

The archive is a gzipped tar: `manifest.json` (schema revision, row counts), one JSON-lines file
per table under `tables/` and the stored files under `files/`, as stored (still encrypted when
encryption at rest is on: restoring needs the same DOCSIFT_ENCRYPTION_KEY). Rows are written in
a dialect-neutral form, so a SQLite backup restores into PostgreSQL and back.

Consistency: every table is read in one read-only transaction (one snapshot: REPEATABLE READ on
PostgreSQL, one read transaction on SQLite), then the files the snapshot's documents name, and
any others under their account's folders, are copied. A file erased between the snapshot and
the copy (a document deleted during the backup) is listed under `missing_files`.
Not backed up: the task queue's jobs (unfinished batches and evaluations resume from their rows
at start-up) and rate-limit counters.
"""

import asyncio
import base64
import io
import json
import sqlite3
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers every table)
from backend.db import create_engine, ensure_sqlite_dir, is_sqlite, sync_url
from backend.migrate import upgrade

FORMAT = 1
SKIPPED_TABLES = {"rate_limit_hit"}


def _tables() -> list[sa.Table]:
    return [t for t in SQLModel.metadata.sorted_tables if t.name not in SKIPPED_TABLES]


def _encode(column: sa.Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _decode(column: sa.Column, value: Any) -> Any:
    if value is None:
        return None
    kind = column.type.impl if isinstance(column.type, sa.types.TypeDecorator) else column.type
    if isinstance(kind, sa.DateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, sa.LargeBinary):
        return base64.b64decode(value)
    return value


def _revision(conn: Connection) -> str:
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _sqlite_snapshot(database_url: str, folder: Path) -> str:
    """A copy of a SQLite database made by SQLite's online backup (one consistent state, while
    DocSift keeps running); its URL."""
    source = sa.make_url(sync_url(database_url)).database
    copy = folder / "snapshot.db"
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return f"sqlite:///{copy}"


def backup(database_url: str, storage_dir: Path, out: Path) -> dict[str, Any]:
    """Write the archive; returns its manifest."""
    with tempfile.TemporaryDirectory() as folder:
        if is_sqlite(database_url):
            database_url = _sqlite_snapshot(database_url, Path(folder))
        return _backup(database_url, storage_dir, out)


def _backup(database_url: str, storage_dir: Path, out: Path) -> dict[str, Any]:
    engine = sa.create_engine(sync_url(database_url))
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    counts: dict[str, int] = {}
    paths: set[str] = set()
    accounts: set[str] = set()
    try:
        with tarfile.open(out, "w:gz") as tar, engine.connect() as conn:
            with conn.begin():
                revision = _revision(conn)
                for table in _tables():
                    lines = []
                    for row in conn.execute(sa.select(table)).mappings():
                        lines.append(
                            json.dumps(
                                {c.name: _encode(c, row[c.name]) for c in table.columns},
                                default=str,
                            )
                        )
                        if table.name == "document":
                            paths.update(
                                p for p in (row["storage_path"], row["rendition_path"]) if p
                            )
                        if table.name == "account":
                            accounts.add(row["id"])
                    counts[table.name] = len(lines)
                    _add(tar, f"tables/{table.name}.jsonl", "\n".join(lines).encode())
            # Files: every file under the snapshot's accounts (derived page images included).
            root = storage_dir.resolve()
            missing = []
            copied = 0
            for account_id in sorted(accounts):
                folder = root / account_id
                if folder.is_dir():
                    for path in sorted(folder.rglob("*")):
                        if path.is_file() and not path.name.startswith(".upload-"):
                            relative = str(path.relative_to(root))
                            try:
                                tar.add(path, f"files/{relative}")
                                copied += 1
                            except FileNotFoundError:
                                missing.append(relative)
                            paths.discard(relative)
            missing += sorted(p for p in paths if not (root / p).is_file())
            manifest = {
                "format": FORMAT,
                "revision": revision,
                "dialect": engine.dialect.name,
                "created_at": datetime.now().astimezone().isoformat(),
                "rows": counts,
                "files": copied,
                "missing_files": sorted(set(missing)),
            }
            _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
    finally:
        engine.dispose()
    return manifest


def _migrate(database_url: str) -> None:
    async def run() -> None:
        engine = create_engine(database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def restore(archive: Path, database_url: str, storage_dir: Path) -> dict[str, Any]:
    """Restore into an empty database and an empty storage folder; returns the manifest."""
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"Unknown backup format {manifest.get('format')!r}.")
        if storage_dir.exists() and any(storage_dir.iterdir()):
            raise ValueError(f"The storage folder {storage_dir} is not empty.")
        ensure_sqlite_dir(database_url)
        _migrate(database_url)
        engine = sa.create_engine(sync_url(database_url))
        try:
            with engine.begin() as conn:
                if _revision(conn) != manifest["revision"]:
                    raise ValueError(
                        f"The backup is of schema {manifest['revision']}, this DocSift's is "
                        f"{_revision(conn)}: restore with the DocSift version that made it."
                    )
                if conn.execute(sa.text("SELECT count(*) FROM account")).scalar_one():
                    raise ValueError("The database already holds accounts: restore into a new one.")
                for table in _tables():
                    member = tar.extractfile(f"tables/{table.name}.jsonl")
                    text = member.read().decode() if member else ""
                    rows = [json.loads(line) for line in text.splitlines() if line]
                    columns = {c.name: c for c in table.columns}
                    for start in range(0, len(rows), 500):
                        batch = [
                            {k: _decode(columns[k], v) for k, v in row.items() if k in columns}
                            for row in rows[start : start + 500]
                        ]
                        conn.execute(table.insert(), batch)
                    _reset_sequence(conn, table)
        finally:
            engine.dispose()
        storage_dir.mkdir(parents=True, exist_ok=True)
        root = storage_dir.resolve()
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("files/"):
                continue
            target = (root / member.name.removeprefix("files/")).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"Unsafe path in the backup: {member.name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return manifest


def _reset_sequence(conn: Connection, table: sa.Table) -> None:
    """PostgreSQL: integer ids restored explicitly; the next insert continues after them."""
    if conn.dialect.name != "postgresql":
        return
    for column in table.primary_key.columns:
        if isinstance(column.type, sa.Integer) and column.autoincrement in (True, "auto"):
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f'COALESCE((SELECT max("{column.name}") FROM "{table.name}"), 0) + 1, false)'
                )
            )
