"""FastAPI dependencies, as Annotated aliases routes can declare in one word."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.keycache import KeyCache
from backend.accounts.scopes import SCOPES, classifier_allowed, key_scopes
from backend.backends.registry import BackendRegistry
from backend.config import Settings
from backend.errors import Forbidden, InvalidApiKey
from backend.models import Account, ApiKey
from backend.state import AppState

_NO_CACHE = KeyCache(0)
api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, description="Your DocSift API key"
)


# Dependencies are coroutines, even trivial ones: FastAPI runs a plain `def` dependency in a
# thread pool, a thread hop per request each (measured: 4% of a classify request's CPU).
async def get_state(request: Request) -> AppState:
    return app_state(request)


def app_state(request: Request) -> AppState:
    """The running app's state, for a hot route that spares itself the StateDep dependency."""
    return request.app.state.docsift


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_backends(state: StateDep) -> BackendRegistry:
    return state.backends


async def get_sessionmaker(state: StateDep) -> async_sessionmaker[AsyncSession]:
    return state.sessionmaker


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[BackendRegistry, Depends(get_backends)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_current_key(
    request: Request, api_key: str | None = Security(api_key_header)
) -> ApiKey:
    if not api_key:
        raise InvalidApiKey("Missing API key: send it in the x-api-key header.")
    state: AppState = request.app.state.docsift
    # Cached per process for a few seconds (see backend/accounts/keycache.py).
    key = await (state.key_cache or _NO_CACHE).authenticate(state.sessionmaker, api_key)
    if key is None:
        raise InvalidApiKey("Invalid, revoked or expired API key.")
    await state.rate_limiter.hit(key.id)
    if state.key_usage is not None:
        state.key_usage.touch(key.id)
    request.state.account = None  # read in the request's session when a route needs it
    request.state.api_key = key
    return key


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


async def get_current_account(request: Request, key: CurrentKey, session: SessionDep) -> Account:
    account = request.state.account
    if account is None:
        account = await session.get(Account, key.account_id)
        if account is None:  # deleted since the key was cached
            raise InvalidApiKey("Invalid or revoked API key.")
        request.state.account = account
    return account


CurrentAccount = Annotated[Account, Depends(get_current_account)]


async def require_admin(key: CurrentKey) -> ApiKey:
    if not key.is_admin or "admin" not in key_scopes(key):
        raise Forbidden("This operation needs an admin key.")
    return key


AdminKey = Annotated[ApiKey, Depends(require_admin)]


# Scopes: a route says what it needs with `dependencies=[RequireScope("reviews")]` (or
# `RequireKey()` when any valid key may call it); tests/security/test_scopes.py walks every route
# of the app and fails for one that declares neither, so a new router cannot forget it.


def check_classifier(request: Request, classifier_id: str | None) -> None:
    """Refuse a classifier (or an ad-hoc schema) outside the calling key's classifiers."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    if key is not None and not classifier_allowed(key, classifier_id):
        if classifier_id is None:
            raise Forbidden("This API key is limited to some classifiers: give a classifier_id.")
        raise Forbidden("This API key may not use this classifier.")


class ScopeCheck:
    """The dependency behind RequireScope; `scope` None means any valid key."""

    def __init__(self, scope: str | None) -> None:
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"Unknown scope {scope!r}")
        self.scope = scope

    async def __call__(self, request: Request, key: CurrentKey) -> ApiKey:
        if self.scope is not None and self.scope not in key_scopes(key):
            raise Forbidden(f"This API key lacks the '{self.scope}' scope.")
        if "classifier_id" in request.path_params:
            check_classifier(request, request.path_params["classifier_id"])
        return key

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


def RequireScope(scope: str) -> Any:  # noqa: N802  (reads as a marker in route declarations)
    """`dependencies=[RequireScope("reviews")]`: the route needs a key holding that scope."""
    return Depends(ScopeCheck(scope))


def RequireKey() -> Any:  # noqa: N802
    """Any valid key may call the route (e.g. listing models); still an explicit declaration."""
    return Depends(ScopeCheck(None))
