"""`built_row` (results built as SQLAlchemy builds rows it reads, no change events) gives the
row the table model's constructor gives, and it inserts and reads back the same."""

import pytest

from backend.models import Classification, built_row
from tests.fixtures.db import make_document

VALUES = {
    "id": "r1",
    "account_id": "a1",
    "document_id": "d1",
    "model": "tiny",
    "classification_schema": [{"label": "invoice", "description": "A bill"}],
    "pages_used": [1, 2],
    "classification": "invoice",
    "confidence_scores": {"invoice": 0.9, "letter": 0.1},
    "review_status": "pending",
    "review": {"threshold": 0.8},
}


def test_the_same_row_as_the_constructor():
    built, constructed = built_row(Classification, **VALUES), Classification(**VALUES)
    for name in Classification.model_fields:
        if name != "created_at":  # a default factory: now
            assert getattr(built, name) == getattr(constructed, name), name
    assert built.created_at.tzinfo is not None


def test_values_are_not_shared_between_rows():
    one, two = built_row(Classification, **VALUES), built_row(Classification, **VALUES)
    one.kind = "split"
    assert two.kind == "classify"


def test_a_missing_required_value_is_an_error():
    with pytest.raises(TypeError, match="document_id"):
        built_row(Classification, **{k: v for k, v in VALUES.items() if k != "document_id"})


async def test_it_inserts_and_reads_back(harness):
    tenant = await harness.tenant()
    doc = await make_document(harness, tenant, ["INVOICE"])
    values = VALUES | {"account_id": tenant.account_id, "document_id": doc}
    async with harness.app.state.docsift.sessionmaker() as session:
        session.add(built_row(Classification, **values))
        await session.commit()
    async with harness.app.state.docsift.sessionmaker() as session:
        stored = await session.get(Classification, "r1")
    assert stored is not None
    for name, value in values.items():
        assert getattr(stored, name) == value, name
    assert stored.request_status == "completed" and stored.credits_used == 0
