"""Evaluation runs in the background: every item classified (and billed) like a normal request,
progress committed item by item so it survives a page reload, metrics computed at the end.

A run is one job on the task queue (backend/queue.py), enqueued in the transaction that creates
it and run by a queue worker; its lock keeps two runs of one evaluation apart. An item is
classified as its classifier would run it (the evaluated version's page range, instructions and
examples), in its own session: its result, its charge, the item row and the `done` counter are
committed together, keyed by the item like a batch item (backend/batches/tasks.py), so a job
retried after its worker died (or while a worker taken for dead still runs it) never classifies
or charges an item twice. A failed item is recorded as failed and the run goes on; finished items
are kept when a run is resumed.
"""

import asyncio
import logging

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.billing import ledger
from backend.classification.schema import specs_from_json
from backend.classification.service import run_classification
from backend.classification.spec import ModeFields, Modes, RunSpec, inline_spec
from backend.classifiers import service as classifiers
from backend.errors import ApiError
from backend.evaluation.metrics import multi_label_summary, summarize
from backend.models import Account, Classification, Evaluation, EvaluationItem, utcnow
from backend.queue import task
from backend.state import AppState

log = logging.getLogger(__name__)
CONCURRENCY = 4  # items in flight per run; the model backends queue beyond their own limits
UNFINISHED = ("queued", "running")
RUN_TASK = "docsift.evaluations.run"


def _lock(evaluation_id: str) -> str:
    return f"evaluation:{evaluation_id}"


async def enqueue(state: AppState, session: AsyncSession, evaluation_id: str) -> None:
    """Enqueue the run in `session`'s transaction (the one that creates the evaluation)."""
    await state.queue.enqueue(
        session, RUN_TASK, [{"evaluation_id": evaluation_id}], lock=_lock(evaluation_id)
    )


async def resume_unfinished(state: AppState) -> int:
    """Hand unfinished runs that no job will take back to the queue (an in-memory broker's jobs
    died with its process; runs started before the queue existed); returns how many."""
    async with state.sessionmaker() as session:
        stuck = (
            await session.exec(select(Evaluation.id).where(col(Evaluation.status).in_(UNFINISHED)))
        ).all()
    resumed = 0
    for evaluation_id in stuck:
        if not state.queue.in_memory and await state.queue.has_unfinished_job(
            RUN_TASK, _lock(evaluation_id)
        ):
            continue
        log.info("resuming evaluation %s", evaluation_id)
        await state.queue.defer(
            RUN_TASK, [{"evaluation_id": evaluation_id}], lock=_lock(evaluation_id)
        )
        resumed += 1
    return resumed


async def _spec(state: AppState, evaluation: Evaluation) -> RunSpec:
    """How every item is classified: as the evaluated classifier version would run it (its page
    range, instructions, examples and enabled calibration), or the inline schema; with the modes
    frozen on the run. A model gone since makes the run fail."""
    modes = Modes.frozen(evaluation.modes)
    if not evaluation.classifier_id:
        return inline_spec(
            state,
            labels=specs_from_json(evaluation.classification_schema),
            model=evaluation.query_model,
            modes=modes,
        )
    async with state.sessionmaker() as session:
        classifier = await classifiers.get_classifier(
            session, account_id=evaluation.account_id, classifier_id=evaluation.classifier_id
        )
        return await classifiers.run_spec(
            session,
            state,
            classifier,
            version=evaluation.classifier_version,
            query_model=evaluation.query_model,
            overrides=ModeFields.exactly(modes),
        )


@task(RUN_TASK, retries=3)
async def run(state: AppState, evaluation_id: str) -> None:
    """Classify every pending item of the run, then compute its metrics."""
    async with state.sessionmaker() as session:
        evaluation = await session.get(Evaluation, evaluation_id)
        if evaluation is None or evaluation.status not in UNFINISHED:
            return
        evaluation.status, evaluation.started_at = "running", evaluation.started_at or utcnow()
        session.add(evaluation)
        await session.commit()
        pending = (
            await session.exec(
                select(EvaluationItem.id)
                .where(
                    EvaluationItem.evaluation_id == evaluation_id,
                    EvaluationItem.status == "pending",
                )
                .order_by(col(EvaluationItem.position))
            )
        ).all()
    try:
        spec = await _spec(state, evaluation)
        limiter = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(
            *[_classify_item(state, evaluation, item_id, spec, limiter) for item_id in pending]
        )
        await finish(state, evaluation_id, spec)
    except Exception as error:  # a run must end in a state the user can read
        log.exception("evaluation %s failed", evaluation_id)
        message = f"{error.code}: {error.message}" if isinstance(error, ApiError) else str(error)
        async with state.sessionmaker() as session:
            await session.execute(
                update(Evaluation)
                .where(col(Evaluation.id) == evaluation_id)
                .values(status="failed", error=message[:500], finished_at=utcnow())
            )
            await session.commit()


