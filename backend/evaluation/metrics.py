"""Evaluation metrics over completed items: pure functions of labels, predictions and scores.

Conventions: `labels` is the schema's label order; `scores` are the items' confidence
distributions; an item's confidence is its top score. Calibration uses 10 equal-width bins
(lower, upper], the first bin also holding 0 (Guo et al. 2017). Brier is the multi-class form:
the sum over labels of the squared error, averaged over items (0 is perfect, 2 the worst).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
BINS = 10
DIGITS = 4
MIN_SCORE = 1e-9  # log(0) guard: a score of 0 becomes a very unlikely, not impossible, label
TEMPERATURE_BOUNDS = (0.05, 20.0)
CV_FOLDS = 5

Scores = Mapping[str, float]


def top_confidence(scores: Scores) -> float:
    """The top score of a distribution (0 for an empty one)."""
    return max(scores.values(), default=0.0)


def top_label(scores: Scores) -> str | None:
    """The label with the top score (None for an empty distribution)."""
    return max(scores, key=lambda k: scores[k]) if scores else None


def confusion(
    labels: list[str], expected: Sequence[str], predicted: Sequence[str]
) -> list[list[int]]:
    """matrix[i][j]: documents of labels[i] predicted as labels[j]."""
    if not expected:
        return [[0] * len(labels) for _ in labels]
    return confusion_matrix(list(expected), list(predicted), labels=labels).tolist()


def per_label(
    labels: list[str], expected: Sequence[str], predicted: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every schema label (0 where undefined)."""
    if not expected:
        return {
            label: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for label in labels
        }
    precision, recall, f1, support = precision_recall_fscore_support(
        list(expected), list(predicted), labels=labels, zero_division=0
    )
    return {
        label: {
            "precision": round(float(precision[i]), DIGITS),
            "recall": round(float(recall[i]), DIGITS),
            "f1": round(float(f1[i]), DIGITS),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float | None:
    """Unweighted mean F1 over the labels that occur (expected or predicted), as sklearn does."""
    if not expected:
        return None
    present = sorted(set(expected) | set(predicted))
    _, _, f1, _ = precision_recall_fscore_support(
        list(expected), list(predicted), labels=present, zero_division=0
    )
    return round(float(np.mean(f1)), DIGITS)


def _bin_index(confidences: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence: (lower, upper] bins, 0 in the first."""
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.digitize(confidences, inner_edges, right=True)


def reliability(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = BINS
) -> list[dict[str, Any]]:
    """Per confidence bin: how many items, their accuracy and their mean confidence."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=float)
    index = _bin_index(conf, bins)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append(
            {
                "bin_lower": round(b / bins, DIGITS),
                "bin_upper": round((b + 1) / bins, DIGITS),
                "count": count,
                "accuracy": round(float(ok[members].mean()), DIGITS) if count else None,
                "confidence": round(float(conf[members].mean()), DIGITS) if count else None,
            }
        )
    return rows


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = BINS
) -> float:
    """Sum over bins of (share of items) x |accuracy - mean confidence|."""
    conf = np.asarray(confidences, dtype=float)
    if conf.size == 0:
        return 0.0
    ok = np.asarray(correct, dtype=float)
    index = _bin_index(conf, bins)
    ece = 0.0
    for b in np.unique(index):
        members = index == b
        ece += members.mean() * abs(ok[members].mean() - conf[members].mean())
    return round(float(ece), DIGITS)


def scores_ece(expected: Sequence[str], scores: Sequence[Scores]) -> float:
    """Expected calibration error of distributions against the expected labels."""
    return expected_calibration_error(
        [top_confidence(s) for s in scores],
        [top_label(s) == e for s, e in zip(scores, expected, strict=True)],
    )


def brier(labels: list[str], expected: Sequence[str], scores: Sequence[Scores]) -> float:
    """Multi-class Brier score: mean over items of the summed squared error over labels."""
    if not expected:
        return 0.0
    probs = np.array([[s.get(label, 0.0) for label in labels] for s in scores], dtype=float)
    truth = np.array([[label == e for label in labels] for e in expected], dtype=float)
    return round(float(((probs - truth) ** 2).sum(axis=1).mean()), DIGITS)


def coverage(
    confidences: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, Any]]:
    """If only results at or above a confidence threshold are trusted: how many, how accurate."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    rows = []
    for threshold in thresholds:
        kept = ok[conf >= threshold]
        rows.append(
            {
                "threshold": threshold,
                "coverage": round(kept.size / ok.size, DIGITS) if ok.size else 0.0,
                "accuracy": round(float(kept.mean()), DIGITS) if kept.size else None,
            }
        )
    return rows


REVIEW_SHARES = (0.05, 0.10, 0.20)
TARGET_ACCURACIES = (0.9, 0.95, 0.98, 0.99)
CURVE_POINTS = 50
# Under this AUROC, confidence barely tells right answers from wrong ones (0.5 is chance).
USEFUL_AUROC = 0.65


def confidence_auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """AUROC of confidence as a score for "this answer is right" (0.5: no better than chance);
    None when every answer is right or every one wrong."""
    ok = np.asarray(correct, dtype=bool)
    if ok.all() or not ok.any():
        return None
    return round(float(roc_auc_score(ok, np.asarray(confidences, dtype=float))), DIGITS)


def _by_confidence(confidences: Sequence[float], correct: Sequence[bool]):  # noqa: ANN202
    """Confidences and correctness, least confident first (ties: wrong answers last, so the
    figures never flatter the ranking)."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    order = np.lexsort((~ok, conf))
    return conf[order], ok[order]


def errors_caught(
    confidences: Sequence[float], correct: Sequence[bool], shares: Sequence[float] = REVIEW_SHARES
) -> dict[str, float | None]:
    """Share of all wrong answers among the lowest-confidence X% (what reviewing X% catches);
    keys are percents ("5", "10", "20"). None when nothing is wrong."""
    conf, ok = _by_confidence(confidences, correct)
    errors = int((~ok).sum())
    out: dict[str, float | None] = {}
    for share in shares:
        reviewed = math.ceil(share * conf.size - 1e-9)
        caught = int((~ok[:reviewed]).sum())
        out[f"{round(share * 100):g}"] = round(caught / errors, DIGITS) if errors else None
    return out


def risk_coverage(
    confidences: Sequence[float], correct: Sequence[bool], points: int = CURVE_POINTS
) -> list[dict[str, float]]:
    """The accuracy of the results kept when only those at or above each threshold are kept,
    thresholds at the items' own confidences (at most `points` of them, evenly by coverage)."""
    conf, ok = _by_confidence(confidences, correct)
    n = conf.size
    if not n:
        return []
    rows = []
    # Keeping the top k: thresholds where coverage changes, sampled evenly over k.
    for k in sorted({max(1, round(n * i / points)) for i in range(1, points + 1)}):
        kept = ok[n - k :]
        rows.append(
            {
                "threshold": round(float(conf[n - k]), DIGITS),
                "coverage": round(k / n, DIGITS),
                "accuracy": round(float(kept.mean()), DIGITS),
            }
        )
    return rows


def threshold_for_accuracy(
    confidences: Sequence[float], correct: Sequence[bool], target: float
) -> dict[str, float] | None:
    """The lowest confidence threshold whose accepted results (confidence >= threshold) reach
    `target` accuracy, with the share accepted (coverage) and sent to review; None if no
    threshold does."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    for threshold in np.unique(conf):  # ascending
        kept = ok[conf >= threshold]
        if kept.size and kept.mean() >= target:
            covered = kept.size / ok.size
            return {
                "threshold": round(float(threshold), DIGITS),
                "coverage": round(covered, DIGITS),
                "accuracy": round(float(kept.mean()), DIGITS),
                "review_share": round(1 - covered, DIGITS),
            }
    return None


def review_metrics(confidences: Sequence[float], correct: Sequence[bool]) -> dict[str, Any]:
    """How well confidence picks out the answers a person should check."""
    auroc = confidence_auroc(confidences, correct)
    return {
        "auroc": auroc,
        # Visible on its own: a well-calibrated ECE says nothing about ranking.
        "ranking_useful": None if auroc is None else auroc >= USEFUL_AUROC,
        "errors_caught": errors_caught(confidences, correct),
        "at_accuracy": {
            f"{target:g}": threshold_for_accuracy(confidences, correct, target)
            for target in TARGET_ACCURACIES
        },
        "risk_coverage": risk_coverage(confidences, correct),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None without values."""
    if not values:
        return None
    return round(float(np.percentile(values, q)), DIGITS)


def summarize(
    labels: list[str],
    expected: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[Scores],
    *,
    durations: Sequence[float] = (),
    credits: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_usd: float | None = None,
    failed: int = 0,
) -> dict[str, Any]:
    """Every metric of an evaluation over its completed items."""
    correct = [e == p for e, p in zip(expected, predicted, strict=True)]
    confidences = [top_confidence(s) for s in scores]
    return {
        "n": len(expected),
        "failed": failed,
        "accuracy": round(sum(correct) / len(correct), DIGITS) if correct else None,
        "macro_f1": macro_f1(expected, predicted),
        "per_label": per_label(labels, expected, predicted),
        "confusion_matrix": {"labels": labels, "matrix": confusion(labels, expected, predicted)},
        "ece": expected_calibration_error(confidences, correct),
        "brier": brier(labels, expected, scores),
        "reliability": reliability(confidences, correct),
        "coverage": coverage(confidences, correct),
        "review": review_metrics(confidences, correct),
        "credits": credits,
        "cost_usd": None if cost_usd is None else round(cost_usd, 6),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_p50": percentile(durations, 50),
        "latency_p95": percentile(durations, 95),
        "latency_mean": round(float(np.mean(durations)), DIGITS) if len(durations) else None,
        "calibration_estimate": calibration_estimate(expected, scores),
    }


def _log_scores(labels: list[str], scores: Sequence[Scores]) -> np.ndarray:
    return np.log(
        np.maximum(
            np.array([[s.get(label, 0.0) for label in labels] for s in scores], dtype=float),
            MIN_SCORE,
        )
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def fit_temperature(expected: Sequence[str], scores: Sequence[Scores]) -> float:
    """The temperature T minimizing the mean NLL of softmax(log(scores) / T) on these items."""
    rows = [(e, s) for e, s in zip(expected, scores, strict=True) if e in s]
    if not rows:
        return 1.0
    labels = sorted({label for _, s in rows for label in s})
    logits = _log_scores(labels, [s for _, s in rows])
    truth = np.array([labels.index(e) for e, _ in rows])

    def nll(t: float) -> float:
        log_probs = logits / t
        log_probs = log_probs - np.logaddexp.reduce(log_probs, axis=1, keepdims=True)
        return float(-log_probs[np.arange(len(truth)), truth].mean())

    best = minimize_scalar(nll, bounds=TEMPERATURE_BOUNDS, method="bounded")
    return round(float(best.x), DIGITS)


def apply_temperature(scores: Scores, temperature: float) -> dict[str, float]:
    """softmax(log(scores) / T): T > 1 softens an overconfident distribution, T < 1 sharpens it."""
    if not scores or math.isclose(temperature, 1.0):
        return dict(scores)
    labels = list(scores)
    probs = _softmax(_log_scores(labels, [scores])[0] / temperature)
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def calibration_estimate(
    expected: Sequence[str], scores: Sequence[Scores], folds: int = CV_FOLDS
) -> dict[str, Any] | None:
    """What temperature scaling would do: T fitted on every item, and the ECE when each item is
    scaled by a T fitted without its fold (out of sample, so not flattered by the fit)."""
    n = len(expected)
    if n < 2 * folds:
        return None
    calibrated: list[Scores] = list(scores)
    for k in range(folds):
        # Folds by position modulo k: datasets come grouped by label, so each fold mixes them.
        train = [i for i in range(n) if i % folds != k]
        t = fit_temperature([expected[i] for i in train], [scores[i] for i in train])
        for i in range(k, n, folds):
            calibrated[i] = apply_temperature(scores[i], t)
    return {
        "temperature": fit_temperature(expected, scores),
        "ece_before": scores_ece(expected, scores),
        "ece_after_cv": scores_ece(expected, calibrated),
        "folds": folds,
    }


def multi_label_summary(
    labels: list[str],
    expected: Sequence[Sequence[str]],
    scores: Sequence[Scores],
    threshold: float = 0.5,
) -> dict[str, Any] | None:
    """Multi-label metrics: a label is predicted when its independent probability reaches the
    threshold. Micro F1 (over every label decision), macro F1 (mean over labels), exact match
    (the predicted set is the expected set), per-label precision/recall/F1/support and a
    reliability table per label (probability vs how often the label was right)."""
    if not expected:
        return None
    truth = np.array([[label in set(e) for label in labels] for e in expected], dtype=int)
    probs = np.array([[s.get(label, 0.0) for label in labels] for s in scores], dtype=float)
    predicted = (probs >= threshold).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, average=None, zero_division=0
    )
    micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    return {
        "threshold": threshold,
        "micro_f1": round(float(micro[2]), DIGITS),
        "macro_f1": round(float(np.mean(f1)), DIGITS),
        "exact_match": round(float(np.mean((truth == predicted).all(axis=1))), DIGITS),
        "per_label": {
            label: {
                "precision": round(float(precision[i]), DIGITS),
                "recall": round(float(recall[i]), DIGITS),
                "f1": round(float(f1[i]), DIGITS),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "reliability_per_label": {
            label: reliability(probs[:, i].tolist(), truth[:, i].astype(bool).tolist())
            for i, label in enumerate(labels)
        },
    }
