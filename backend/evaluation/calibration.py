"""Temperature scaling fitted on an evaluation, applied to later results of the same classifier
version and model while it is enabled."""

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.evaluation.metrics import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from backend.models import Calibration, Evaluation, EvaluationItem


async def fit_from_evaluation(
    session: AsyncSession, evaluation: Evaluation, *, enabled: bool
) -> Calibration:
    items = (
        await session.exec(
            select(EvaluationItem).where(
                EvaluationItem.evaluation_id == evaluation.id, EvaluationItem.status == "completed"
            )
        )
    ).all()
    expected = [i.expected_label for i in items]
    scores = [i.confidence_scores or {} for i in items]
    temperature = fit_temperature(expected, scores)

    def ece(rows: list[dict[str, float]]) -> float:
        confidences = [max(r.values()) for r in rows]
        correct = [max(r, key=lambda k: r[k]) == e for r, e in zip(rows, expected, strict=True)]
        return expected_calibration_error(confidences, correct)

    calibrated = [apply_temperature(s, temperature) for s in scores]
    row = (
        await session.exec(
            select(Calibration).where(
                Calibration.classifier_id == evaluation.classifier_id,
                Calibration.version == evaluation.classifier_version,
                Calibration.model == evaluation.query_model,
            )
        )
    ).first() or Calibration(
        account_id=evaluation.account_id,
        classifier_id=evaluation.classifier_id,
        version=evaluation.classifier_version,
        model=evaluation.query_model,
        temperature=1.0,
        evaluation_id=evaluation.id,
        ece_before=0.0,
        ece_after=0.0,
    )
    row.temperature, row.evaluation_id, row.enabled = temperature, evaluation.id, enabled
    row.ece_before, row.ece_after = ece(scores), ece(calibrated)
    session.add(row)
    await session.flush()
    return row


async def calibrator(session: AsyncSession, *, classifier_id: str, version: int, model: str):  # noqa: ANN201
    """A function applying the enabled calibration for this target, or None."""
    row = (
        await session.exec(
            select(Calibration).where(
                Calibration.classifier_id == classifier_id,
                Calibration.version == version,
                Calibration.model == model,
                Calibration.enabled == True,  # noqa: E712
            )
        )
    ).first()
    if row is None:
        return None
    temperature = row.temperature

    async def apply(scores: dict[str, float]) -> dict[str, float]:
        from backend.backends.llm.confidence import round_distribution

        return round_distribution(apply_temperature(scores, temperature))

    return apply
