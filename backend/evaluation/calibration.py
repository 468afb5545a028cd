"""Temperature scaling fitted on an evaluation, applied to later results of the same classifier
version and model while it is enabled.

One scalar T per (classifier, version, model): calibrated = softmax(log(scores) / T), fitted by
minimizing the negative log-likelihood of the expected labels over the run's completed items.
It keeps every prediction (the top label cannot change) and only moves the confidence.
Evaluations of a classifier run with its enabled calibration, as its runs do, so a later
evaluation measures the calibrated confidence on fresh documents.
"""

from collections.abc import Awaitable, Callable

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.llm.confidence import round_distribution
from backend.evaluation.metrics import apply_temperature, fit_temperature, scores_ece
from backend.models import Calibration, Evaluation, EvaluationItem

Calibrate = Callable[[dict[str, float]], Awaitable[dict[str, float]]]


async def find(
    session: AsyncSession, *, classifier_id: str, version: int, model: str
) -> Calibration | None:
    """The stored calibration of a classifier version and model, enabled or not."""
    return (
        await session.exec(
            select(Calibration).where(
                Calibration.classifier_id == classifier_id,
                Calibration.version == version,
                Calibration.model == model,
            )
        )
    ).first()


async def fit_from_evaluation(
    session: AsyncSession, evaluation: Evaluation, *, enabled: bool
) -> Calibration:
    """Fit T on the run's completed items and store it for its classifier version and model.

    ECE before is the run's own (with the calibration it ran with, if any), after is with the
    new temperature."""
    items = (
        await session.exec(
            select(EvaluationItem).where(
                EvaluationItem.evaluation_id == evaluation.id, EvaluationItem.status == "completed"
            )
        )
    ).all()
    expected = [i.expected_label for i in items]
    scores = [i.confidence_scores or {} for i in items]
    refit = fit_temperature(expected, scores)
    calibrated = [apply_temperature(s, refit) for s in scores]
    # A run made with a calibration on has scaled scores: scalings compose by multiplying.
    temperature = round(
        refit * ((evaluation.metrics or {}).get("calibration_temperature") or 1.0), 4
    )
    row = await find(
        session,
        classifier_id=evaluation.classifier_id,
        version=evaluation.classifier_version,
        model=evaluation.query_model,
    )
    if row is None:
        row = Calibration(
            account_id=evaluation.account_id,
            classifier_id=evaluation.classifier_id,
            version=evaluation.classifier_version,
            model=evaluation.query_model,
            temperature=temperature,
            evaluation_id=evaluation.id,
            ece_before=0.0,
            ece_after=0.0,
        )
    row.temperature, row.evaluation_id, row.enabled = temperature, evaluation.id, enabled
    row.ece_before, row.ece_after = scores_ece(expected, scores), scores_ece(expected, calibrated)
    session.add(row)
    await session.flush()
    return row


def scaler(temperature: float) -> Calibrate:
    """The function a classification applies to its scores for this temperature."""

    async def apply(scores: dict[str, float]) -> dict[str, float]:
        return round_distribution(apply_temperature(scores, temperature))

    return apply


async def calibrator(
    session: AsyncSession, *, classifier_id: str, version: int, model: str
) -> Calibrate | None:
    """A function applying the enabled calibration of this target, or None when there is none."""
    row = await find(session, classifier_id=classifier_id, version=version, model=model)
    return scaler(row.temperature) if row is not None and row.enabled else None


async def calibrate_scores(
    session: AsyncSession, *, classifier_id: str, version: int, model: str, scores: dict[str, float]
) -> dict[str, float]:
    """The scores with the enabled calibration of this target applied (unchanged without one)."""
    apply = await calibrator(session, classifier_id=classifier_id, version=version, model=model)
    return await apply(scores) if apply else scores
