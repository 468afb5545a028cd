"""The caller's account: balance, usage, ledger, API keys; and operator (admin key) routes."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func
from sqlmodel import col, select

from backend.accounts.keys import create_key, revoke_key
from backend.accounts.scopes import SCOPES, key_scopes
from backend.accounts.service import create_account
from backend.api.pagination import PageDep, Paginated, paginate
from backend.billing import ledger
from backend.deps import AdminKey, CurrentAccount, CurrentKey, RequireScope, SessionDep, SettingsDep
from backend.errors import Forbidden, NotFound
from backend.models import Account, ApiKey, Classification, Classifier, LedgerEntry, utcnow

ScopeName = Literal[tuple(SCOPES)]  # type: ignore[valid-type]

router = APIRouter(tags=["account"])


class UsageByModel(BaseModel):
    model: str
    credits: int
    classifications: int
    pages: int
    image_tokens: int = Field(default=0, description="Prompt tokens of page images sent")


class UsageByDay(BaseModel):
    day: str
    credits: int
    classifications: int
    pages: int


class Usage(BaseModel):
    total_credits: int
    total_classifications: int
    total_pages: int
    by_model: list[UsageByModel]
    by_day: list[UsageByDay]


class AccountOut(BaseModel):
    account_id: str
    name: str
    balance: int
    reserved: int
    available: int
    usage: Usage
    retention_days: int | None = None
    created_at: datetime


class RetentionIn(BaseModel):
    retention_days: int | None = Field(
        strict=True, ge=1, le=36500, description="Erase documents after this many days (null: keep)"
    )


class RetentionOut(BaseModel):
    retention_days: int | None


class LedgerEntryOut(BaseModel):
    id: int
    amount: int
    kind: str
    request_id: str | None
    model: str | None
    pages: int | None
    note: str | None
    created_at: datetime


class KeyOut(BaseModel):
    key_id: str
    name: str
    display_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: list[str]
    classifier_ids: list[str] | None = Field(description="None: every classifier")
    expires_at: datetime | None


class KeyCreated(KeyOut):
    api_key: str = Field(description="The key itself: shown this once, only its hash is stored")


class KeysOut(BaseModel):
    items: list[KeyOut]


class KeyIn(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=100)
    scopes: list[ScopeName] | None = Field(
        default=None,
        max_length=len(SCOPES),
        description="What the key may do (default: every scope the calling key holds)",
    )
    classifier_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=1000, description="Limit the key to these classifiers"
    )
    expires_at: datetime | None = Field(default=None, description="When the key stops working")

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("give a timezone, e.g. 2027-01-01T00:00:00Z")
            if value <= utcnow():
                raise ValueError("must be in the future")
        return value


class AccountIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    credits: int = Field(default=0, strict=True, ge=0, le=10**12)


class AccountCreated(BaseModel):
    account_id: str
    api_key: str


class GrantIn(BaseModel):
    amount: int = Field(strict=True, gt=0, le=10**12)
    note: str | None = Field(default=None, max_length=500)


class GrantOut(BaseModel):
    account_id: str
    balance: int
    entry: LedgerEntryOut


def _key_out(key: ApiKey) -> dict:
    return {
        "key_id": key.id,
        "name": key.name,
        "display_prefix": key.display_prefix,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "scopes": sorted(key_scopes(key), key=list(SCOPES).index),
        "classifier_ids": key.classifier_ids,
        "expires_at": key.expires_at,
    }


async def _check_classifiers(session: SessionDep, account_id: str, ids: list[str]) -> None:
    found = set(
        (
            await session.exec(
                select(Classifier.id).where(
                    Classifier.account_id == account_id, col(Classifier.id).in_(ids)
                )
            )
        ).all()
    )
    unknown = sorted(set(ids) - found)
    if unknown:
        raise NotFound(f"No such classifier: {unknown[0]}.")


def _entry_out(entry: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut.model_validate(entry, from_attributes=True)


async def _usage(session: SessionDep, account_id: str) -> Usage:
    base = select(Classification).where(
        Classification.account_id == account_id, Classification.request_status == "completed"
    )
    sub = base.subquery()
    by_model_rows = (
        await session.exec(
            select(
                sub.c.model,
                func.sum(sub.c.credits_used),
                func.count(),
                func.sum(sub.c.num_pages),
                func.sum(sub.c.image_tokens),
            )
            .group_by(sub.c.model)
            .order_by(sub.c.model)
        )
    ).all()
    day = func.date(sub.c.created_at)
    by_day_rows = (
        await session.exec(
            select(day, func.sum(sub.c.credits_used), func.count(), func.sum(sub.c.num_pages))
            .group_by(day)
            .order_by(day)
        )
    ).all()
    by_model = [
        UsageByModel(
            model=m,
            credits=int(c or 0),
            classifications=int(n),
            pages=int(p or 0),
            image_tokens=int(i or 0),
        )
        for m, c, n, p, i in by_model_rows
    ]
    by_day = [
        UsageByDay(day=str(d), credits=int(c or 0), classifications=int(n), pages=int(p or 0))
        for d, c, n, p in by_day_rows
    ]
    return Usage(
        total_credits=sum(u.credits for u in by_model),
        total_classifications=sum(u.classifications for u in by_model),
        total_pages=sum(u.pages for u in by_model),
        by_model=by_model,
        by_day=by_day,
    )


@router.get("/account", dependencies=[RequireScope("account:read")])
async def get_account(account: CurrentAccount, session: SessionDep) -> AccountOut:
    """Show the credit balance and usage totals."""
    await session.refresh(account)
    return AccountOut(
        account_id=account.id,
        name=account.name,
        balance=account.balance,
        reserved=account.reserved,
        available=account.balance - account.reserved,
        usage=await _usage(session, account.id),
        retention_days=account.retention_days,
        created_at=account.created_at,
    )


@router.put("/account/retention", dependencies=[RequireScope("account:write")])
async def set_retention(
    body: RetentionIn, account: CurrentAccount, session: SessionDep
) -> RetentionOut:
    """Set how long documents are kept: their files, page text and page images are erased this
    many days after upload by the retention job (a classifier's own setting overrides it)."""
    account.retention_days = body.retention_days
    session.add(account)
    await session.commit()
    return RetentionOut(retention_days=account.retention_days)


@router.get("/account/ledger", dependencies=[RequireScope("account:read")])
async def get_ledger(
    account: CurrentAccount, session: SessionDep, page: PageDep
) -> Paginated[LedgerEntryOut]:
    """List every debit and credit, newest first."""
    query = (
        select(LedgerEntry)
        .where(LedgerEntry.account_id == account.id)
        .order_by(col(LedgerEntry.id).desc())
    )
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[_entry_out(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/account/keys", dependencies=[RequireScope("account:read")])
async def list_keys(account: CurrentAccount, session: SessionDep) -> KeysOut:
    """List this account's API keys (never the keys themselves)."""
    keys = (
        await session.exec(
            select(ApiKey).where(ApiKey.account_id == account.id).order_by(col(ApiKey.created_at))
        )
    ).all()
    return KeysOut(items=[KeyOut(**_key_out(k)) for k in keys])


@router.post("/account/keys", status_code=201, dependencies=[RequireScope("keys:write")])
async def create_api_key(
    body: KeyIn,
    caller: CurrentKey,
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
) -> KeyCreated:
    """Create an API key; the response is the only time it is shown.

    A key never makes a stronger key: the new one's scopes, classifiers and expiry stay within
    the calling key's."""
    held = key_scopes(caller)
    scopes = list(body.scopes) if body.scopes is not None else sorted(held)
    if not set(scopes) <= held:
        missing = ", ".join(sorted(set(scopes) - held))
        raise Forbidden(f"The calling key does not hold the scope(s) it would grant: {missing}.")
    classifier_ids = body.classifier_ids
    if caller.classifier_ids is not None and (
        classifier_ids is None or not set(classifier_ids) <= set(caller.classifier_ids)
    ):
        raise Forbidden("The calling key is limited to some classifiers; so is any key it makes.")
    if classifier_ids:
        await _check_classifiers(session, account.id, classifier_ids)
    expires_at = body.expires_at
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        expires_at = caller.expires_at
    key, plain = await create_key(
        session,
        account=account,
        prefix=settings.api_key_prefix,
        name=body.name,
        is_admin=caller.is_admin and "admin" in scopes,
        scopes=scopes,
        classifier_ids=classifier_ids,
        expires_at=expires_at,
    )
    await session.commit()
    return KeyCreated(**_key_out(key), api_key=plain)


@router.delete("/account/keys/{key_id}", dependencies=[RequireScope("keys:write")])
async def revoke_api_key(
    key_id: Annotated[str, Path(max_length=64)], account: CurrentAccount, session: SessionDep
) -> KeyOut:
    """Revoke an API key at once."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.account_id != account.id:
        raise NotFound("No such API key.")
    await revoke_key(session, key)
    await session.commit()
    return KeyOut(**_key_out(key))


@router.post(
    "/admin/accounts", status_code=201, tags=["admin"], dependencies=[RequireScope("admin")]
)
async def admin_create_account(
    body: AccountIn, _admin: AdminKey, session: SessionDep, settings: SettingsDep
) -> AccountCreated:
    """Create an account with an opening grant and its first key (admin key only)."""
    account, plain = await create_account(
        session, name=body.name, credits=body.credits, key_prefix=settings.api_key_prefix
    )
    await session.commit()
    return AccountCreated(account_id=account.id, api_key=plain)


@router.post(
    "/admin/accounts/{account_id}/credits",
    status_code=201,
    tags=["admin"],
    dependencies=[RequireScope("admin")],
)
async def admin_grant_credits(
    account_id: Annotated[str, Path(max_length=64)],
    body: GrantIn,
    _admin: AdminKey,
    session: SessionDep,
) -> GrantOut:
    """Grant credits to an account (admin key only)."""
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("No such account.")
    entry = await ledger.grant(session, account_id=account.id, amount=body.amount, note=body.note)
    await session.commit()
    await session.refresh(account)
    return GrantOut(account_id=account.id, balance=account.balance, entry=_entry_out(entry))