async def _classify_item(
    state: AppState,
    evaluation: Evaluation,
    item_id: str,
    spec: RunSpec,
    limiter: asyncio.Semaphore,
) -> None:
    async with limiter:
        try:
            await _classify_and_record(state, evaluation, item_id, spec)
        except Exception as error:  # one bad document must not stop the run
            if isinstance(error, ApiError):
                message = f"{error.code}: {error.message}"
            else:
                log.exception("evaluation %s item %s failed", evaluation.id, item_id)
                message = f"internal_error: {type(error).__name__}"
            await _record_failure(state, evaluation.id, item_id, message)


async def _classify_and_record(
    state: AppState, evaluation: Evaluation, item_id: str, spec: RunSpec
) -> None:
    async with state.sessionmaker() as session:
        item = await session.get(EvaluationItem, item_id)
        account = await session.get(Account, evaluation.account_id)
        if item is None or item.status != "pending":
            return
        # A run of this job that died may have left a credit hold under the item's id.
        await ledger.release(state.sessionmaker, request_id=item_id)
        try:
            record = await run_classification(
                session,
                state,
                spec,
                account=account,
                document_id=item.document_id,
                kind="evaluation",
                evaluation_id=evaluation.id,
                request_id=item_id,
            )
        except IntegrityError:
            await session.rollback()  # another run of this job stored the item's result first
            return
        settled = await _settle(
            session,
            item_id,
            status="completed",
            predicted_label=record.classification,
            confidence_scores=record.confidence_scores,
            classification_id=record.id,
            duration=record.duration,
            credits_used=record.credits_used,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            error=None,
        )
        if not settled:  # settled by another run: keep nothing of this one
            await session.rollback()
            await ledger.release(state.sessionmaker, request_id=item_id)
            return
        await _count_done(session, evaluation.id)
        await session.commit()  # result, charge, item and progress together


async def _record_failure(state: AppState, evaluation_id: str, item_id: str, message: str) -> None:
    async with state.sessionmaker() as session:
        if await _settle(session, item_id, status="failed", error=message[:500]):
            await _count_done(session, evaluation_id)
        await session.commit()


async def _settle(session: AsyncSession, item_id: str, **values: object) -> bool:
    """Make a pending item final; False if another run of the job already did."""
    settled = await session.execute(
        update(EvaluationItem)
        .where(col(EvaluationItem.id) == item_id, col(EvaluationItem.status) == "pending")
        .values(**values)
    )
    return settled.rowcount == 1


async def _count_done(session: AsyncSession, evaluation_id: str) -> None:
    # Atomic in SQL: items of one run finish concurrently.
    await session.execute(
        update(Evaluation)
        .where(col(Evaluation.id) == evaluation_id)
        .values(done=Evaluation.done + 1)
    )


async def finish(state: AppState, evaluation_id: str, spec: RunSpec) -> None:
    """Compute the run's metrics over its completed items and mark it completed."""
    async with state.sessionmaker() as session:
        evaluation = await session.get(Evaluation, evaluation_id)
        items = (
            await session.exec(
                select(EvaluationItem).where(EvaluationItem.evaluation_id == evaluation_id)
            )
        ).all()
        cost_usd = (
            await session.exec(
                select(func.sum(Classification.cost_usd)).where(
                    Classification.evaluation_id == evaluation_id
                )
            )
        ).one()
        completed = [i for i in items if i.status == "completed"]
        labels = [s["label"] for s in evaluation.classification_schema]
        metrics = summarize(
            labels,
            [i.expected_label for i in completed],
            [i.predicted_label or "" for i in completed],
            [i.confidence_scores or {} for i in completed],
            durations=[i.duration or 0.0 for i in completed],
            credits=sum(i.credits_used for i in completed),
            prompt_tokens=sum(i.prompt_tokens for i in completed),
            completion_tokens=sum(i.completion_tokens for i in completed),
            cost_usd=cost_usd,
            failed=len(items) - len(completed),
        )
        if spec.modes.multi_label:
            metrics["multi_label"] = multi_label_summary(
                labels,
                [i.expected_labels or [] for i in completed],
                [i.confidence_scores or {} for i in completed],
            )
        if evaluation.classifier_id:
            # Items that are also the classifier's examples flatter a trained model: say how many.
            example_documents = {e.document_id for e in spec.examples}
            metrics["items_in_examples"] = sum(i.document_id in example_documents for i in items)
            metrics["calibration_temperature"] = spec.temperature
        evaluation.metrics = metrics
        evaluation.done = sum(i.status != "pending" for i in items)
        evaluation.status, evaluation.finished_at = "completed", utcnow()
        session.add(evaluation)
        await session.commit()
