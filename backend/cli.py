"""`docsift`: the operator's command line (accounts, keys, credits, migrations, running it all)."""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.keys import create_key, revoke_key
from backend.accounts.scopes import SCOPES
from backend.accounts.service import create_account
from backend.billing import ledger
from backend.config import get_settings
from backend.db import create_engine, create_sessionmaker
from backend.documents import crypto
from backend.documents.storage import FileStore
from backend.migrate import upgrade
from backend.models import Account, ApiKey, utcnow

# The checkout the console runs from (`docsift dev` works from any directory).
REPO = Path(__file__).resolve().parent.parent


def _run(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        settings = get_settings()
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            print(f"{key}: {value}")


def cmd_accounts_create(args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        account, plain = await create_account(
            session,
            name=args.name,
            credits=args.credits,
            key_prefix=get_settings().api_key_prefix,
            is_admin=args.admin,
        )
        return {"account_id": account.id, "api_key": plain}

    _print(_run(work), args.json)


def cmd_accounts_list(args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        accounts = (await session.exec(select(Account).order_by(col(Account.created_at)))).all()
        return [
            {"account_id": a.id, "name": a.name, "balance": a.balance, "reserved": a.reserved}
            for a in accounts
        ]

    rows = _run(work)
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['account_id']}  {row['balance']:>10}  {row['name']}")


def cmd_credits_grant(args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        account = await session.get(Account, args.account_id)
        if account is None:
            raise SystemExit(f"no account {args.account_id}")
        await ledger.grant(session, account_id=account.id, amount=args.amount, note=args.note)
        await session.refresh(account)
        return {"account_id": account.id, "balance": account.balance}

    _print(_run(work), args.json)


def cmd_keys_create(args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        account = await session.get(Account, args.account_id)
        if account is None:
            raise SystemExit(f"no account {args.account_id}")
        key, plain = await create_key(
            session,
            account=account,
            prefix=get_settings().api_key_prefix,
            name=args.name,
            is_admin=args.admin,
            scopes=args.scope,
            classifier_ids=args.classifier,
            expires_at=(
                utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
            ),
        )
        return {
            "key_id": key.id,
            "api_key": plain,
            "scopes": key.scopes,
            "classifier_ids": key.classifier_ids,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        }

    _print(_run(work), args.json)


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        key = await session.get(ApiKey, args.key_id)
        if key is None:
            raise SystemExit(f"no key {args.key_id}")
        await revoke_key(session, key)
        return {
            "key_id": key.id,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        }

    _print(_run(work), args.json)


def cmd_encryption_new_key(args: argparse.Namespace) -> None:
    _print({"key": crypto.generate_key()}, args.json)


def cmd_encryption_rotate(args: argparse.Namespace) -> None:
    """Rewrite every stored file with the first key of DOCSIFT_ENCRYPTION_KEY."""
    settings = get_settings()
    try:
        cipher = crypto.Cipher.from_setting(settings.encryption_key)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if cipher is None:
        raise SystemExit("DOCSIFT_ENCRYPTION_KEY is not set: nothing to rotate to.")
    rewritten, current = FileStore(settings.storage_dir, cipher).rotate()
    _print({"rewritten": rewritten, "already_current": current}, args.json)


def cmd_backup(args: argparse.Namespace) -> None:
    from backend.backup import backup

    settings = get_settings()
    manifest = backup(settings.database_url, settings.storage_dir, Path(args.archive))
    _print({"archive": args.archive, **manifest}, args.json)


def cmd_restore(args: argparse.Namespace) -> None:
    from backend.backup import restore

    settings = get_settings()
    try:
        manifest = restore(Path(args.archive), settings.database_url, settings.storage_dir)
    except ValueError as error:
        raise SystemExit(f"restore refused: {error}") from None
    _print({"restored": args.archive, **manifest}, args.json)


def cmd_migrate(_args: argparse.Namespace) -> None:
    async def work(_session: AsyncSession) -> None:
        return None

    _run(work)
    print("database is at the newest schema")


def cmd_worker(args: argparse.Namespace) -> None:
    """Run a queue worker until SIGTERM or Ctrl-C."""
    from backend.worker import main as run_worker

    run_worker(get_settings(), concurrency=args.concurrency)


def _wait_healthy(url: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def cmd_dev(args: argparse.Namespace) -> None:
    """Run API and console together, with a demo account whose key is printed."""
    demo = _run(
        lambda session: create_account(
            session, name="demo", credits=args.credits, key_prefix=get_settings().api_key_prefix
        )
    )
    api_key = demo[1]
    api_url = f"http://{args.host}:{args.port}"
    env = {**os.environ, "DOCSIFT_API_URL": api_url, "DOCSIFT_API_KEY": api_key}
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.asgi:app",
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--no-access-log",  # DocSift logs each request itself, with its request id
            # SIGTERM: requests in flight get this long (README "Data protection").
            "--timeout-graceful-shutdown",
            "30",
        ],
        env=env,
    )
    procs = [api]
    if get_settings().is_postgres:
        # On SQLite the API process runs the queue jobs itself; on PostgreSQL a worker does.
        procs.append(subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], env=env))
    if not _wait_healthy(api_url):
        for proc in procs:
            proc.terminate()
        raise SystemExit("the API did not become healthy")
    if not args.no_console:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(REPO / "frontend" / "streamlit_app.py"),
                    "--server.address",
                    args.host,
                    "--server.port",
                    str(args.console_port),
                    "--server.headless",
                    "true",
                    "--browser.gatherUsageStats",
                    "false",
                    "--client.toolbarMode",
                    "minimal",
                ],
                env=env,
                cwd=REPO,  # .streamlit/config.toml and the `frontend` package, wherever we run
            )
        )
    print("\n" + "=" * 72)
    print(f"DocSift API      {api_url}   (docs: {api_url}/docs)")
    if not args.no_console:
        print(f"DocSift console  http://{args.host}:{args.console_port}")
    print(f"Demo account     {demo[0].id}  ({args.credits} credits)")
    print(f"Demo API key     {api_key}")
    print("=" * 72 + "\n", flush=True)

    def stop(*_: Any) -> None:
        for proc in procs:
            proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docsift", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    accounts = sub.add_parser("accounts", help="create and list accounts").add_subparsers(
        dest="action", required=True
    )
    p = accounts.add_parser("create", help="create an account with credits and a first key")
    p.add_argument("--name", required=True)
    p.add_argument("--credits", type=int, default=0)
    p.add_argument("--admin", action="store_true", help="its key may use the admin routes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_accounts_create)
    p = accounts.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_accounts_list)

    credits = sub.add_parser("credits", help="grant credits").add_subparsers(
        dest="action", required=True
    )
    p = credits.add_parser("grant")
    p.add_argument("account_id")
    p.add_argument("amount", type=int)
    p.add_argument("--note")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_credits_grant)

    keys = sub.add_parser("keys", help="create and revoke API keys").add_subparsers(
        dest="action", required=True
    )
    p = keys.add_parser("create")
    p.add_argument("account_id")
    p.add_argument("--name", default="default")
    p.add_argument("--admin", action="store_true")
    p.add_argument(
        "--scope",
        action="append",
        choices=list(SCOPES),
        help="repeat for each scope (default: every scope but admin; --admin adds admin)",
    )
    p.add_argument("--classifier", action="append", help="limit the key to this classifier id")
    p.add_argument("--expires-in-days", type=float, help="the key stops working after this")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("revoke")
    p.add_argument("key_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_revoke)

    encryption = sub.add_parser(
        "encryption", help="encryption at rest: make a key, rotate stored files to the newest"
    ).add_subparsers(dest="action", required=True)
    p = encryption.add_parser("new-key", help="print a new random key (base64, 32 bytes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_encryption_new_key)
    p = encryption.add_parser(
        "rotate", help="re-encrypt every stored file with the first DOCSIFT_ENCRYPTION_KEY key"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_encryption_rotate)

    p = sub.add_parser("backup", help="write the database and stored files to one archive")
    p.add_argument("archive", help="the .tar.gz to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser(
        "restore", help="restore an archive into an empty database and storage folder"
    )
    p.add_argument("archive")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("worker", help="run a queue worker (batches, evaluations, webhooks)")
    p.add_argument("--concurrency", type=int, help="jobs at a time (DOCSIFT_WORKER_CONCURRENCY)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dev", help="run API + console with a demo account (prints its key)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--console-port", type=int, default=8501)
    p.add_argument("--credits", type=int, default=1000)
    p.add_argument("--no-console", action="store_true")
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
