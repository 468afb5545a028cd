"""Evaluation runs in the background: every item classified (and billed) like a normal request,
progress committed item by item so it survives a page reload, metrics computed at the end.

A run is one job on the task queue (backend/queue.py), enqueued in the transaction that creates
it and run by a queue worker. A job retried after its worker died carries on: items already done
are kept, only pending ones are classified. The job's lock keeps two runs of one evaluation apart.
"""

import asyncio
import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import LabelledText
from backend.billing import ledger
from backend.classification.schema import specs_from_json
from backend.classification.service import run_classification
from backend.classifiers import service as classifiers
from backend.errors import ApiError
from backend.evaluation.metrics import summarize
from backend.models import Account, Evaluation, EvaluationItem, utcnow
from backend.queue import task
from backend.state import AppState

log = logging.getLogger(__name__)
CONCURRENCY = 4
RUN_TASK = "docsift.evaluations.run"


def _lock(evaluation_id: str) -> str:
    return f"evaluation:{evaluation_id}"


async def enqueue(state: AppState, session: AsyncSession, evaluation_id: str) -> None:
    """Enqueue the run in `session`'s transaction (the one that creates the evaluation)."""
    await state.queue.enqueue(
        session, RUN_TASK, [{"evaluation_id": evaluation_id}], lock=_lock(evaluation_id)
    )


async def _training(
    state: AppState, evaluation: Evaluation
) -> tuple[list[LabelledText], str | None, str | None]:
    if not evaluation.classifier_id:
        return [], None, None
    async with state.sessionmaker() as session:
        account_id = evaluation.account_id
        classifier = await classifiers.get_classifier(
            session, account_id=account_id, classifier_id=evaluation.classifier_id
        )
        stored = await classifiers.examples_of(session, classifier)
        labels = specs_from_json(evaluation.classification_schema)
        digest = classifiers.examples_hash(stored)
        key = f"{classifier.id}:{evaluation.classifier_version}:{digest}"
        return classifiers.training_examples(stored, labels), key, digest


@task(RUN_TASK, retries=3)
async def run(state: AppState, evaluation_id: str) -> None:
    async with state.sessionmaker() as session:
        evaluation = await session.get(Evaluation, evaluation_id)
        if evaluation is None or evaluation.status in ("completed", "failed"):
            return
        evaluation.status, evaluation.started_at = "running", evaluation.started_at or utcnow()
        session.add(evaluation)
        await session.commit()
        pending = (
            await session.exec(
                select(EvaluationItem)
                .where(
                    EvaluationItem.evaluation_id == evaluation_id,
                    EvaluationItem.status == "pending",
                )
                .order_by(col(EvaluationItem.position))
            )
        ).all()
    try:
        examples, training_key, digest = await _training(state, evaluation)
        _, info = state.backends.resolve(evaluation.query_model)
        if (
            not info.trainable
        ):  # few-shot selection for LLM evaluations is per document; keep it lean
            examples, training_key = [], None
        limiter = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(
            *[
                _classify_item(state, evaluation, item.id, limiter, examples, training_key, digest)
                for item in pending
            ]
        )
        await finish(state, evaluation_id)
    except Exception as error:  # a run must end in a state the user can read
        log.exception("evaluation %s failed", evaluation_id)
        async with state.sessionmaker() as session:
            evaluation = await session.get(Evaluation, evaluation_id)
            evaluation.status, evaluation.error, evaluation.finished_at = (
                "failed",
                str(error)[:500],
                utcnow(),
            )
            session.add(evaluation)
            await session.commit()


async def _classify_item(
    state: AppState,
    evaluation: Evaluation,
    item_id: str,
    limiter: asyncio.Semaphore,
    examples: list[LabelledText],
    training_key: str | None,
    digest: str | None,
) -> None:
    async with limiter, state.sessionmaker() as session:
        item = await session.get(EvaluationItem, item_id)
        account = await session.get(Account, evaluation.account_id)
        if item is None or item.status != "pending":
            return
        labels = specs_from_json(evaluation.classification_schema)
        # Keyed by the item, as batch items are (backend/batches/tasks.py): a run of this job
        # that died may have left a credit hold under this id, and a second live run (a worker
        # taken for dead) cannot store a second result or charge twice.
        await ledger.release(state.sessionmaker, request_id=item.id)
        values: dict[str, Any]
        try:
            record = await run_classification(
                session,
                state,
                account=account,
                document_id=item.document_id,
                labels=labels,
                page_range=None,
                model=evaluation.query_model,
                examples=examples,
                training_key=training_key,
                classifier_id=evaluation.classifier_id,
                classifier_version=evaluation.classifier_version,
                kind="evaluation",
                evaluation_id=evaluation.id,
                examples_hash=digest,
                request_id=item.id,
            )
        except ApiError as error:
            record = None
            values = {"status": "failed", "error": f"{error.code}: {error.message}"}
        except IntegrityError:
            await session.rollback()  # another run stored this item's result first
            return
        else:
            values = {
                "status": "completed",
                "predicted_label": record.classification,
                "confidence_scores": record.confidence_scores,
                "classification_id": record.id,
                "duration": record.duration,
                "credits_used": record.credits_used,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
            }
        settled = await session.execute(
            update(EvaluationItem)
            .where(EvaluationItem.id == item_id, EvaluationItem.status == "pending")  # type: ignore[arg-type]
            .values(**values)
        )
        if settled.rowcount != 1:  # settled by another run: keep nothing of this one
            await session.rollback()
            if record is not None:
                await ledger.release(state.sessionmaker, request_id=item_id)
            return
        # Atomic in SQL: items finish concurrently.
        await session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation.id)
            .values(done=Evaluation.done + 1)
        )
        await session.commit()


async def finish(state: AppState, evaluation_id: str) -> None:
    async with state.sessionmaker() as session:
        evaluation = await session.get(Evaluation, evaluation_id)
        items = (
            await session.exec(
                select(EvaluationItem).where(EvaluationItem.evaluation_id == evaluation_id)
            )
        ).all()
        completed = [i for i in items if i.status == "completed"]
        labels = [s["label"] for s in evaluation.classification_schema]
        evaluation.metrics = summarize(
            labels,
            [i.expected_label for i in completed],
            [i.predicted_label or "" for i in completed],
            [i.confidence_scores or {} for i in completed],
            durations=[i.duration or 0.0 for i in completed],
            credits=sum(i.credits_used for i in completed),
            prompt_tokens=sum(i.prompt_tokens for i in completed),
            completion_tokens=sum(i.completion_tokens for i in completed),
            failed=len(items) - len(completed),
        )
        evaluation.status, evaluation.finished_at = "completed", utcnow()
        session.add(evaluation)
        await session.commit()


async def resume_unfinished(state: AppState) -> int:
    """Hand unfinished runs that no job will take back to the queue (an in-memory broker's jobs
    died with its process; runs started before the queue existed); returns how many."""
    async with state.sessionmaker() as session:
        stuck = (
            await session.exec(
                select(Evaluation.id).where(col(Evaluation.status).in_(["queued", "running"]))
            )
        ).all()
    resumed = 0
    for evaluation_id in stuck:
        if not state.queue.in_memory and await state.queue.has_unfinished_job(
            RUN_TASK, _lock(evaluation_id)
        ):
            continue
        await state.queue.defer(
            RUN_TASK, [{"evaluation_id": evaluation_id}], lock=_lock(evaluation_id)
        )
        resumed += 1
    return resumed
