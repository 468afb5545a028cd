"""Liveness: no key needed."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.observability import REGISTRY

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Report that the service is up."""
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics: requests, latencies, model calls, tokens, credits."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
