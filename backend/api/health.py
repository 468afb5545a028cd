"""Liveness: no key needed."""

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Report that the service is up."""
    return {"status": "ok"}
