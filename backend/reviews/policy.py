"""A classifier version's review policy: a confidence threshold, or a target accuracy from which
the threshold is derived on the classifier's latest completed evaluation run."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.evaluation.metrics import threshold_for_accuracy, top_confidence
from backend.models import Evaluation, EvaluationItem

# A target no threshold reaches on the latest evaluation, or one without any evaluation,
# sends everything to review: nothing is known to meet it.
EVERYTHING = 1.01


class ReviewPolicy(BaseModel):
    """Either `threshold` or `target_accuracy` (neither: the server's default threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="Results under this confidence go to review",
    )
    target_accuracy: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=1.0,
        description="Derive the threshold: the lowest one whose accepted results reached this "
        "accuracy on the classifier's latest completed evaluation",
    )

    @model_validator(mode="after")
    def _one(self) -> "ReviewPolicy":
        if self.threshold is not None and self.target_accuracy is not None:
            raise ValueError("give threshold or target_accuracy, not both")
        return self

    def stored(self) -> dict[str, Any] | None:
        return self.model_dump(exclude_none=True) or None


class ResolvedPolicy(BaseModel):
    """The threshold in force and, for a target accuracy, the figures it was derived from."""

    threshold: float
    source: str = Field(description="default | threshold | target_accuracy")
    target_accuracy: float | None = None
    evaluation_id: str | None = Field(default=None, description="The run it was derived on")
    coverage: float | None = Field(
        default=None, description="Share of that run's documents accepted without review"
    )
    accuracy: float | None = Field(default=None, description="Their accuracy")
    review_share: float | None = Field(default=None, description="Share sent to review")


async def latest_evaluation(session: AsyncSession, classifier_id: str) -> Evaluation | None:
    return (
        await session.exec(
            select(Evaluation)
            .where(Evaluation.classifier_id == classifier_id, Evaluation.status == "completed")
            .order_by(col(Evaluation.finished_at).desc(), col(Evaluation.id))
        )
    ).first()


async def evaluation_outcomes(
    session: AsyncSession, evaluation_id: str
) -> tuple[list[float], list[bool]]:
    """Top confidence and correctness of each completed item."""
    items = (
        await session.exec(
            select(EvaluationItem).where(
                EvaluationItem.evaluation_id == evaluation_id,
                EvaluationItem.status == "completed",
            )
        )
    ).all()
    confidences = [top_confidence(i.confidence_scores or {}) for i in items]
    correct = [i.predicted_label == i.expected_label for i in items]
    return confidences, correct


async def resolve(
    session: AsyncSession, stored: dict[str, Any] | None, *, classifier_id: str, default: float
) -> ResolvedPolicy:
    policy = ReviewPolicy.model_validate(stored or {})
    if policy.threshold is not None:
        return ResolvedPolicy(threshold=policy.threshold, source="threshold")
    if policy.target_accuracy is None:
        return ResolvedPolicy(threshold=default, source="default")
    resolved = ResolvedPolicy(
        threshold=EVERYTHING, source="target_accuracy", target_accuracy=policy.target_accuracy
    )
    evaluation = await latest_evaluation(session, classifier_id)
    if evaluation is None:
        return resolved
    confidences, correct = await evaluation_outcomes(session, evaluation.id)
    found = threshold_for_accuracy(confidences, correct, policy.target_accuracy)
    resolved.evaluation_id = evaluation.id
    if found is None:
        resolved.coverage, resolved.review_share = 0.0, 1.0
        return resolved
    resolved.threshold = found["threshold"]
    resolved.coverage = found["coverage"]
    resolved.accuracy = found["accuracy"]
    resolved.review_share = found["review_share"]
    return resolved
