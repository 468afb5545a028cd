"""Evaluation metrics against hand-computed cases and scikit-learn's reference functions."""

import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score

from backend.evaluation.metrics import (
    apply_temperature,
    brier,
    confusion,
    coverage,
    expected_calibration_error,
    fit_temperature,
    macro_f1,
    per_label,
    percentile,
    reliability,
    review_metrics,
    risk_coverage,
    summarize,
    threshold_for_accuracy,
)

LABELS = ["a", "b", "c"]


def random_run(seed: int, n: int = 80) -> tuple[list[str], list[str], list[dict[str, float]]]:
    """Expected labels, and predictions that are the argmax of random distributions."""
    rng = random.Random(seed)
    expected, predicted, scores = [], [], []
    for _ in range(n):
        truth = rng.choice(LABELS)
        raw = {
            label: rng.random() + (1.5 if label == truth and rng.random() < 0.6 else 0)
            for label in LABELS
        }
        total = sum(raw.values())
        dist = {k: v / total for k, v in raw.items()}
        expected.append(truth)
        predicted.append(max(dist, key=lambda k: dist[k]))
        scores.append(dist)
    return expected, predicted, scores


def test_hand_computed_case():
    summary = summarize(
        ["a", "b"],
        ["a", "a", "b", "b"],
        ["a", "b", "b", "b"],
        [{"a": 0.9, "b": 0.1}, {"a": 0.4, "b": 0.6}, {"a": 0.2, "b": 0.8}, {"a": 0.3, "b": 0.7}],
        durations=[1.0, 2.0, 3.0, 10.0],
        credits=7,
    )
    assert summary["n"] == 4 and summary["accuracy"] == 0.75
    # a: tp 1, fp 0, fn 1; b: tp 2, fp 1, fn 0
    assert summary["per_label"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
        "support": 2,
    }
    assert summary["per_label"]["b"] == {
        "precision": 0.6667,
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert summary["macro_f1"] == round((2 / 3 + 0.8) / 2, 4)
    assert summary["confusion_matrix"] == {"labels": ["a", "b"], "matrix": [[1, 1], [0, 2]]}
    # squared errors per item: 0.02, 0.72, 0.08, 0.18
    assert summary["brier"] == 0.25
    # confidences 0.9, 0.6, 0.8, 0.7 (one per bin), correct T, F, T, T
    assert summary["ece"] == round((0.1 + 0.6 + 0.2 + 0.3) / 4, 4)
    assert summary["coverage"][4] == {"threshold": 0.8, "coverage": 0.5, "accuracy": 1.0}
    assert summary["latency_p50"] == 2.5 and summary["latency_p95"] == pytest.approx(8.95)
    assert summary["latency_mean"] == 4.0 and summary["credits"] == 7


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_sklearn_and_with_counting(seed):
    expected, predicted, scores = random_run(seed)
    summary = summarize(LABELS, expected, predicted, scores)
    assert summary["accuracy"] == round(accuracy_score(expected, predicted), 4)
    assert summary["macro_f1"] == round(f1_score(expected, predicted, average="macro"), 4)
    assert summary["brier"] == pytest.approx(
        brier_score_loss(expected, [[s[label] for label in LABELS] for s in scores], labels=LABELS),
        abs=1e-4,
    )
    matrix = summary["confusion_matrix"]["matrix"]
    for i, e in enumerate(LABELS):
        for j, p in enumerate(LABELS):
            assert matrix[i][j] == sum(
                x == e and y == p for x, y in zip(expected, predicted, strict=True)
            )
    for label, row in summary["per_label"].items():
        tp = matrix[LABELS.index(label)][LABELS.index(label)]
        assert row["support"] == sum(matrix[LABELS.index(label)])
        predicted_as = sum(r[LABELS.index(label)] for r in matrix)
        assert row["precision"] == round(tp / predicted_as, 4)
        assert row["recall"] == round(tp / row["support"], 4)
    bins = summary["reliability"]
    assert sum(b["count"] for b in bins) == len(expected)
    ece = sum(
        b["count"] / len(expected) * abs(b["accuracy"] - b["confidence"])
        for b in bins
        if b["count"]
    )
    assert summary["ece"] == pytest.approx(ece, abs=1e-3)  # bins are rounded to 4 digits


def test_bins_are_lower_open_upper_closed():
    rows = reliability([0.0, 0.1, 0.7, 0.70001, 1.0], [True] * 5)
    counts = {(r["bin_lower"], r["bin_upper"]): r["count"] for r in rows}
    assert counts[(0.0, 0.1)] == 2  # 0 and 0.1 itself
    assert counts[(0.6, 0.7)] == 1 and counts[(0.7, 0.8)] == 1
    assert counts[(0.9, 1.0)] == 1
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert expected_calibration_error([1.0, 1.0], [False, False]) == 1.0


def test_labels_never_predicted_or_expected():
    table = per_label(["a", "b", "c"], ["a", "a"], ["a", "b"])
    assert table["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert table["b"]["precision"] == 0.0 and table["a"]["recall"] == 0.5
    # macro F1 over the labels that occur (a and b), as sklearn's default
    assert macro_f1(["a", "a"], ["a", "b"]) == round(
        f1_score(["a", "a"], ["a", "b"], average="macro"), 4
    )


def test_empty_run():
    summary = summarize(["a", "b"], [], [], [], failed=3)
    assert summary["accuracy"] is None and summary["macro_f1"] is None and summary["failed"] == 3
    assert summary["confusion_matrix"]["matrix"] == [[0, 0], [0, 0]]
    assert summary["latency_p50"] is None and summary["ece"] == 0.0
    assert confusion(["a"], [], []) == [[0]] and brier(["a"], [], []) == 0.0
    assert percentile([], 50) is None
    assert coverage([], [])[0] == {"threshold": 0.0, "coverage": 0.0, "accuracy": None}


def test_temperature_fit_softens_overconfidence_and_sharpens_underconfidence():
    scores = [{"a": 0.99, "b": 0.01}] * 10
    t = fit_temperature(["a"] * 7 + ["b"] * 3, scores)
    assert t > 1
    # the fitted T makes the confidence match the 70% accuracy
    assert apply_temperature(scores[0], t)["a"] == pytest.approx(0.7, abs=0.01)
    timid = [{"a": 0.6, "b": 0.4}] * 10
    assert fit_temperature(["a"] * 10, timid) < 1


def test_temperature_keeps_the_ranking_and_sums_to_one():
    scores = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.0}
    for t in (0.3, 1.0, 4.0):
        out = apply_temperature(scores, t)
        assert sum(out.values()) == pytest.approx(1.0)
        assert sorted(out, key=out.get, reverse=True)[:3] == ["a", "b", "c"]
    assert apply_temperature(scores, 1.0) == scores
    assert apply_temperature(scores, 4.0)["a"] < 0.5 < apply_temperature(scores, 0.3)["a"]


def test_calibration_estimate_is_out_of_sample():
    """Labels drawn from calibrated distributions, scores sharpened (overconfident)."""
    rng = np.random.default_rng(7)
    expected, scores = [], []
    for p in rng.dirichlet([1.0, 1.0, 1.0], size=300):
        expected.append(LABELS[rng.choice(3, p=p)])
        sharp = p**3 / (p**3).sum()
        scores.append(dict(zip(LABELS, sharp.tolist(), strict=True)))
    predicted = [max(s, key=s.get) for s in scores]
    estimate = summarize(LABELS, expected, predicted, scores)["calibration_estimate"]
    assert estimate["folds"] == 5
    assert estimate["temperature"] == pytest.approx(3, rel=0.25)
    assert estimate["ece_after_cv"] < estimate["ece_before"] / 2
    assert (
        summarize(LABELS, expected[:9], predicted[:9], scores[:9])["calibration_estimate"] is None
    )


def test_multi_label_metrics_and_per_label_reliability_plot(tmp_path):
    from backend.evaluation.metrics import multi_label_summary
    from evals.report import plot_multi_label_reliability

    labels = ["nda", "dpa", "invoice"]
    expected = [["nda", "dpa"], ["invoice"], ["nda"], []]
    scores = [
        {"nda": 0.9, "dpa": 0.7, "invoice": 0.1},  # exact
        {"nda": 0.6, "dpa": 0.1, "invoice": 0.8},  # nda is a false positive
        {"nda": 0.4, "dpa": 0.2, "invoice": 0.1},  # nda missed
        {"nda": 0.1, "dpa": 0.1, "invoice": 0.1},  # exact (nothing)
    ]
    summary = multi_label_summary(labels, expected, scores)
    assert summary["exact_match"] == 0.5
    assert summary["per_label"]["nda"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "support": 2,
    }
    # micro: TP 3 (nda, dpa, invoice), FP 1, FN 1 -> F1 0.75; macro: (0.5 + 1 + 1) / 3
    assert summary["micro_f1"] == 0.75 and summary["macro_f1"] == pytest.approx(2.5 / 3, abs=1e-4)
    bins = summary["reliability_per_label"]["nda"]
    assert sum(r["count"] for r in bins) == 4
    path = tmp_path / "per_label.png"
    plot_multi_label_reliability({"model": "m", "multi_label": summary}, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_review_metrics_against_sklearn_and_hand_counts():
    from sklearn.metrics import roc_auc_score

    rng = random.Random(3)
    confidences = [rng.random() for _ in range(200)]
    correct = [rng.random() < c for c in confidences]
    review = review_metrics(confidences, correct)
    assert review["auroc"] == round(roc_auc_score(correct, confidences), 4)
    assert review["ranking_useful"] is True
    # Reviewing the lowest 10% (20 items) catches exactly the errors among them.
    lowest = sorted(zip(confidences, correct, strict=True))[:20]
    errors = correct.count(False)
    assert review["errors_caught"]["10"] == round(sum(not ok for _, ok in lowest) / errors, 4)
    curve = review["risk_coverage"]
    assert curve[-1]["coverage"] == 1.0 and curve[-1]["accuracy"] == round(sum(correct) / 200, 4)


def test_useless_ranking_is_visible_even_when_calibrated():
    # Every answer at 0.8, 80% right: perfectly calibrated, but confidence ranks nothing.
    confidences = [0.8] * 100
    correct = [i % 5 != 0 for i in range(100)]
    assert expected_calibration_error(confidences, correct) == 0.0
    review = review_metrics(confidences, correct)
    assert review["auroc"] == 0.5 and review["ranking_useful"] is False
    # Ties never flatter: with equal confidences, the errors are taken last.
    assert review["errors_caught"]["20"] == 0.0


def test_threshold_for_accuracy_is_the_lowest_that_reaches_the_target():
    confidences = [0.3, 0.5, 0.6, 0.7, 0.9, 0.95]
    correct = [False, False, True, True, True, True]
    found = threshold_for_accuracy(confidences, correct, 0.98)
    assert found == {"threshold": 0.6, "coverage": 0.6667, "accuracy": 1.0, "review_share": 0.3333}
    assert threshold_for_accuracy(confidences, correct, 0.6)["threshold"] == 0.3
    assert threshold_for_accuracy([0.9], [False], 0.5) is None
    assert risk_coverage([], []) == []
