"""Delivering webhook events: one queue job per event, retried with exponential backoff.

Each attempt is signed afresh (new timestamp, the account's current secret) and logged on the
delivery row, committed at once so `GET /v1/webhooks/deliveries` shows retries as they happen.
A job killed between attempts is retried by another worker and goes on from the attempts
already logged. Delivery is at least once: a receiver dedupes on `DocSift-Event-Id` (a worker
could die after the receiver answered and before the success was written).
"""

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_any

from backend.config import Settings
from backend.errors import ApiError
from backend.models import Account, WebhookDelivery, utcnow
from backend.queue import task
from backend.state import AppState
from backend.webhooks.service import check_destination, record_event
from backend.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

log = logging.getLogger(__name__)
DELIVER_TASK = "docsift.webhooks.deliver"
LOG_ENTRIES = 20  # attempts kept on a delivery row
INLINE_WAIT_SECONDS = 30.0
CLAIM_MARGIN_SECONDS = 30.0


class DeliveryFailed(Exception):
    pass


def _lock(delivery_id: str) -> str:
    # One job at a time per delivery, even if a stalled one is retried while it still runs.
    return f"webhook:{delivery_id}"


async def enqueue(
    state: AppState, session: AsyncSession, deliveries: list[WebhookDelivery]
) -> None:
    """Enqueue delivery jobs in `session`'s transaction (the one that recorded the events)."""
    for delivery in deliveries:
        await state.queue.enqueue(
            session, DELIVER_TASK, [{"delivery_id": delivery.id}], lock=_lock(delivery.id)
        )


async def send(
    state: AppState,
    session: AsyncSession,
    *,
    account_id: str,
    url: str,
    event_type: str,
    event_key: str,
    data: dict[str, Any],
    batch_id: str | None = None,
) -> WebhookDelivery:
    """Record an event and enqueue its delivery, both in `session`'s transaction: the event
    exists exactly when the change it reports is committed."""
    delivery = await record_event(
        session,
        account_id=account_id,
        url=url,
        event_type=event_type,
        event_key=event_key,
        data=data,
        batch_id=batch_id,
    )
    await enqueue(state, session, [delivery])
    return delivery


def backoff(settings: Settings, attempts_made: int) -> float:
    """Seconds before the next attempt: doubling from the first backoff, capped, with jitter."""
    base = settings.webhook_backoff_seconds * 2 ** max(0, attempts_made - 1)
    jitter = random.uniform(0, settings.webhook_backoff_seconds)
    return min(settings.webhook_max_backoff_seconds, base) + jitter


@task(DELIVER_TASK, retries=3)
async def deliver(state: AppState, delivery_id: str) -> None:
    settings = state.settings
    async with state.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        done_before = delivery.attempts
    remaining = settings.webhook_max_attempts - done_before
    if remaining > 0:
        # Short waits are slept here; a longer one frees the worker (see _schedule_next).
        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(remaining), lambda rs: rs.upcoming_sleep > INLINE_WAIT_SECONDS
            ),
            wait=lambda rs: backoff(settings, done_before + rs.attempt_number),
            retry=retry_if_exception_type(DeliveryFailed),
            reraise=True,
        )
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        ) as client:
            try:
                async for attempt in retrying:
                    with attempt:
                        await _attempt(state, client, delivery_id)
                return
            except DeliveryFailed:
                pass
    await _schedule_next(state, delivery_id)


async def _schedule_next(state: AppState, delivery_id: str) -> None:
    """After failed attempts: a job for the next one, later, or the delivery fails for good."""
    async with state.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        if delivery.attempts >= state.settings.webhook_max_attempts:
            delivery.status = "failed"
            session.add(delivery)
        else:
            await state.queue.enqueue(
                session,
                DELIVER_TASK,
                [{"delivery_id": delivery_id}],
                lock=_lock(delivery_id),
                schedule_in=backoff(state.settings, delivery.attempts),
            )
        await state.queue.commit(session)


