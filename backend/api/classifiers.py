"""Saved classifiers: versions, labelled examples, runs."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlmodel import col, select

from backend.api.classify import IdempotencyKey
from backend.api.pagination import PageDep, Paginated, paginate
from backend.billing import idempotency
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.service import (
    ClassifyResponse,
    classification_response,
    run_classification,
)
from backend.classification.spec import ModeFields, Modes, check_modes, with_model_default
from backend.classifiers import service
from backend.deps import CurrentAccount, CurrentKey, RequireScope, SessionDep, StateDep
from backend.documents.page_range import parse_page_range
from backend.errors import InvalidRequest
from backend.models import Classifier, ClassifierVersion, Document, Example
from backend.reviews import training
from backend.reviews.policy import ResolvedPolicy, ReviewPolicy, latest_evaluation, resolve
from backend.state import AppState

router = APIRouter(tags=["classifiers"])
ClassifierId = Annotated[str, Path(max_length=64)]


class ClassifierIn(ModeFields):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    classification_schema: list[SchemaItem]
    query_model: str | None = Field(default=None, max_length=200)
    page_range: str | None = Field(default=None, max_length=200)
    instructions: str | None = Field(default=None, max_length=4000)
    retention_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=36500,
        description="Erase documents this classifier ran on after this many days (overrides the account's)",
    )
    review_policy: ReviewPolicy | None = Field(
        default=None,
        description="When results go to human review: a confidence threshold, or a target "
        "accuracy (default: the server's threshold)",
    )


class ClassifierPatch(ModeFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    classification_schema: list[SchemaItem] | None = None
    query_model: str | None = Field(default=None, max_length=200)
    page_range: str | None = Field(default=None, max_length=200)
    instructions: str | None = Field(default=None, max_length=4000)
    retention_days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=36500,
        description="Erase documents this classifier ran on after this many days (overrides the account's)",
    )
    review_policy: ReviewPolicy | None = None


class VersionOut(BaseModel):
    version: int
    classification_schema: list[dict[str, str]]
    query_model: str | None
    page_range: str | None
    instructions: str | None
    modes: Modes
    review_policy: ReviewPolicy = Field(default_factory=ReviewPolicy)
    created_at: datetime

    @classmethod
    def of(cls, version: ClassifierVersion, state: AppState) -> "VersionOut":
        return cls(
            version=version.version,
            classification_schema=version.classification_schema,
            query_model=version.query_model,
            page_range=version.page_range,
            instructions=version.instructions,
            modes=_shown_modes(version, state),
            review_policy=ReviewPolicy.model_validate(version.review_policy or {}),
            created_at=version.created_at,
        )


class Estimate(BaseModel):
    accuracy: float | None = None
    # 95% Wilson interval of `accuracy`; too_few_examples when fewer than 30 back it.
    accuracy_interval: list[float] | None = None
    too_few_examples: bool = True
    ece: float | None = None
    n_examples: int = 0
    per_label: dict[str, Any] = Field(default_factory=dict)
    # `local`: the zero-shot model's accuracy on the same held-out examples, and the learned
    # correction chosen on them (weight 0: the examples did not beat the descriptions).
    zero_shot_accuracy: float | None = None
    correction_weight: float | None = None
    kappa: float | None = None
    nearest: float | None = None


class ClassifierOut(BaseModel):
    classifier_id: str
    name: str
    description: str | None
    version: int
    classification_schema: list[dict[str, str]]
    query_model: str | None
    page_range: str | None
    instructions: str | None
    modes: Modes
    review_policy: ReviewPolicy = Field(default_factory=ReviewPolicy)
    created_at: datetime
    updated_at: datetime
    num_examples: int
    retention_days: int | None = None


class TrainingState(BaseModel):
    state: str = Field(
        description="ready (the current examples' model serves), queued, training, or stale"
    )
    examples_hash: str = Field(description="The current example set")
    serving_examples_hash: str | None = Field(description="The set whose model serves now")
    serving_num_examples: int | None = None
    trained_at: datetime | None = None
    trainings: int = Field(description="Example sets of this version trained so far")


class ReviewTradeoff(BaseModel):
    """What review thresholds did on the classifier's latest completed evaluation."""

    evaluation_id: str
    auroc: float | None = None
    errors_caught: dict[str, float | None] = Field(default_factory=dict)
    at_accuracy: dict[str, Any] = Field(default_factory=dict)
    risk_coverage: list[dict[str, float]] = Field(default_factory=list)


class ClassifierDetail(ClassifierOut):
    versions: list[VersionOut]
    estimate: Estimate | None = None
    training: TrainingState | None = None
    review: ResolvedPolicy | None = Field(
        default=None,
        description="The review threshold in force; for a target accuracy, the coverage and "
        "accuracy measured on the latest evaluation",
    )
    review_tradeoff: ReviewTradeoff | None = Field(
        default=None,
        description="Coverage and accuracy per threshold on the latest completed evaluation",
    )


