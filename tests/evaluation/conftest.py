"""Evaluation fixtures: a keyword fake model, a small labelled set, waiting for a run to end."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from backend.backends.fake import FunctionBackend
from tests.evaluation.helpers import keyword_answer
from tests.fixtures.db import make_document


@pytest.fixture
def fake_backend() -> FunctionBackend:
    return FunctionBackend(keyword_answer)


WaitDone = Callable[..., Awaitable[dict]]


@pytest.fixture
def wait_done(client) -> WaitDone:
    """Poll GET /v1/evaluations/{id} until the run ends (or `until` holds); returns the body."""

    async def wait(tenant, evaluation_id, until=None, seconds=20.0) -> dict:
        until = until or (lambda body: body["status"] in ("completed", "failed"))
        for _ in range(int(seconds / 0.02)):
            response = await client.get(f"/v1/evaluations/{evaluation_id}", headers=tenant.headers)
            body = response.json()
            if until(body):
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"evaluation never reached the state: {body}")

    return wait


@pytest.fixture
def labelled_set(harness) -> Callable[..., Awaitable[list[dict]]]:
    """Eight documents (12 pages): four 2-page invoices, a receipt labelled other, three letters."""

    async def make(tenant) -> list[dict]:
        items = [
            {
                "document_id": await make_document(harness, tenant, [f"invoice {i}", "page 2"]),
                "expected_label": "invoice",
            }
            for i in range(4)
        ]
        items.append(
            {
                "document_id": await make_document(harness, tenant, ["a receipt"]),
                "expected_label": "other",
            }
        )
        items += [
            {
                "document_id": await make_document(harness, tenant, [f"letter {i}"]),
                "expected_label": "other",
            }
            for i in range(3)
        ]
        return items

    return make
