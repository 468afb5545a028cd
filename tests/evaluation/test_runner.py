"""The background run: progress visible while it runs, failures contained, runs resumed after a
restart (or failed when they cannot be)."""

import asyncio

import pytest

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, ModelInfo
from backend.evaluation import runner
from backend.models import Evaluation, EvaluationItem
from tests.conftest import start_harness
from tests.evaluation.helpers import SCHEMA, keyword_answer
from tests.fixtures.db import make_document


class GatedBackend(Backend):
    """Answers like the keyword fake, but documents saying 'slow' wait for the gate to open."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[str] = []

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("gated", "gated", credits_per_page=1, confidence_method="function")]

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        self.calls.append(request.pages[0])
        if "slow" in request.pages[0]:
            await self.gate.wait()
        return ClassifyResult(scores=keyword_answer(request), confidence_method="function")


@pytest.fixture
def gated() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
def extra_backends(gated):
    return [gated]


async def _start(client, harness, tenant, texts: list[str]) -> str:
    items = [
        {"document_id": await make_document(harness, tenant, [text]), "expected_label": "invoice"}
        for text in texts
    ]
    response = await client.post(
        "/v1/evaluations",
        json={"classification_schema": SCHEMA, "query_model": "gated", "items": items},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    return response.json()["evaluation_id"]


async def test_progress_is_visible_and_billed_while_the_run_goes(
    client, harness, tenant, gated, wait_done
):
    evaluation_id = await _start(
        client, harness, tenant, ["invoice 1", "slow invoice", "invoice 3", "a letter"]
    )
    # the slow item has reached the model (so its credits are held) and the others are done
    midway = await wait_done(
        tenant, evaluation_id, until=lambda b: b["done"] == 3 and "slow invoice" in gated.calls
    )
    assert midway["status"] == "running" and midway["metrics"] is None
    assert sorted(i["status"] for i in midway["items"]) == ["completed"] * 3 + ["pending"]
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 997 and account["reserved"] == 1  # the slow one's hold
    gated.gate.set()
    body = await wait_done(tenant, evaluation_id)
    assert body["status"] == "completed" and body["done"] == 4
    assert body["metrics"]["accuracy"] == 0.75


async def test_a_stopped_run_resumes_where_it_was(settings, fake_backend, gated):
    """Shutdown stops the queue worker with a run in flight (its job is aborted, the run stays
    `running`, the item at the model is not charged); the next start finishes it."""

    async def state_of(h, tenant, evaluation_id, until) -> dict:
        for _ in range(1000):
            body = (
                await h.client.get(f"/v1/evaluations/{evaluation_id}", headers=tenant.headers)
            ).json()
            if until(body):
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"evaluation never reached the state: {body}")

    async for first in start_harness(settings, [fake_backend, gated]):
        tenant = await first.tenant()
        evaluation_id = await _start(first.client, first, tenant, ["invoice 1", "slow invoice"])
        await state_of(
            first,
            tenant,
            evaluation_id,
            lambda b: b["done"] == 1 and "slow invoice" in gated.calls,
        )
    # The process stopped; the next one takes the run up again (the slow item waits once more).
    async for second in start_harness(settings, [fake_backend, gated]):
        stopped = await state_of(
            second, tenant, evaluation_id, lambda b: gated.calls.count("slow invoice") == 2
        )
        assert stopped["status"] == "running" and stopped["done"] == 1
        account = (await second.client.get("/v1/account", headers=tenant.headers)).json()
        # nothing charged for the aborted attempt; the resumed one holds its credit
        assert account["balance"] == 999 and account["reserved"] == 1
        gated.gate.set()
        body = await state_of(second, tenant, evaluation_id, lambda b: b["status"] == "completed")
        assert body["done"] == 2
        assert body["metrics"]["n"] == 2 and body["metrics"]["credits"] == 2
        # the finished item was not classified again
        assert gated.calls.count("invoice 1") == 1


async def test_the_lifespan_resumes_runs_a_dead_process_left(harness, tenant, gated, settings):
    maker = harness.app.state.docsift.sessionmaker
    done_doc = await make_document(harness, tenant, ["invoice done"])
    todo_doc = await make_document(harness, tenant, ["invoice todo"])
    async with maker() as session:
        evaluation = Evaluation(
            account_id=tenant.account_id,
            classification_schema=SCHEMA,
            query_model="gated",
            status="running",
            total=2,
            done=1,
        )
        session.add(evaluation)
        await session.flush()
        session.add(
            EvaluationItem(
                evaluation_id=evaluation.id,
                position=0,
                document_id=done_doc,
                expected_label="invoice",
                predicted_label="other",
                confidence_scores={"invoice": 0.2, "other": 0.8},
                status="completed",
                credits_used=1,
            )
        )
        session.add(
            EvaluationItem(
                evaluation_id=evaluation.id,
                position=1,
                document_id=todo_doc,
                expected_label="invoice",
            )
        )
        stale = Evaluation(
            account_id=tenant.account_id,
            classification_schema=SCHEMA,
            query_model="a-model-no-longer-served",
            status="queued",
            total=0,
        )
        session.add(stale)
        await session.commit()
        evaluation_id, stale_id = evaluation.id, stale.id
    async for second in start_harness(settings, [gated]):  # a new process on the same database
        for _ in range(500):
            async with maker() as session:
                resumed = await session.get(Evaluation, evaluation_id)
                failed = await session.get(Evaluation, stale_id)
            if resumed.status == "completed" and failed.status == "failed":
                break
            await asyncio.sleep(0.02)
        assert second.app.state.docsift is not harness.app.state.docsift
    assert resumed.status == "completed" and resumed.done == 2
    assert resumed.metrics["n"] == 2 and resumed.metrics["accuracy"] == 0.5
    assert gated.calls == ["invoice todo"]
    assert failed.status == "failed" and "a-model-no-longer-served" in failed.error


async def test_an_unexpected_error_fails_only_its_item(
    client, harness, tenant, monkeypatch, wait_done
):
    real = runner.run_classification
    broken = await make_document(harness, tenant, ["invoice broken"])

    async def flaky(session, state, spec, **kwargs):
        if kwargs["document_id"] == broken:
            raise RuntimeError("disk on fire")
        return await real(session, state, spec, **kwargs)

    monkeypatch.setattr(runner, "run_classification", flaky)
    fine = await make_document(harness, tenant, ["invoice fine"])
    started = await client.post(
        "/v1/evaluations",
        json={
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "items": [
                {"document_id": broken, "expected_label": "invoice"},
                {"document_id": fine, "expected_label": "invoice"},
            ],
        },
        headers=tenant.headers,
    )
    body = await wait_done(tenant, started.json()["evaluation_id"])
    assert body["status"] == "completed"
    assert [i["status"] for i in body["items"]] == ["failed", "completed"]
    assert body["items"][0]["error"] == "internal_error: RuntimeError"  # no internals leak
    assert body["metrics"]["failed"] == 1 and body["metrics"]["accuracy"] == 1.0
