"""A live DocSift server on 127.0.0.1 (uvicorn in a thread) for black-box tests."""

import asyncio

import pytest

from backend.accounts.service import create_account
from backend.backends.fake import FunctionBackend
from backend.backends.registry import BackendRegistry
from backend.db import create_engine, create_sessionmaker
from backend.main import create_app
from backend.migrate import upgrade
from tests.conftest import make_settings
from tests.served import serve_in_thread


async def _accounts(url: str, n: int) -> list[str]:
    engine = create_engine(url)
    await upgrade(engine)
    keys = []
    async with create_sessionmaker(engine)() as session:
        for i in range(n):
            _, key = await create_account(session, name=f"t{i}", credits=10**9, key_prefix="dsk_")
            keys.append(key)
        await session.commit()
    await engine.dispose()
    return keys


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """(base_url, [api keys])"""
    folder = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{folder / 'live.db'}"
    keys = asyncio.run(_accounts(url, 2))
    settings = make_settings(url, folder)
    app = create_app(settings, backends=BackendRegistry([FunctionBackend()]))
    served = serve_in_thread(app)
    yield served.url, keys
    served.stop()