class RunIn(ModeFields):
    document_id: str = Field(max_length=64)
    page_range: str | None = Field(default=None, max_length=200)
    query_model: str | None = Field(default=None, max_length=200)
    version: int | None = Field(default=None, strict=True, ge=1)


class ExampleIn(BaseModel):
    document_id: str = Field(max_length=64)
    label: str = Field(min_length=1, max_length=200)


class ExampleOut(BaseModel):
    example_id: str
    document_id: str
    label: str
    created_at: datetime
    filename: str | None = Field(default=None, description="The document's file name")
    num_pages: int | None = None


class ExamplesOut(Paginated[ExampleOut]):
    estimate: Estimate


class Deleted(BaseModel):
    classifier_id: str
    deleted: bool


def _shown_modes(version: ClassifierVersion, state: AppState) -> Modes:
    """The version's modes as a run on its model would use them: an input mode the version did
    not choose is that model's default (as stored when the model is gone)."""
    modes = Modes.from_stored(version.modes)
    try:
        _, info = state.backends.resolve(
            version.query_model or state.settings.resolved_default_model
        )
    except InvalidRequest:
        return modes
    return with_model_default(modes, info)


def _out(
    classifier: Classifier, version: ClassifierVersion, num_examples: int, state: AppState
) -> dict:
    return {
        "classifier_id": classifier.id,
        "name": classifier.name,
        "description": classifier.description,
        "version": version.version,
        "classification_schema": version.classification_schema,
        "query_model": version.query_model,
        "page_range": version.page_range,
        "instructions": version.instructions,
        "modes": _shown_modes(version, state),
        "review_policy": ReviewPolicy.model_validate(version.review_policy or {}),
        "created_at": classifier.created_at,
        "updated_at": classifier.updated_at,
        "num_examples": num_examples,
        "retention_days": classifier.retention_days,
    }


def _check_page_range(page_range: str | None) -> None:
    if page_range:  # validate its form now; its fit is checked against each document at run time
        parse_page_range(page_range, 10**6)


@router.post("/classifiers", status_code=201, dependencies=[RequireScope("classifiers:write")])
async def create_classifier(
    body: ClassifierIn, account: CurrentAccount, session: SessionDep, state: StateDep
) -> ClassifierOut:
    """Save a named label set with defaults; it starts at version 1."""
    labels = validate_schema(body.classification_schema, state.settings)
    _check_page_range(body.page_range)
    modes = body.modes_over()
    if body.query_model:
        _, info = state.backends.resolve(body.query_model)
        check_modes(with_model_default(modes, info), info)
    snap = await service.create(
        session,
        account_id=account.id,
        name=body.name,
        description=body.description,
        labels=labels,
        query_model=body.query_model,
        page_range=body.page_range,
        instructions=body.instructions,
        modes=modes,
        review_policy=body.review_policy.stored() if body.review_policy else None,
    )
    snap.classifier.retention_days = body.retention_days
    session.add(snap.classifier)
    await session.commit()
    return ClassifierOut(**_out(snap.classifier, snap.version, 0, state))


