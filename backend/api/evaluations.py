"""Evaluations: run a classifier over labelled documents in the background, then read metrics."""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.api.pagination import PageDep, Paginated, paginate
from backend.classification.schema import SchemaItem, schema_json, validate_schema
from backend.classification.spec import ModeFields, Modes, RunSpec, inline_spec
from backend.classifiers import service as classifiers
from backend.deps import CurrentAccount, RequireScope, SessionDep, StateDep, check_classifier
from backend.documents.page_range import parse_page_range
from backend.errors import InsufficientCredits, InvalidRequest, NotFound
from backend.evaluation import calibration, runner
from backend.models import Account, Calibration, Document, Evaluation, EvaluationItem
from backend.state import AppState

router = APIRouter(tags=["evaluations"])
EvaluationId = Annotated[str, Path(max_length=64)]
MAX_ITEMS = 5000
MIN_CALIBRATION_ITEMS = 5


class ItemIn(BaseModel):
    document_id: str = Field(max_length=64)
    expected_label: str | None = Field(default=None, min_length=1, max_length=200)
    expected_labels: list[str] | None = Field(
        default=None,
        max_length=200,
        description="multi_label evaluations: every label the document is (may be empty)",
    )

    @model_validator(mode="after")
    def _one_answer(self) -> "ItemIn":
        if (self.expected_label is None) == (self.expected_labels is None):
            raise ValueError("give exactly one of expected_label and expected_labels")
        return self

    @property
    def expected(self) -> list[str]:
        return (
            [self.expected_label] if self.expected_label is not None else self.expected_labels or []
        )


class EvaluationIn(ModeFields):
    name: str | None = Field(default=None, max_length=200)
    classifier_id: str | None = Field(default=None, max_length=64)
    classification_schema: list[SchemaItem] | None = None
    query_model: str | None = Field(default=None, max_length=200)
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _one_source(self) -> "EvaluationIn":
        if (self.classifier_id is None) == (self.classification_schema is None):
            raise ValueError("give exactly one of classifier_id and classification_schema")
        return self


class Started(BaseModel):
    evaluation_id: str
    status: str
    total: int
    credits_estimate: int


class ItemOut(BaseModel):
    document_id: str
    expected_label: str
    expected_labels: list[str] | None = None
    predicted_label: str | None
    confidence_scores: dict[str, float] | None
    status: str
    error: str | None
    duration: float | None
    credits_used: int
    request_id: str | None = Field(description="The classification's id in the audit history")
    filename: str | None = Field(default=None, description="The document's file name")


class EvaluationSummary(BaseModel):
    evaluation_id: str
    name: str | None
    status: str
    done: int
    total: int
    model: str
    classifier_id: str | None
    classifier_version: int | None
    credits_estimate: int
    created_at: datetime
    accuracy: float | None
    modes: Modes = Field(default_factory=Modes, description="The modes the run was made with")


class CalibrationIn(BaseModel):
    enabled: bool = Field(default=True, strict=True)


class CalibrationPatch(BaseModel):
    enabled: bool | None = Field(default=None, strict=True)  # None leaves it as it is


class CalibrationOut(BaseModel):
    classifier_id: str
    version: int
    model: str
    temperature: float
    evaluation_id: str = Field(description="The evaluation it was fitted on")
    ece_before: float
    ece_after: float
    enabled: bool
    created_at: datetime


class EvaluationOut(EvaluationSummary):
    labels: list[str]
    metrics: dict[str, Any] | None
    error: str | None
    calibration: CalibrationOut | None = Field(
        description="The temperature fitted on this run, with ECE before and after"
    )
    items: list[ItemOut]


def _summary(e: Evaluation) -> dict:
    return {
        "evaluation_id": e.id,
        "name": e.name,
        "status": e.status,
        "done": e.done,
        "total": e.total,
        "model": e.query_model,
        "classifier_id": e.classifier_id,
        "classifier_version": e.classifier_version,
        "credits_estimate": e.credits_estimate,
        "created_at": e.created_at,
        "accuracy": (e.metrics or {}).get("accuracy"),
        "modes": Modes.frozen(e.modes),
    }


def _pages(document: Document, page_range: str | None) -> int:
    """Pages an item will be billed for; a range missing the document fails the item, unbilled."""
    try:
        return len(parse_page_range(page_range, document.num_pages))
    except InvalidRequest:
        return 0


def _calibration_out(row: Calibration) -> CalibrationOut:
    return CalibrationOut.model_validate(row, from_attributes=True)


async def _get(session: AsyncSession, account_id: str, evaluation_id: str) -> Evaluation:
    evaluation = await session.get(Evaluation, evaluation_id)
    if evaluation is None or evaluation.account_id != account_id:
        raise NotFound(f"Evaluation {evaluation_id} not found.")
    return evaluation


