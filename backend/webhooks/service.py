"""Webhook configuration and events: URL checks, the per-account secret, recording an event.

An event is recorded as a `webhook_delivery` row in the same transaction as the fact it reports
(the outbox pattern), with a unique `event_key` per fact, and its delivery job is enqueued in
that transaction too: an event exists exactly when its fact was committed, and only once.
"""

import asyncio
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings
from backend.errors import InvalidRequest
from backend.models import Account, WebhookDelivery, new_id
from backend.webhooks.signing import new_secret

MAX_URL_CHARS = 2000


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, or InvalidRequest."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook_url must be an absolute http:// or https:// URL.")
    return url


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast


async def check_destination(url: str, settings: Settings) -> None:
    """With DOCSIFT_WEBHOOK_BLOCK_PRIVATE_NETWORKS, refuse hosts that resolve to a loopback,
    private or link-local address (checked when the URL is set and before every attempt)."""
    if not settings.webhook_block_private_networks:
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, None)
    except OSError as error:
        raise InvalidRequest(f"The webhook host {host} does not resolve.") from error
    if any(_is_private(str(info[4][0]).split("%")[0]) for info in infos):
        raise InvalidRequest("Webhook URLs may not point to private or loopback addresses.")


async def ensure_secret(session: AsyncSession, account: Account) -> str:
    """The account's signing secret, created on first need (conditionally: concurrent requests
    end up with the same one)."""
    if account.webhook_secret:
        return account.webhook_secret
    await session.execute(
        update(Account)
        .where(Account.id == account.id, col(Account.webhook_secret).is_(None))
        .values(webhook_secret=new_secret())
    )
    await session.refresh(account)
    assert account.webhook_secret
    return account.webhook_secret


async def rotate_secret(session: AsyncSession, account: Account) -> str:
    """A new secret; every delivery attempt from now on is signed with it."""
    account.webhook_secret = new_secret()
    session.add(account)
    await session.flush()
    return account.webhook_secret


async def record_event(
    session: AsyncSession,
    *,
    account_id: str,
    url: str,
    event_type: str,
    event_key: str,
    data: dict[str, Any],
    batch_id: str | None = None,
) -> WebhookDelivery:
    """Store an event for delivery (flushes only: it counts when the caller commits)."""
    delivery_id = new_id()
    body = json.dumps(
        {"id": delivery_id, "type": event_type, "created": int(time.time()), "data": data},
        separators=(",", ":"),
        default=lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value),
    )
    delivery = WebhookDelivery(
        id=delivery_id,
        account_id=account_id,
        event_key=event_key,
        event_type=event_type,
        batch_id=batch_id,
        url=url,
        body=body,
    )
    session.add(delivery)
    await session.flush()
    return delivery
