"""Saved classifiers: immutable versions, labelled examples, how a run uses them."""

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import LabelledText, LabelSpec
from backend.classification.schema import schema_json, specs_from_json
from backend.classification.spec import (
    ExampleDoc,
    ModeFields,
    Modes,
    RunSpec,
    check_modes,
    with_model_default,
)
from backend.documents.queries import document_text, get_processed_document
from backend.errors import Conflict, InvalidRequest, NotFound
from backend.evaluation import calibration
from backend.models import (
    Classifier,
    ClassifierVersion,
    Document,
    Example,
    utcnow,
)
from backend.reviews import policy as review_policy
from backend.reviews import training
from backend.state import AppState

# What decides results: a change to any of these makes a new version.
VERSIONED_FIELDS = (
    "classification_schema",
    "query_model",
    "page_range",
    "instructions",
    "modes",
    "review_policy",
)
EXAMPLE_TEXT_CHARS = 20_000


@dataclass
class Snapshot:
    classifier: Classifier
    version: ClassifierVersion

    @property
    def labels(self) -> list[LabelSpec]:
        return specs_from_json(self.version.classification_schema)


async def get_classifier(
    session: AsyncSession, *, account_id: str, classifier_id: str
) -> Classifier:
    classifier = await session.get(Classifier, classifier_id)
    if (
        classifier is None
        or classifier.account_id != account_id
        or classifier.deleted_at is not None
    ):
        raise NotFound(f"Classifier {classifier_id} not found.")
    return classifier


