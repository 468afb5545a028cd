"""Background training of a classifier's model when its examples change (corrections included).

Every change of a classifier's examples asks for one `train` job per classifier (a queueing
lock: while one waits, more requests add nothing). The job waits until the examples stopped
changing for `training_debounce_seconds`, then trains once on the set of that moment and records
it in `trained_model` with the example ids. Runs keep using the newest set with a trained model
(`serving_examples`), so the old model serves until the new one is ready, and no request ever
trains for a set the queue is about to train. Reading a classifier never trains: it shows the
state (`training_state`) and the estimate of the newest trained set.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import ClassifyRequest, LabelledText, LabelSpec
from backend.backends.local import estimate_accuracy
from backend.classification.schema import specs_from_json
from backend.models import Classifier, ClassifierVersion, Example, TrainedModel, utcnow
from backend.queue import task
from backend.state import AppState

log = logging.getLogger(__name__)

TRAIN_TASK = "docsift.classifiers.train"
METRIC_KEYS = (
    "accuracy",
    "accuracy_interval",
    "too_few_examples",
    "ece",
    "n_examples",
    "per_label",
    "zero_shot_accuracy",
    "correction_weight",
    "kappa",
    "nearest",
)


def _lock(classifier_id: str) -> str:
    return f"train:{classifier_id}"


def training_key(classifier_id: str, version: int, digest: str) -> str:
    # The same key RunSpec.training_key gives the backend for this set.
    return f"{classifier_id}:{version}:{digest}"


async def schedule(state: AppState, classifier_id: str) -> bool:
    """Ask for a training of the classifier's latest version (call after the change commits)."""
    return await state.queue.defer_once(
        TRAIN_TASK,
        {"classifier_id": classifier_id},
        lock=_lock(classifier_id),
        schedule_in=state.settings.training_debounce_seconds or None,
    )


async def trained_sets(
    session: AsyncSession, classifier_id: str, version: int
) -> list[TrainedModel]:
    """The version's trained example sets, newest first."""
    return list(
        (
            await session.exec(
                select(TrainedModel)
                .where(
                    TrainedModel.classifier_id == classifier_id,
                    TrainedModel.version == version,
                    col(TrainedModel.example_ids).is_not(None),
                )
                .order_by(col(TrainedModel.created_at).desc(), col(TrainedModel.id))
            )
        ).all()
    )


async def serving_examples(
    session: AsyncSession, classifier_id: str, version: int, current: list[Example], digest: str
) -> tuple[list[Example], str]:
    """The example set a trainable model serves from: the current one once it is trained (or
    when none ever was: the first run trains it, as before background training), else the
    newest trained set, until the queue has trained the current one."""
    sets = await trained_sets(session, classifier_id, version)
    if not sets or any(s.examples_hash == digest for s in sets):
        return current, digest
    newest = sets[0]
    examples = (
        await session.exec(
            select(Example)
            .where(col(Example.id).in_(newest.example_ids or []))
            .order_by(col(Example.created_at), col(Example.id))
        )
    ).all()
    return list(examples), newest.examples_hash


