"""One router per resource; this module gathers them."""

from fastapi import APIRouter

from backend.api import (
    account,
    batches,
    classifications,
    classifiers,
    classify,
    documents,
    evaluations,
    health,
    limits,
    models,
    reviews,
    split,
    webhooks,
)
from backend.errors import ERROR_RESPONSES

api_router = APIRouter()
api_router.include_router(health.router)

v1 = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
for module in (
    account,
    models,
    limits,
    documents,
    classify,
    classifications,
    classifiers,
    evaluations,
    split,
    batches,
    webhooks,
    reviews,
):
    v1.include_router(module.router)
api_router.include_router(v1)