async def get_version(
    session: AsyncSession, classifier: Classifier, version: int | None = None
) -> ClassifierVersion:
    number = version or classifier.latest_version
    row = (
        await session.exec(
            select(ClassifierVersion).where(
                ClassifierVersion.classifier_id == classifier.id,
                ClassifierVersion.version == number,
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"Classifier {classifier.id} has no version {number}.")
    return row


async def list_versions(session: AsyncSession, classifier: Classifier) -> list[ClassifierVersion]:
    return list(
        (
            await session.exec(
                select(ClassifierVersion)
                .where(ClassifierVersion.classifier_id == classifier.id)
                .order_by(col(ClassifierVersion.version))
            )
        ).all()
    )


async def create(
    session: AsyncSession,
    *,
    account_id: str,
    name: str,
    description: str | None,
    labels: list[LabelSpec],
    query_model: str | None,
    page_range: str | None,
    instructions: str | None,
    modes: Modes,
    review_policy: dict[str, Any] | None = None,
) -> Snapshot:
    classifier = Classifier(
        account_id=account_id, name=name, description=description, latest_version=1
    )
    session.add(classifier)
    await session.flush()
    version = ClassifierVersion(
        classifier_id=classifier.id,
        version=1,
        classification_schema=schema_json(labels),
        query_model=query_model,
        page_range=page_range,
        instructions=instructions,
        modes=modes.stored(),
        review_policy=review_policy,
    )
    session.add(version)
    await session.flush()
    return Snapshot(classifier, version)


async def update(session: AsyncSession, classifier: Classifier, changes: dict) -> Snapshot:
    """Apply changes; a new immutable version only when something that decides results changed.
    `changes["modes"]`, if given, is a ModeFields over the current version's modes."""
    current = await get_version(session, classifier)
    if "modes" in changes:
        changes["modes"] = changes["modes"].modes_over(Modes.from_stored(current.modes)).stored()
    if "name" in changes and changes["name"] is not None:
        classifier.name = changes["name"]
    if "description" in changes:
        classifier.description = changes["description"]
    if "retention_days" in changes:  # not versioned: it decides no result
        classifier.retention_days = changes["retention_days"]
    proposed = {field: getattr(current, field) for field in VERSIONED_FIELDS}
    for field in VERSIONED_FIELDS:
        if field in changes:
            value = changes[field]
            proposed[field] = schema_json(value) if field == "classification_schema" else value
    if proposed != {field: getattr(current, field) for field in VERSIONED_FIELDS}:
        classifier.latest_version += 1
        current = ClassifierVersion(
            classifier_id=classifier.id, version=classifier.latest_version, **proposed
        )
        session.add(current)
    classifier.updated_at = utcnow()
    session.add(classifier)
    await session.flush()
    return Snapshot(classifier, current)


async def soft_delete(session: AsyncSession, classifier: Classifier) -> None:
    classifier.deleted_at = utcnow()
    session.add(classifier)
    await session.flush()


async def examples_of(session: AsyncSession, classifier: Classifier) -> list[Example]:
    return list(
        (
            await session.exec(
                select(Example)
                .where(Example.classifier_id == classifier.id, col(Example.deleted_at).is_(None))
                .order_by(col(Example.created_at), col(Example.id))
            )
        ).all()
    )


async def count_examples(session: AsyncSession, classifier_id: str) -> int:
    return int(
        (
            await session.exec(
                select(func.count()).where(
                    Example.classifier_id == classifier_id, col(Example.deleted_at).is_(None)
                )
            )
        ).one()
    )


async def add_example(
    session: AsyncSession, classifier: Classifier, *, document_id: str, label: str
) -> Example:
    labels = [s.label for s in (await snapshot(session, classifier)).labels]
    if label not in labels:
        raise InvalidRequest(
            f"Label '{label}' is not in the classifier's schema: {', '.join(labels)}."
        )
    document = await get_processed_document(
        session, account_id=classifier.account_id, document_id=document_id
    )
    await _refuse_duplicate(session, classifier, document)
    text = await document_text(session, document_id=document.id, max_chars=EXAMPLE_TEXT_CHARS)
    example = Example(
        account_id=classifier.account_id,
        classifier_id=classifier.id,
        document_id=document.id,
        label=label,
        text=text,
    )
    session.add(example)
    await session.flush()
    return example


async def _refuse_duplicate(
    session: AsyncSession, classifier: Classifier, document: Document
) -> None:
    """The same file (same bytes, even uploaded twice) is one example: twice would weigh it
    double and could not be told apart in the list."""
    same = (
        await session.exec(
            select(Example, Document)
            .join(Document, col(Document.id) == col(Example.document_id))
            .where(
                Example.classifier_id == classifier.id,
                col(Example.deleted_at).is_(None),
                (col(Document.id) == document.id) | (col(Document.sha256) == document.sha256),
            )
            .limit(1)
        )
    ).first()
    if same is not None:
        example, original = same
        raise Conflict(
            f"{document.filename} is already an example of this classifier "
            f"(labelled '{example.label}' as {original.filename}, example {example.id})."
        )


async def delete_example(session: AsyncSession, classifier: Classifier, example_id: str) -> None:
    example = await session.get(Example, example_id)
    if example is None or example.classifier_id != classifier.id or example.deleted_at is not None:
        raise NotFound(f"Example {example_id} not found.")
    example.deleted_at = utcnow()
    session.add(example)
    await session.flush()


async def snapshot(
    session: AsyncSession, classifier: Classifier, version: int | None = None
) -> Snapshot:
    return Snapshot(classifier, await get_version(session, classifier, version))


def examples_hash(examples: list[Example]) -> str:
    """A fingerprint of the labelled set (examples never change once added, so ids suffice)."""
    digest = hashlib.sha256()
    for example in sorted(examples, key=lambda e: e.id):
        digest.update(f"{example.id}:{example.label}\n".encode())
    return digest.hexdigest()[:16]


def training_examples(examples: list[Example], labels: list[LabelSpec]) -> list[LabelledText]:
    """The examples whose label the version still has (a removed label's examples sit out)."""
    names = {s.label for s in labels}
    return [LabelledText(e.label, e.text) for e in examples if e.label in names]


async def run_spec(
    session: AsyncSession,
    state: AppState,
    classifier: Classifier,
    *,
    version: int | None = None,
    query_model: str | None = None,
    page_range: str | None = None,
    overrides: ModeFields | None = None,
) -> RunSpec:
    """How a run of this classifier classifies: the version (latest, or pinned), the model
    (per-call, else the version's, else the server's default), the page range (per-call, else
    the version's), the modes (per-call overrides of the version's; an input mode neither
    chose is the model's default), the examples and the version's enabled calibration for that
    model. Unknown models and modes the model cannot serve are refused here (400), before any
    work."""
    snap = await snapshot(session, classifier, version)
    model = query_model or snap.version.query_model or state.settings.resolved_default_model
    _, info = state.backends.resolve(model)
    modes = Modes.from_stored(snap.version.modes)
    if overrides is not None:
        modes = overrides.modes_over(modes)
    modes = with_model_default(modes, info)
    check_modes(modes, info)
    stored = await examples_of(session, classifier)
    digest = examples_hash(stored)
    if info.trainable:
        # The newest set with a trained model (the old model serves while the queue trains).
        stored, digest = await training.serving_examples(
            session, classifier.id, snap.version.version, stored, digest
        )
    names = {s.label for s in snap.labels}
    fitted = await calibration.find(
        session, classifier_id=classifier.id, version=snap.version.version, model=model
    )
    policy = await review_policy.resolve(
        session,
        snap.version.review_policy,
        classifier_id=classifier.id,
        default=state.settings.review_threshold,
    )
    return RunSpec(
        labels=snap.labels,
        model=model,
        info=info,
        page_range=page_range or snap.version.page_range,
        instructions=snap.version.instructions,
        modes=modes,
        examples=[
            ExampleDoc(e.document_id, LabelledText(e.label, e.text))
            for e in stored
            if e.label in names
        ],
        examples_hash=digest,
        classifier_id=classifier.id,
        classifier_version=snap.version.version,
        temperature=fitted.temperature if fitted is not None and fitted.enabled else None,
        review_threshold=policy.threshold,
    )


async def estimate(
    session: AsyncSession, state: AppState, snap: Snapshot, examples: list[Example]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cross-validated accuracy of the model trained on the newest trained example set, and the
    training state of the current set. Never trains: a set not trained yet is trained by the
    queue (backend/reviews/training.py) and the reading answers at once."""
    state_now, metrics = await training.training_state(
        session, state, snap.classifier, snap.version.version, examples_hash(examples)
    )
    return metrics or {"n_examples": len(training_examples(examples, snap.labels))}, state_now
