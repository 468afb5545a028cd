"""Request bodies take numbers and switches as JSON gives them: `true` is not 1, "30" is not 30.
Every route's body is walked (nested models included), so a number or switch added later fails
`test_every_number_and_switch_of_a_body_is_strict` until it is declared strict."""

import typing
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel


def _types(annotation: Any) -> list[Any]:
    """The plain types inside an annotation (`int | None` -> [int, NoneType])."""
    args = typing.get_args(annotation)
    return [t for arg in args for t in _types(arg)] if args else [annotation]


def _scalars(model: type[BaseModel], seen: set[type]) -> list[tuple[str, bool]]:
    """(model.field, strict) for each int, float or bool field of `model` and of the models in it."""
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        for kind in _types(field.annotation):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found += _scalars(kind, seen)
            elif kind in (int, float, bool):
                strict = any(getattr(m, "strict", None) for m in field.metadata)
                found.append((f"{model.__name__}.{name}", strict))
    return found


def test_every_number_and_switch_of_a_body_is_strict(harness):
    seen: set[type] = set()
    fields = []
    for route in iter_route_contexts(harness.app.routes):
        if isinstance(route.original_route, APIRoute) and route.body_field is not None:
            for kind in _types(route.body_field.field_info.annotation):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    fields += _scalars(kind, seen)
    assert len(fields) > 20  # the walk does reach the bodies
    assert [name for name, strict in fields if not strict] == []


async def test_numbers_and_switches_in_bodies_are_not_coerced(harness):
    """`true` is not 1 and "30" is not 30: a body of the wrong type is refused (schemathesis found
    `{"retention_days": true}` accepted as one day), for every integer and switch of a body."""
    tenant = await harness.tenant()
    for body in ({"retention_days": True}, {"retention_days": "30"}, {"retention_days": 30.5}):
        r = await harness.client.put("/v1/account/retention", json=body, headers=tenant.headers)
        assert r.status_code == 400, (body, r.text)
    r = await harness.client.get("/v1/account", headers=tenant.headers)
    assert r.json()["retention_days"] is None  # nothing was set
    schema = [{"label": "a"}, {"label": "b"}]
    for policy in ({"threshold": True}, {"threshold": "0.7"}, {"target_accuracy": True}):
        body = {"name": "c", "classification_schema": schema, "review_policy": policy}
        r = await harness.client.post("/v1/classifiers", json=body, headers=tenant.headers)
        assert r.status_code == 400, (policy, r.text)
    body = {"name": "c", "classification_schema": schema, "review_policy": {"threshold": 1}}
    r = await harness.client.post("/v1/classifiers", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text  # a JSON integer is a number
    for path, body in [
        ("/v1/classify", {"document_id": "x", "classification_schema": [], "multi_label": 1}),
        ("/v1/classify", {"document_id": "x", "classification_schema": [], "permutations": "3"}),
        ("/v1/split", {"document_id": "x", "classifier_id": "c", "create_documents": "yes"}),
        ("/v1/batches", {"document_ids": ["x"], "classifier_id": "c", "webhook_item_events": 1}),
    ]:
        r = await harness.client.post(path, json=body, headers=tenant.headers)
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["error"] == "invalid_request", r.text
