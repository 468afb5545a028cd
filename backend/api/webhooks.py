"""Webhooks: the account's URL and signing secret, and the log of every delivery."""

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from backend.api.pagination import PageDep, Paginated, paginate
from backend.deps import CurrentAccount, RequireScope, SessionDep, StateDep
from backend.errors import InvalidRequest, NotFound
from backend.models import Account, WebhookDelivery
from backend.webhooks import delivery as webhook_delivery
from backend.webhooks import service
from backend.webhooks.signing import SIGNATURE_HEADER

router = APIRouter(tags=["webhooks"])
DeliveryId = Annotated[str, Path(max_length=64)]


class WebhookConfigIn(BaseModel):
    url: str | None = Field(
        max_length=service.MAX_URL_CHARS,
        description="Where events are POSTed (a batch's own webhook_url wins); null to clear",
    )


class WebhookConfigOut(BaseModel):
    url: str | None
    secret: str | None = Field(
        description="HMAC-SHA256 key of the signature header; keep it like an API key"
    )
    signature_header: str = SIGNATURE_HEADER


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="Also the event id (`DocSift-Event-Id` header)")
    event_type: str
    batch_id: str | None
    url: str
    status: str = Field(description="pending | succeeded | failed")
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptOut]
    payload: dict[str, Any] = Field(description="The JSON body that was signed and sent")


def _config(account: Account) -> WebhookConfigOut:
    return WebhookConfigOut(url=account.webhook_url, secret=account.webhook_secret)


def _delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=d.id,
        event_type=d.event_type,
        batch_id=d.batch_id,
        url=d.url,
        status=d.status,
        attempts=d.attempts,
        response_status=d.response_status,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        log=[AttemptOut.model_validate(entry) for entry in d.log or []],
        payload=json.loads(d.body),
    )


@router.get("/webhooks", dependencies=[RequireScope("webhooks")])
async def get_webhook_config(account: CurrentAccount) -> WebhookConfigOut:
    """Show the account's webhook URL and signing secret."""
    return _config(account)


@router.put("/webhooks", dependencies=[RequireScope("webhooks")])
async def set_webhook_config(
    body: WebhookConfigIn, account: CurrentAccount, session: SessionDep, state: StateDep
) -> WebhookConfigOut:
    """Set (or clear) the account's webhook URL; a signing secret is created on first use."""
    url = service.check_url(body.url) if body.url else None
    if url:
        await service.check_destination(url, state.settings)
    account.webhook_url = url
    session.add(account)
    await session.flush()
    if url:
        await service.ensure_secret(session, account)
    await session.commit()
    return _config(account)


@router.post("/webhooks/secret", dependencies=[RequireScope("webhooks")])
async def rotate_webhook_secret(account: CurrentAccount, session: SessionDep) -> WebhookConfigOut:
    """Replace the signing secret; every delivery attempt from now on is signed with the new one."""
    await service.rotate_secret(session, account)
    await session.commit()
    return _config(account)


@router.get("/webhooks/deliveries", dependencies=[RequireScope("webhooks")])
async def list_deliveries(
    account: CurrentAccount,
    session: SessionDep,
    page: PageDep,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|failed)$")] = None,
) -> Paginated[DeliveryOut]:
    """List webhook deliveries, newest first, with every attempt."""
    query = select(WebhookDelivery).where(WebhookDelivery.account_id == account.id)
    if batch_id:
        query = query.where(WebhookDelivery.batch_id == batch_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[_delivery_out(d) for d in rows], total=total, limit=page.limit, offset=page.offset
    )


async def _get(session: SessionDep, account_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.account_id != account_id:
        raise NotFound(f"Webhook delivery {delivery_id} not found.")
    return delivery


@router.get("/webhooks/deliveries/{delivery_id}", dependencies=[RequireScope("webhooks")])
async def get_delivery(
    delivery_id: DeliveryId, account: CurrentAccount, session: SessionDep
) -> DeliveryOut:
    """Show one delivery with every attempt."""
    return _delivery_out(await _get(session, account.id, delivery_id))


@router.post(
    "/webhooks/deliveries/{delivery_id}/retry",
    status_code=202,
    dependencies=[RequireScope("webhooks")],
)
async def retry_delivery(
    delivery_id: DeliveryId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> DeliveryOut:
    """Send a failed delivery again, with a fresh set of attempts."""
    delivery = await _get(session, account.id, delivery_id)
    if delivery.status != "failed":
        raise InvalidRequest(
            f"Only a failed delivery can be retried; this one is {delivery.status}."
        )
    await webhook_delivery.redeliver(state, session, delivery)
    try:
        await state.queue.commit(session)
    except BaseException:
        state.queue.discard(session)
        raise
    return _delivery_out(delivery)
