"""Where one document ends and the next begins, and what each one is.

Every page has a distribution over labels (from the model); every gap between two pages has
named features (features.py) that a logistic regression (boundary_model.py) turns into the
log-odds that a new document starts there. The two are combined in a small probabilistic model
over (boundary or not at each gap, label of each page): a page either continues the current
document (same label, probability 1 - p(boundary)) or starts a new one with any label,
including the same one (p(boundary)); each page adds the log-probability of its label
(tempered by the model's label_weight).

- The segmentation is the model's most likely path (Viterbi).
- Each segment's `boundary_confidence` is the model's posterior probability that exactly
  these pages form one document: a boundary before its first page, none inside it and one after
  its last page (forward-backward; the label of the segment summed out).

So a label change alone opens a segment only when the model is surer of it than the gap
features are of a continuation (one odd page inside a W-9 stays in the W-9), and two invoices in
a row become two segments when their pages say so (a title at the top, "page 1 of 1", another
issuer, invoice number or date).
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_expit, logsumexp

from backend.splitting.boundary_model import BoundaryModel, default_model
from backend.splitting.features import all_gap_features

MIN_PROBABILITY = 1e-4  # a page's score never vetoes a label outright


@dataclass
class PageEvidence:
    """What is known about one page: its label scores, text and size."""

    scores: dict[str, float]
    text: str
    size: tuple[float, float] | None = None


@dataclass
class SegmentPlan:
    first: int  # 0-based index of its first page in the list given
    end: int  # one past its last page
    label: str
    scores: dict[str, float]
    boundary_confidence: float = 1.0


@dataclass
class Gap:
    """The boundary log-odds before one page and what it is made of (for explanations)."""

    log_odds: float
    reasons: dict[str, float] = field(default_factory=dict)


def gap_scores(pages: list[PageEvidence], model: BoundaryModel | None = None) -> list[Gap]:
    """The boundary score before every page but the first (so len(pages) - 1 gaps)."""
    model = model or default_model()
    rows = all_gap_features([p.text for p in pages], [p.size for p in pages])
    return [Gap(model.log_odds(row), model.contributions(row)) for row in rows]


def _emissions(pages: list[PageEvidence], labels: list[str], weight: float) -> np.ndarray:
    probabilities = np.array(
        [[max(p.scores[label], MIN_PROBABILITY) for label in labels] for p in pages]
    )
    return weight * np.log(probabilities)


def segment(
    pages: list[PageEvidence],
    gaps: list[Gap] | None = None,
    *,
    label_weight: float | None = None,
) -> list[SegmentPlan]:
    """The most likely segmentation (Viterbi), each segment with its label, scores and
    boundary confidence."""
    if not pages:
        return []
    labels = list(pages[0].scores)
    gaps = gap_scores(pages) if gaps is None else gaps
    weight = default_model().label_weight if label_weight is None else label_weight
    emit = _emissions(pages, labels, weight)
    z = np.array([g.log_odds for g in gaps])
    new_doc, same_doc = log_expit(z), log_expit(-z)
    n = len(pages)
    best = emit[0].copy()
    stay_back = np.zeros((n, len(labels)), dtype=bool)  # True: page i continues the segment
    leaders = np.zeros(n, dtype=int)
    for i in range(1, n):
        leader = int(np.argmax(best))
        stay, switch = best + same_doc[i - 1], best[leader] + new_doc[i - 1]
        stay_back[i] = stay >= switch
        leaders[i] = leader
        best = np.where(stay_back[i], stay, switch) + emit[i]
    label = int(np.argmax(best))
    path, starts = [label] * n, [0]
    for i in range(n - 1, 0, -1):
        if not stay_back[i][label]:
            starts.append(i)
            label = int(leaders[i])
        path[i - 1] = label
    starts.sort()
    bounds = list(zip(starts, [*starts[1:], n], strict=True))
    confidence = segment_confidences(emit, new_doc, same_doc, bounds)
    return [
        SegmentPlan(
            first,
            end,
            labels[path[first]],
            segment_scores([p.scores for p in pages[first:end]]),
            conf,
        )
        for (first, end), conf in zip(bounds, confidence, strict=True)
    ]


def segment_confidences(
    emit: np.ndarray, new_doc: np.ndarray, same_doc: np.ndarray, bounds: list[tuple[int, int]]
) -> list[float]:
    """P(pages first..end-1 are exactly one document) for each segment, by forward-backward
    over the same model the Viterbi path maximizes."""
    n = emit.shape[0]
    alpha, beta = np.zeros_like(emit), np.zeros_like(emit)
    alpha[0] = emit[0]
    for i in range(1, n):
        alpha[i] = emit[i] + np.logaddexp(
            alpha[i - 1] + same_doc[i - 1], logsumexp(alpha[i - 1]) + new_doc[i - 1]
        )
    for i in range(n - 2, -1, -1):
        beta[i] = np.logaddexp(
            same_doc[i] + emit[i + 1] + beta[i + 1],
            new_doc[i] + logsumexp(emit[i + 1] + beta[i + 1]),
        )
    total = logsumexp(alpha[-1])
    out = []
    for first, end in bounds:
        left = 0.0 if first == 0 else logsumexp(alpha[first - 1]) + new_doc[first - 1]
        inside = emit[first:end].sum(axis=0) + same_doc[first : end - 1].sum()
        right = 0.0 if end == n else new_doc[end - 1] + logsumexp(emit[end] + beta[end])
        out.append(float(min(1.0, math.exp(left + logsumexp(inside) + right - total))))
    return out


def segment_scores(distributions: list[dict[str, float]]) -> dict[str, float]:
    """A segment's distribution: the normalized geometric mean of its pages' (the product of the
    pages' evidence, tempered by their number so a long segment is not overconfident). Its top
    label is the one the segmentation chose."""
    labels = list(distributions[0])
    logs = {
        label: sum(math.log(max(d[label], MIN_PROBABILITY)) for d in distributions)
        / len(distributions)
        for label in labels
    }
    top = max(logs.values())
    weights = {label: math.exp(v - top) for label, v in logs.items()}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}