async def training_state(
    session: AsyncSession, state: AppState, classifier: Classifier, version: int, digest: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What a reading of the classifier shows, at once: {state: ready | queued | training |
    stale, ...} and the estimate of the newest trained set (None before any). A stale set
    (changed, no job waiting, e.g. after a lost job) gets its training scheduled here."""
    sets = await trained_sets(session, classifier.id, version)
    current = next((s for s in sets if s.examples_hash == digest), None)
    job = await state.queue.job_state(TRAIN_TASK, _lock(classifier.id))
    if current is not None:
        status = "ready"
    elif job == "doing":
        status = "training"
    elif job == "todo":
        status = "queued"
    else:
        status = "queued" if await schedule(state, classifier.id) else "stale"
    serving = current or (sets[0] if sets else None)
    out = {
        "state": status,
        "examples_hash": digest,
        "serving_examples_hash": serving.examples_hash if serving else None,
        "serving_num_examples": serving.num_examples if serving else None,
        "trained_at": serving.created_at if serving else None,
        "trainings": len(sets),
    }
    return out, (serving.metrics if serving else None)


async def _last_change(session: AsyncSession, classifier_id: str) -> Any:
    added, removed = (
        await session.exec(
            select(func.max(Example.created_at), func.max(Example.deleted_at)).where(
                Example.classifier_id == classifier_id
            )
        )
    ).one()
    return max((t for t in (added, removed) if t is not None), default=None)


def _fit(
    backend: Any, trainable: bool, request: ClassifyRequest, labels: list[LabelSpec]
) -> dict[str, Any]:
    """Train (blocking). A trainable backend fits and stores its model under the request's
    training key, so the API processes load it instead of training; for other models the
    same fit gives the estimate shown on the classifier."""
    fit_and_store = getattr(backend, "_trained", None)
    if trainable and fit_and_store and len({e.label for e in request.examples}) >= 2:
        # The local backend's own train-and-store path (one training per key, cached).
        model = fit_and_store(request)
        metrics = dict(model.metrics)
    else:
        metrics = estimate_accuracy(labels, request.examples)
    return {k: metrics.get(k) for k in METRIC_KEYS}


@task(TRAIN_TASK, retries=2, retry_wait=5)
async def train(state: AppState, classifier_id: str) -> None:
    debounce = state.settings.training_debounce_seconds
    async with state.sessionmaker() as session:
        classifier = await session.get(Classifier, classifier_id)
        if classifier is None or classifier.deleted_at is not None:
            return
        changed = await _last_change(session, classifier_id)
        if changed is not None and utcnow() - changed < timedelta(seconds=debounce):
            # Still being corrected: look again once the examples have been quiet long enough.
            wait = (changed + timedelta(seconds=debounce) - utcnow()).total_seconds()
            await state.queue.defer_once(
                TRAIN_TASK,
                {"classifier_id": classifier_id},
                lock=_lock(classifier_id),
                schedule_in=max(wait, 0.05),
            )
            return
        from backend.classifiers.service import examples_hash, examples_of

        version = (
            await session.exec(
                select(ClassifierVersion).where(
                    ClassifierVersion.classifier_id == classifier_id,
                    ClassifierVersion.version == classifier.latest_version,
                )
            )
        ).one()
        examples = await examples_of(session, classifier)
        digest = examples_hash(examples)
        if any(
            s.examples_hash == digest
            for s in await trained_sets(session, classifier_id, version.version)
        ):
            return  # this set is trained already (a repeated job)
        labels = specs_from_json(version.classification_schema)
        names = {s.label for s in labels}
        labelled = [LabelledText(e.label, e.text) for e in examples if e.label in names]
        model_name = version.query_model or state.settings.resolved_default_model
        backend, info = state.backends.resolve(model_name)
        request = ClassifyRequest(
            model=model_name,
            labels=labels,
            pages=[],
            examples=labelled,
            training_key=training_key(classifier_id, version.version, digest),
        )
        ids = [e.id for e in examples]
        await session.commit()  # hold no connection while training
    log.info("training classifier %s v%s on %d examples", classifier_id, version.version, len(ids))
    metrics = await asyncio.to_thread(_fit, backend, info.trainable, request, labels)
    async with state.sessionmaker() as session:
        row = (
            await session.exec(
                select(TrainedModel).where(
                    TrainedModel.classifier_id == classifier_id,
                    TrainedModel.version == version.version,
                    TrainedModel.examples_hash == digest,
                )
            )
        ).first()
        if row is None:
            row = TrainedModel(
                classifier_id=classifier_id,
                version=version.version,
                examples_hash=digest,
                num_examples=len(labelled),
                artifact=b"",
            )
        row.metrics, row.example_ids, row.created_at = metrics, ids, utcnow()
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # a concurrent run of the same set recorded it first
            await session.rollback()
