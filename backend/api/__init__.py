"""One router per resource; this module gathers them."""

from fastapi import FastAPI

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


def include_routes(app: FastAPI) -> None:
    """Every route on the app's own router, one level deep: FastAPI matches an included router by
    walking it (and each router it includes) again per request, so nesting costs per level."""
    app.include_router(health.router)
    for module in (
        classify,  # the hot path first: routes are tried in order
        account,
        models,
        limits,
        documents,
        classifications,
        classifiers,
        evaluations,
        split,
        batches,
        webhooks,
        reviews,
    ):
        app.include_router(module.router, prefix="/v1", responses=ERROR_RESPONSES)
