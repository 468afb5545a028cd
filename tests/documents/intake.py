"""Helpers for the intake tests: waiting for a conversion, reading a document's pages."""

import asyncio
import time
from typing import Any

import httpx

from tests.conftest import Tenant

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]
CONVERSION_WAIT_SECONDS = 180.0  # LibreOffice on two shared cores: seconds each, queued one by one


async def wait_until_done(
    client: httpx.AsyncClient,
    tenant: Tenant,
    document_id: str,
    wait: float = CONVERSION_WAIT_SECONDS,
) -> dict[str, Any]:
    """The document once it is no longer `processing`."""
    deadline = time.monotonic() + wait
    while True:
        response = await client.get(f"/v1/documents/{document_id}", headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "processing":
            return body
        assert time.monotonic() < deadline, f"still processing after {wait} s"
        await asyncio.sleep(0.25)


async def page_texts(
    client: httpx.AsyncClient, tenant: Tenant, document: dict[str, Any]
) -> list[str]:
    texts = []
    for n in range(1, document["num_pages"] + 1):
        response = await client.get(
            f"/v1/documents/{document['document_id']}/pages/{n}", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        texts.append(response.json()["text"])
    return texts


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