class EstimateOut(BaseModel):
    credits_estimate: int = Field(description="What the run will cost (credits per page x pages)")
    pages: int
    model: str
    input_mode: str = Field(
        description="What the model would read: the request's, the classifier version's or "
        "the model's default input mode"
    )
    available: int = Field(description="Credits the account can spend now")
    enough: bool


@dataclass
class _Plan:
    spec: RunSpec
    pages: int
    estimate: int
    available: int


async def _plan(
    body: EvaluationIn, account: Account, session: AsyncSession, state: AppState
) -> _Plan:
    """The run's spec and cost, after checking every item; nothing is written."""
    if body.classifier_id:
        classifier = await classifiers.get_classifier(
            session, account_id=account.id, classifier_id=body.classifier_id
        )
        spec = await classifiers.run_spec(
            session, state, classifier, query_model=body.query_model, overrides=body
        )
    else:
        spec = inline_spec(
            state,
            labels=validate_schema(body.classification_schema or [], state.settings),
            model=body.query_model,
            modes=body.modes_over(),
        )
    names = {s.label for s in spec.labels}
    unknown = sorted({label for i in body.items for label in i.expected} - names)
    if not spec.modes.multi_label and any(i.expected_labels is not None for i in body.items):
        raise InvalidRequest("expected_labels needs multi_label: true; give expected_label.")
    if unknown:
        raise InvalidRequest(f"Expected labels not in the schema: {', '.join(unknown[:10])}.")
    ids = list({i.document_id for i in body.items})
    documents = {
        d.id: d
        for d in (
            await session.exec(
                select(Document).where(
                    col(Document.id).in_(ids),
                    Document.account_id == account.id,
                    col(Document.deleted_at).is_(None),
                )
            )
        ).all()
    }
    missing = [i for i in ids if i not in documents]
    if missing:
        raise NotFound(f"Documents not found: {', '.join(missing[:5])}.")
    unprocessed = [d.id for d in documents.values() if d.status != "processed"]
    if unprocessed:
        raise InvalidRequest(f"Documents not processed: {', '.join(unprocessed[:5])}.")
    pages = sum(_pages(documents[i.document_id], spec.page_range) for i in body.items)
    await session.refresh(account)
    available = account.balance - account.reserved
    return _Plan(spec, pages, pages * spec.estimated_page_credits, available)


