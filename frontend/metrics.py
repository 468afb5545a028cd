"""Evaluation results as tables: per-label metrics, items, and the deltas between two runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

PER_LABEL_COLUMNS = ["label", "precision", "recall", "f1", "support"]
# Headline numbers of a run: (key in metrics, display name, True when higher is better)
HEADLINE = [
    ("accuracy", "Accuracy", True),
    ("macro_f1", "Macro F1", True),
    ("ece", "Calibration error (ECE)", False),
    ("brier", "Brier score", False),
    ("credits", "Credits", False),
    ("latency_p50", "Latency p50 (s)", False),
    ("latency_p95", "Latency p95 (s)", False),
]


def per_label_frame(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per label: precision, recall, F1, support."""
    rows = [{"label": label, **values} for label, values in metrics.get("per_label", {}).items()]
    return pd.DataFrame(rows, columns=PER_LABEL_COLUMNS)


def items_frame(items: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every item of a run with its prediction, top confidence and whether it was right."""
    rows = []
    for item in items:
        scores = item.get("confidence_scores") or {}
        predicted = item.get("predicted_label")
        rows.append(
            {
                "document": item.get("filename") or item.get("document_id"),
                "expected": item.get("expected_label"),
                "predicted": predicted,
                "correct": predicted is not None and predicted == item.get("expected_label"),
                "confidence": scores.get(predicted) if predicted else None,
                "status": item.get("status"),
                "error": item.get("error"),
                "duration": item.get("duration"),
                "document_id": item.get("document_id"),
            }
        )
    return pd.DataFrame(rows)


def compare_headline(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Headline metrics of runs A and B side by side, with B minus A."""
    rows = []
    for key, name, higher_is_better in HEADLINE:
        value_a, value_b = a.get(key), b.get(key)
        delta = None if value_a is None or value_b is None else value_b - value_a
        rows.append(
            {
                "metric": name,
                "key": key,
                "a": value_a,
                "b": value_b,
                "delta": delta,
                "higher_is_better": higher_is_better,
            }
        )
    return pd.DataFrame(rows)


def compare_per_label(
    a: Mapping[str, Any], b: Mapping[str, Any], name_a: str, name_b: str
) -> pd.DataFrame:
    """Per-label precision/recall/F1 of both runs in long form (label, run, metric, value)."""
    frames = []
    for name, metrics in ((name_a, a), (name_b, b)):
        frame = per_label_frame(metrics).drop(columns="support")
        frame = frame.melt(id_vars="label", var_name="metric", value_name="value")
        frame.insert(1, "run", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def per_label_deltas(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """F1 of each label in A and B and the change (labels missing from a run show as NaN)."""
    f1_a = per_label_frame(a).set_index("label")["f1"].rename("f1_a")
    f1_b = per_label_frame(b).set_index("label")["f1"].rename("f1_b")
    table = pd.concat([f1_a, f1_b], axis=1)
    table["delta"] = table["f1_b"] - table["f1_a"]
    return table.reset_index(names="label")