@router.get("/classifiers", dependencies=[RequireScope("classifiers:read")])
async def list_classifiers(
    account: CurrentAccount, key: CurrentKey, session: SessionDep, page: PageDep, state: StateDep
) -> Paginated[ClassifierOut]:
    """List this account's classifiers, newest first (only its own for a limited key)."""
    query = (
        select(Classifier)
        .where(Classifier.account_id == account.id, col(Classifier.deleted_at).is_(None))
        .order_by(col(Classifier.created_at).desc(), col(Classifier.id))
    )
    if key.classifier_ids is not None:
        query = query.where(col(Classifier.id).in_(key.classifier_ids))
    rows, total = await paginate(session, query, page)
    items = []
    for classifier in rows:
        version = await service.get_version(session, classifier)
        items.append(
            ClassifierOut(
                **_out(
                    classifier,
                    version,
                    await service.count_examples(session, classifier.id),
                    state,
                )
            )
        )
    return Paginated(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/classifiers/{classifier_id}", dependencies=[RequireScope("classifiers:read")])
async def get_classifier(
    classifier_id: ClassifierId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> ClassifierDetail:
    """Show a classifier with all its versions and its estimated accuracy."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    snap = await service.snapshot(session, classifier)
    examples = await service.examples_of(session, classifier)
    versions = await service.list_versions(session, classifier)
    metrics, training_now = await service.estimate(session, state, snap, examples)
    policy = await resolve(
        session,
        snap.version.review_policy,
        classifier_id=classifier.id,
        default=state.settings.review_threshold,
    )
    evaluation = await latest_evaluation(session, classifier.id)
    measured = ((evaluation.metrics or {}).get("review") if evaluation else None) or None
    return ClassifierDetail(
        **_out(classifier, snap.version, len(examples), state),
        versions=[VersionOut.of(v, state) for v in versions],
        estimate=Estimate(**metrics),
        training=TrainingState(**training_now),
        review=policy,
        review_tradeoff=ReviewTradeoff(evaluation_id=evaluation.id, **measured)
        if evaluation and measured
        else None,
    )


@router.patch("/classifiers/{classifier_id}", dependencies=[RequireScope("classifiers:write")])
async def update_classifier(
    classifier_id: ClassifierId,
    body: ClassifierPatch,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> ClassifierOut:
    """Change a classifier; a change to what decides results makes a new version."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    changes = body.model_dump(exclude_unset=True)
    if any(changes.pop(name, None) is not None for name in ModeFields.model_fields):
        changes["modes"] = body
    if body.classification_schema is not None:
        changes["classification_schema"] = validate_schema(
            body.classification_schema, state.settings
        )
    elif "classification_schema" in changes:
        del changes["classification_schema"]
    if "review_policy" in changes:
        changes["review_policy"] = body.review_policy.stored() if body.review_policy else None
    _check_page_range(body.page_range)
    if body.query_model:
        state.backends.resolve(body.query_model)
    snap = await service.update(session, classifier, changes)
    count = await service.count_examples(session, classifier.id)
    await session.commit()
    return ClassifierOut(**_out(snap.classifier, snap.version, count, state))


@router.delete("/classifiers/{classifier_id}", dependencies=[RequireScope("classifiers:write")])
async def delete_classifier(
    classifier_id: ClassifierId, account: CurrentAccount, session: SessionDep
) -> Deleted:
    """Delete a classifier (past results keep pointing at their version)."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    await service.soft_delete(session, classifier)
    await session.commit()
    return Deleted(classifier_id=classifier.id, deleted=True)


@router.post("/classifiers/{classifier_id}/run", dependencies=[RequireScope("classify")])
async def run_classifier(
    classifier_id: ClassifierId,
    body: RunIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> ClassifyResponse:
    """Classify a document with a saved classifier (its latest version, or a pinned one)."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    spec = await service.run_spec(
        session,
        state,
        classifier,
        version=body.version,
        query_model=body.query_model,
        page_range=body.page_range,
        overrides=body,
    )

    async def work() -> dict:
        record = await run_classification(
            session,
            state,
            spec,
            account=account,
            document_id=body.document_id,
            kind="classifier_run",
        )
        return classification_response(record).model_dump(mode="json")

    result = await idempotency.run(
        state.sessionmaker,
        session,
        account_id=account.id,
        key=idempotency_key,
        endpoint=f"classifiers/{classifier.id}/run",
        payload=body.model_dump(),
        work=work,
    )
    await state.queue.after_commit(session)  # review_required webhook jobs (in memory)
    return ClassifyResponse.model_validate(result)


@router.post(
    "/classifiers/{classifier_id}/examples",
    status_code=201,
    dependencies=[RequireScope("classifiers:write")],
)
async def add_example(
    classifier_id: ClassifierId,
    body: ExampleIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> ExampleOut:
    """Label a processed document as an example of one of the classifier's labels."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    example = await service.add_example(
        session, classifier, document_id=body.document_id, label=body.label
    )
    await session.commit()
    await training.schedule(state, classifier.id)
    return ExampleOut(
        example_id=example.id,
        document_id=example.document_id,
        label=example.label,
        created_at=example.created_at,
    )


@router.get(
    "/classifiers/{classifier_id}/examples", dependencies=[RequireScope("classifiers:read")]
)
async def list_examples(
    classifier_id: ClassifierId,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    page: PageDep,
) -> ExamplesOut:
    """List a classifier's labelled examples with the accuracy they are estimated to give."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    query = (
        select(Example)
        .where(Example.classifier_id == classifier.id, col(Example.deleted_at).is_(None))
        .order_by(col(Example.created_at), col(Example.id))
    )
    rows, total = await paginate(session, query, page)
    ids = [e.document_id for e in rows]
    docs = {
        d.id: d for d in (await session.exec(select(Document).where(col(Document.id).in_(ids))))
    }
    snap = await service.snapshot(session, classifier)
    examples = await service.examples_of(session, classifier)
    estimate = Estimate(**(await service.estimate(session, state, snap, examples))[0])
    return ExamplesOut(
        items=[
            ExampleOut(
                example_id=e.id,
                document_id=e.document_id,
                label=e.label,
                created_at=e.created_at,
                filename=docs[e.document_id].filename if e.document_id in docs else None,
                num_pages=docs[e.document_id].num_pages if e.document_id in docs else None,
            )
            for e in rows
        ],
        total=total,
        limit=page.limit,
        offset=page.offset,
        estimate=estimate,
    )


@router.delete(
    "/classifiers/{classifier_id}/examples/{example_id}",
    dependencies=[RequireScope("classifiers:write")],
)
async def delete_example(
    classifier_id: ClassifierId,
    example_id: Annotated[str, Path(max_length=64)],
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> ExampleOut:
    """Remove a labelled example."""
    classifier = await service.get_classifier(
        session, account_id=account.id, classifier_id=classifier_id
    )
    await service.delete_example(session, classifier, example_id)
    example = await session.get(Example, example_id)
    await session.commit()
    await training.schedule(state, classifier.id)
    return ExampleOut(
        example_id=example.id,
        document_id=example.document_id,
        label=example.label,
        created_at=example.created_at,
    )