async def _attempt(state: AppState, client: httpx.AsyncClient, delivery_id: str) -> None:
    """One signed POST, logged on the row; raises DeliveryFailed unless the receiver said 2xx."""
    async with state.sessionmaker() as session:
        # Claim the attempt: a job retried while its first run is in fact still alive (a worker
        # only slow to send heartbeats) must not POST the same event at the same time. A claim
        # left by a dead run expires after the request timeout.
        now = utcnow()
        lease = timedelta(seconds=state.settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS)
        claimed = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,  # type: ignore[arg-type]
                WebhookDelivery.status == "pending",  # type: ignore[arg-type]
                or_(
                    col(WebhookDelivery.claimed_until).is_(None),
                    col(WebhookDelivery.claimed_until) < now,
                ),
            )
            .values(claimed_until=now + lease)
        )
        await session.commit()
        if claimed.rowcount != 1:
            return  # delivered, failed, or being attempted by another run right now
        delivery = await session.get(WebhookDelivery, delivery_id)
        account = await session.get(Account, delivery.account_id) if delivery else None
        assert delivery is not None and account is not None
        url, body, event_type = delivery.url, delivery.body.encode(), delivery.event_type
        secret = account.webhook_secret or ""
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        await check_destination(url, state.settings)
        response = await client.post(
            url,
            content=body,
            headers={
                "content-type": "application/json",
                "user-agent": "DocSift-Webhooks/1",
                SIGNATURE_HEADER: sign(secret, body),
                EVENT_ID_HEADER: delivery_id,
                EVENT_TYPE_HEADER: event_type,
            },
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    except ApiError as exc:  # the destination is not allowed
        error = exc.message
    ok = error is None
    async with state.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts += 1
        delivery.claimed_until = None
        delivery.response_status, delivery.last_error = status, error
        entry = {
            "attempt": delivery.attempts,
            "at": utcnow().isoformat(),
            "status_code": status,
            "error": error,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        delivery.log = [*delivery.log, entry][-LOG_ENTRIES:]
        if ok:
            delivery.status, delivery.delivered_at = "succeeded", utcnow()
        session.add(delivery)
        await session.commit()
    if not ok:
        log.info("webhook %s attempt %s failed: %s", delivery_id, entry["attempt"], error)
        raise DeliveryFailed(error)


async def redeliver(state: AppState, session: AsyncSession, delivery: WebhookDelivery) -> None:
    """Send a failed event again, with a fresh budget of attempts (the log is kept)."""
    delivery.status, delivery.attempts, delivery.claimed_until = "pending", 0, None
    session.add(delivery)
    await session.flush()
    await enqueue(state, session, [delivery])


async def resume(state: AppState) -> int:
    """Defer the pending deliveries again (the in-memory broker lost its jobs with its process)."""
    async with state.sessionmaker() as session:
        pending = (
            await session.exec(
                select(WebhookDelivery.id).where(WebhookDelivery.status == "pending")
            )
        ).all()
    for delivery_id in pending:
        await state.queue.defer(
            DELIVER_TASK, [{"delivery_id": delivery_id}], lock=_lock(delivery_id)
        )
    return len(pending)


async def resume_orphans(state: AppState) -> int:
    """Pending deliveries that no job will take (a worker died between a failed attempt and
    scheduling the next): defer them again. Run by the periodic recovery job."""
    quiet_for = timedelta(seconds=state.settings.webhook_max_backoff_seconds + 120)
    async with state.sessionmaker() as session:
        candidates = (
            await session.exec(
                select(WebhookDelivery).where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.created_at < utcnow() - quiet_for,
                )
            )
        ).all()
    resumed = 0
    for delivery in candidates:
        last = datetime.fromisoformat(delivery.log[-1]["at"]) if delivery.log else None
        if last is not None and last > utcnow() - quiet_for:
            continue
        if await state.queue.has_unfinished_job(DELIVER_TASK, _lock(delivery.id)):
            continue
        await state.queue.defer(
            DELIVER_TASK, [{"delivery_id": delivery.id}], lock=_lock(delivery.id)
        )
        resumed += 1
    return resumed
