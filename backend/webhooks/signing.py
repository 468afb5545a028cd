"""Webhook signatures, as Stripe makes them.

Each request carries `DocSift-Signature: t=<unix seconds>,v1=<hex>`, where the hex digest is
HMAC-SHA256 with the account's webhook secret over `<t>.<raw body>`. A receiver recomputes it
over the raw bytes it received, compares in constant time, and refuses a timestamp older than a
few minutes, so a captured request cannot be replayed later. `verify` does all three.
"""

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "DocSift-Signature"
EVENT_ID_HEADER = "DocSift-Event-Id"
EVENT_TYPE_HEADER = "DocSift-Event-Type"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the signature header for `body` sent at `timestamp` (now by default)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether `header` is a valid, recent signature of `body` with `secret`."""
    if not header:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