@router.post("/evaluations/estimate", dependencies=[RequireScope("evaluations")])
async def estimate_evaluation(
    request: Request,
    body: EvaluationIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> EstimateOut:
    """What POST /v1/evaluations with this body would cost, checked the same way; starts nothing."""
    check_classifier(request, body.classifier_id)
    plan = await _plan(body, account, session, state)
    return EstimateOut(
        credits_estimate=plan.estimate,
        pages=plan.pages,
        model=plan.spec.model,
        input_mode=plan.spec.modes.input_mode,
        available=plan.available,
        enough=plan.estimate <= plan.available,
    )


@router.post("/evaluations", status_code=202, dependencies=[RequireScope("evaluations")])
async def start_evaluation(
    request: Request,
    body: EvaluationIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> Started:
    """Start an evaluation run on the task queue; refused up front if credits cannot cover it."""
    check_classifier(request, body.classifier_id)
    plan = await _plan(body, account, session, state)
    spec, estimate, available = plan.spec, plan.estimate, plan.available
    labels, model = spec.labels, spec.model
    if estimate > available:
        raise InsufficientCredits(
            f"This evaluation will cost {estimate} credits ({plan.pages} pages with {model}); "
            f"the account has {available} available."
        )
    evaluation = Evaluation(
        account_id=account.id,
        name=body.name,
        classifier_id=body.classifier_id,
        classifier_version=spec.classifier_version,
        classification_schema=schema_json(labels),
        query_model=model,
        modes=spec.modes.stored(),
        total=len(body.items),
        credits_estimate=estimate,
    )
    session.add(evaluation)
    await session.flush()
    for position, item in enumerate(body.items):
        session.add(
            EvaluationItem(
                evaluation_id=evaluation.id,
                position=position,
                document_id=item.document_id,
                expected_label=item.expected[0] if item.expected else "",
                expected_labels=item.expected if spec.modes.multi_label else None,
            )
        )
    await runner.enqueue(state, session, evaluation.id)
    await state.queue.commit(session)
    return Started(
        evaluation_id=evaluation.id,
        status=evaluation.status,
        total=evaluation.total,
        credits_estimate=estimate,
    )


@router.get("/evaluations", dependencies=[RequireScope("evaluations")])
async def list_evaluations(
    account: CurrentAccount, session: SessionDep, page: PageDep
) -> Paginated[EvaluationSummary]:
    """List past evaluation runs, newest first."""
    query = (
        select(Evaluation)
        .where(Evaluation.account_id == account.id)
        .order_by(col(Evaluation.created_at).desc(), col(Evaluation.id))
    )
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[EvaluationSummary(**_summary(e)) for e in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/evaluations/{evaluation_id}", dependencies=[RequireScope("evaluations")])
async def get_evaluation(
    evaluation_id: EvaluationId, account: CurrentAccount, session: SessionDep
) -> EvaluationOut:
    """Show a run's progress, then its metrics and every item's prediction."""
    evaluation = await _get(session, account.id, evaluation_id)
    items = (
        await session.exec(
            select(EvaluationItem)
            .where(EvaluationItem.evaluation_id == evaluation.id)
            .order_by(col(EvaluationItem.position))
        )
    ).all()
    ids = list({i.document_id for i in items})
    names: dict[str, str] = {}
    for start in range(0, len(ids), 1000):  # deleted documents keep their names here
        rows = await session.exec(
            select(Document.id, Document.filename).where(
                col(Document.id).in_(ids[start : start + 1000])
            )
        )
        names.update(dict(rows.all()))
    fitted = (
        await session.exec(select(Calibration).where(Calibration.evaluation_id == evaluation.id))
    ).first()
    return EvaluationOut(
        **_summary(evaluation),
        labels=[s["label"] for s in evaluation.classification_schema],
        metrics=evaluation.metrics,
        error=evaluation.error,
        calibration=_calibration_out(fitted) if fitted else None,
        items=[
            ItemOut(
                **i.model_dump(exclude={"classification_id"}),
                request_id=i.classification_id,
                filename=names.get(i.document_id),
            )
            for i in items
        ],
    )


@router.post("/evaluations/{evaluation_id}/calibration", dependencies=[RequireScope("evaluations")])
async def fit_calibration(
    evaluation_id: EvaluationId, body: CalibrationIn, account: CurrentAccount, session: SessionDep
) -> CalibrationOut:
    """Fit a temperature on this run for its classifier version and model; applied to later
    runs of that version and model while enabled (refitting replaces the previous one)."""
    evaluation = await _get(session, account.id, evaluation_id)
    if evaluation.status != "completed" or not evaluation.classifier_id:
        raise InvalidRequest("Calibration needs a completed evaluation of a saved classifier.")
    if Modes.frozen(evaluation.modes).multi_label:
        raise InvalidRequest("Temperature calibration fits single-label runs, not multi_label.")
    completed = (
        await session.exec(
            select(func.count()).where(
                EvaluationItem.evaluation_id == evaluation.id, EvaluationItem.status == "completed"
            )
        )
    ).one()
    if completed < MIN_CALIBRATION_ITEMS:
        raise InvalidRequest(
            f"Calibration needs at least {MIN_CALIBRATION_ITEMS} completed items; "
            f"this run has {completed}."
        )
    row = await calibration.fit_from_evaluation(session, evaluation, enabled=body.enabled)
    await session.commit()
    return _calibration_out(row)


async def _target_calibration(
    session: AsyncSession, account_id: str, evaluation_id: str
) -> Calibration:
    evaluation = await _get(session, account_id, evaluation_id)
    row = None
    if evaluation.classifier_id:
        row = await calibration.find(
            session,
            classifier_id=evaluation.classifier_id,
            version=evaluation.classifier_version,
            model=evaluation.query_model,
        )
    if row is None or row.account_id != account_id:
        raise NotFound(f"No calibration for the classifier version and model of {evaluation_id}.")
    return row


@router.get("/evaluations/{evaluation_id}/calibration", dependencies=[RequireScope("evaluations")])
async def get_calibration(
    evaluation_id: EvaluationId, account: CurrentAccount, session: SessionDep
) -> CalibrationOut:
    """The calibration of this run's classifier version and model (fitted on it or another run)."""
    return _calibration_out(await _target_calibration(session, account.id, evaluation_id))


@router.patch(
    "/evaluations/{evaluation_id}/calibration", dependencies=[RequireScope("evaluations")]
)
async def set_calibration(
    evaluation_id: EvaluationId,
    body: CalibrationPatch,
    account: CurrentAccount,
    session: SessionDep,
) -> CalibrationOut:
    """Turn the calibration of this run's classifier version and model on or off."""
    row = await _target_calibration(session, account.id, evaluation_id)
    if body.enabled is not None:
        row.enabled = body.enabled
        session.add(row)
        await session.commit()
    return _calibration_out(row)
