"""Evaluation tables: per label, items, and run-to-run deltas."""

import math

import pytest

from frontend.metrics import compare_headline, items_frame, per_label_deltas, per_label_frame
from tests.frontend import fakes


def test_per_label_frame_has_one_row_per_label() -> None:
    frame = per_label_frame(fakes.metrics(0.6667, 0.6, 0.6667))
    assert frame["label"].tolist() == ["invoice", "other"]
    assert frame.loc[0, "recall"] == 0.5


def test_headline_delta_is_b_minus_a() -> None:
    a, b = fakes.metrics(0.5, 0.4, 0.5), fakes.metrics(0.75, 0.7, 0.8)
    table = compare_headline(a, b).set_index("key")
    assert table.loc["accuracy", "delta"] == pytest.approx(0.25)
    assert table.loc["macro_f1", "delta"] == pytest.approx(0.3)
    assert not table.loc["ece", "higher_is_better"]


def test_per_label_deltas_mark_labels_missing_from_a_run() -> None:
    a = {"per_label": {"x": {"precision": 1, "recall": 1, "f1": 0.5, "support": 1}}}
    b = {
        "per_label": {
            "x": {"precision": 1, "recall": 1, "f1": 0.75, "support": 1},
            "y": {"precision": 1, "recall": 1, "f1": 1.0, "support": 1},
        }
    }
    table = per_label_deltas(a, b).set_index("label")
    assert table.loc["x", "delta"] == pytest.approx(0.25)
    assert math.isnan(table.loc["y", "delta"])


def test_items_frame_marks_correct_predictions() -> None:
    items = [
        {
            "document_id": "1",
            "expected_label": "a",
            "predicted_label": "a",
            "confidence_scores": {"a": 0.9, "b": 0.1},
        },
        {
            "document_id": "2",
            "expected_label": "a",
            "predicted_label": "b",
            "confidence_scores": {"a": 0.3, "b": 0.7},
        },
        {
            "document_id": "3",
            "expected_label": "a",
            "predicted_label": None,
            "status": "failed",
            "error": "model_error",
        },
    ]
    frame = items_frame(items)
    assert frame["correct"].tolist() == [True, False, False]
    assert frame["confidence"].tolist()[:2] == [0.9, 0.7]
