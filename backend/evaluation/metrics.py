"""Evaluation metrics from (expected, predicted, scores) triples: pure functions."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def confusion(
    labels: list[str], expected: Sequence[str], predicted: Sequence[str]
) -> list[list[int]]:
    """matrix[i][j]: documents of labels[i] predicted as labels[j]."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for e, p in zip(expected, predicted, strict=True):
        if e in index and p in index:
            matrix[index[e]][index[p]] += 1
    return matrix


def per_label(
    labels: list[str], expected: Sequence[str], predicted: Sequence[str]
) -> dict[str, dict[str, float]]:
    out = {}
    for label in labels:
        tp = sum(e == label and p == label for e, p in zip(expected, predicted, strict=True))
        fp = sum(e != label and p == label for e, p in zip(expected, predicted, strict=True))
        fn = sum(e == label and p != label for e, p in zip(expected, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": tp + fn,
        }
    return out


def reliability(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[dict[str, float]]:
    rows = []
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        members = [
            i for i, c in enumerate(confidences) if (lower < c <= upper) or (b == 0 and c == 0)
        ]
        rows.append(
            {
                "bin_lower": lower,
                "bin_upper": upper,
                "count": len(members),
                "accuracy": round(float(np.mean([correct[i] for i in members])), 4)
                if members
                else None,
                "confidence": round(float(np.mean([confidences[i] for i in members])), 4)
                if members
                else None,
            }
        )
    return rows


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    total = len(confidences)
    if total == 0:
        return 0.0
    ece = 0.0
    for row in reliability(confidences, correct, bins):
        if row["count"]:
            ece += row["count"] / total * abs(row["accuracy"] - row["confidence"])
    return round(ece, 4)


def brier(labels: list[str], expected: Sequence[str], scores: Sequence[dict[str, float]]) -> float:
    if not expected:
        return 0.0
    total = 0.0
    for e, s in zip(expected, scores, strict=True):
        total += sum((s.get(label, 0.0) - (1.0 if label == e else 0.0)) ** 2 for label in labels)
    return round(total / len(expected), 4)


def coverage(confidences: Sequence[float], correct: Sequence[bool]) -> list[dict[str, Any]]:
    """If only results at or above a confidence threshold are trusted: how many, how accurate."""
    rows = []
    for threshold in THRESHOLDS:
        kept = [ok for c, ok in zip(confidences, correct, strict=True) if c >= threshold]
        rows.append(
            {
                "threshold": threshold,
                "coverage": round(len(kept) / len(correct), 4) if correct else 0.0,
                "accuracy": round(sum(kept) / len(kept), 4) if kept else None,
            }
        )
    return rows


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 4)


def summarize(
    labels: list[str],
    expected: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[dict[str, float]],
    *,
    durations: Sequence[float] = (),
    credits: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    failed: int = 0,
) -> dict[str, Any]:
    """Every metric of an evaluation over its completed items."""
    correct = [e == p for e, p in zip(expected, predicted, strict=True)]
    confidences = [max(s.values()) if s else 0.0 for s in scores]
    table = per_label(labels, expected, predicted)
    return {
        "n": len(expected),
        "failed": failed,
        "accuracy": round(sum(correct) / len(correct), 4) if correct else None,
        "macro_f1": round(float(np.mean([r["f1"] for r in table.values()])), 4) if table else None,
        "per_label": table,
        "confusion_matrix": {"labels": labels, "matrix": confusion(labels, expected, predicted)},
        "ece": expected_calibration_error(confidences, correct),
        "brier": brier(labels, expected, scores),
        "reliability": reliability(confidences, correct),
        "coverage": coverage(confidences, correct),
        "credits": credits,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_p50": percentile(durations, 50),
        "latency_p95": percentile(durations, 95),
    }


def fit_temperature(expected: Sequence[str], scores: Sequence[dict[str, float]]) -> float:
    """The temperature T minimizing the log-loss of softmax(log(scores) / T) on these items."""
    from scipy.optimize import minimize_scalar

    rows = [(e, s) for e, s in zip(expected, scores, strict=True) if e in s]
    if not rows:
        return 1.0

    def nll(t: float) -> float:
        loss = 0.0
        for e, s in rows:
            calibrated = apply_temperature(s, t)
            loss -= math.log(max(calibrated[e], 1e-12))
        return loss / len(rows)

    return round(float(minimize_scalar(nll, bounds=(0.05, 20), method="bounded").x), 4)


def apply_temperature(scores: dict[str, float], temperature: float) -> dict[str, float]:
    logits = {k: math.log(max(v, 1e-9)) / temperature for k, v in scores.items()}
    top = max(logits.values())
    exp = {k: math.exp(v - top) for k, v in logits.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}
