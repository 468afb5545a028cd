"""classify_pages guards every backend: answers must be distributions over exactly the labels,
and no backend (plugins included) can fail with a 500 or hold a request past the total timeout."""

import asyncio
import math

import pytest

from backend.backends.base import ClassifyResult, LabelSpec
from backend.backends.fake import FunctionBackend
from backend.classification.engine import classify_pages
from backend.classification.spec import inline_spec
from backend.errors import InvalidRequest, ModelError
from tests.conftest import make_settings, start_harness
from tests.fixtures.db import make_document

LABELS = [LabelSpec("w9", "IRS form"), LabelSpec("invoice", "a bill"), LabelSpec("other", "")]


class Hangs(FunctionBackend):
    async def classify(self, request):
        await asyncio.Event().wait()


class Raises(FunctionBackend):
    async def classify(self, request):
        raise RuntimeError("plugin bug")


def refuse(_request):
    raise InvalidRequest("too many labels for me")


@pytest.fixture
async def app(database_url, tmp_path):
    answers = {
        "fake": lambda r: {"w9": 0.5, "invoice": 0.3, "other": 0.2},
        "unnormalized": lambda r: {"w9": 2.0, "invoice": 1.0, "other": 1.0},
        "missing": lambda r: {"w9": 0.6, "invoice": 0.4},
        "extra": lambda r: {"w9": 0.5, "invoice": 0.3, "other": 0.1, "refund": 0.1},
        "nan": lambda r: {"w9": math.nan, "invoice": 0.5, "other": 0.5},
        "negative": lambda r: {"w9": 1.2, "invoice": -0.2, "other": 0.0},
        "zeros": lambda r: {"w9": 0.0, "invoice": 0.0, "other": 0.0},
        "refuses": refuse,
        "method": lambda r: ClassifyResult(
            scores={"w9": 0.1, "invoice": 0.1, "other": 0.8}, confidence_method="custom"
        ),
    }
    backends = [
        FunctionBackend(answer, model_names=(name,)) for name, answer in answers.items()
    ] + [Hangs(model_names=("hangs",)), Raises(model_names=("raises",))]
    settings = make_settings(database_url, tmp_path, model_total_timeout_seconds=0.5)
    async for harness in start_harness(settings, backends):
        yield harness


async def scores(app, model, pages=()):
    state = app.app.state.docsift
    return await classify_pages(state, inline_spec(state, labels=LABELS, model=model), list(pages))


async def test_scores_are_rounded_and_the_backend_sees_the_pages(app):
    result = await scores(app, "fake", [(2, "two"), (3, "three")])
    assert result.scores == {"w9": 0.5, "invoice": 0.3, "other": 0.2}
    backend = app.app.state.docsift.backends.resolve("fake")[0]
    assert backend.calls[-1].pages == ["two", "three"] and backend.calls[-1].page_numbers == [2, 3]
    unnormalized = await scores(app, "unnormalized")
    assert unnormalized.scores == {"w9": 0.5, "invoice": 0.25, "other": 0.25}
    custom = await scores(app, "method")
    assert custom.confidence_method == "custom" and custom.label == "other"


@pytest.mark.parametrize(
    "model", ["missing", "extra", "nan", "negative", "zeros", "hangs", "raises"]
)
async def test_a_bad_answer_or_failure_is_a_model_error(app, model):
    with pytest.raises(ModelError):
        await scores(app, model, [(1, "x")])


async def test_a_backend_refusal_keeps_its_own_status(app):
    with pytest.raises(InvalidRequest, match="too many labels"):
        await scores(app, "refuses")


@pytest.mark.parametrize("model", ["hangs", "raises", "nan"])
async def test_through_http_a_failing_backend_is_502_and_free(app, model):
    tenant = await app.tenant(credits=5)
    doc = await make_document(app, tenant, ["a", "b"])
    body = {
        "document_id": doc,
        "classification_schema": [{"label": s.label, "description": s.description} for s in LABELS],
        "query_model": model,
    }
    response = await app.client.post("/v1/classify", json=body, headers=tenant.headers)
    assert response.status_code == 502 and response.json()["error"] == "model_error"
    assert "plugin bug" not in response.text  # a plugin's own error text stays in the log
    account = (await app.client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 5 and account["reserved"] == 0
