"""Every Altair chart the console draws, built from plain API data so each can be unit tested."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd


def confidence_chart(scores: Mapping[str, float], predicted: str | None = None) -> alt.Chart:
    """Horizontal bars of every label's confidence, best first, the chosen label highlighted."""
    data = pd.DataFrame({"label": list(scores), "confidence": [float(v) for v in scores.values()]})
    data["chosen"] = data["label"] == predicted
    order = data.sort_values("confidence", ascending=False)["label"].tolist()
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "confidence:Q",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%", tickCount=5),
            ),
            y=alt.Y("label:N", sort=order, title=None),
            color=alt.Color("chosen:N", legend=None, scale=alt.Scale(domain=[True, False])),
            tooltip=["label", alt.Tooltip("confidence:Q", format=".2%")],
        )
    )
    text = bars.mark_text(align="left", dx=3).encode(
        text=alt.Text("confidence:Q", format=".1%"), color=alt.value("gray")
    )
    return (bars + text).properties(height=alt.Step(28))


def confusion_matrix_chart(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> alt.Chart:
    """Heatmap of counts: rows are the expected label, columns the predicted one."""
    cells = [
        {"expected": expected, "predicted": predicted, "count": int(count)}
        for expected, row in zip(labels, matrix, strict=True)
        for predicted, count in zip(labels, row, strict=True)
    ]
    data = pd.DataFrame(cells, columns=["expected", "predicted", "count"])
    base = alt.Chart(data).encode(
        x=alt.X("predicted:N", sort=list(labels), title="Predicted"),
        y=alt.Y("expected:N", sort=list(labels), title="Expected"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["expected", "predicted", "count"],
    )
    text = base.mark_text().encode(
        text="count:Q",
        color=alt.condition(
            alt.datum.count > max((c["count"] for c in cells), default=0) / 2,
            alt.value("white"),
            alt.value("black"),
        ),
    )
    return (heat + text).properties(height=alt.Step(36))


def reliability_chart(bins: Sequence[Mapping[str, Any]]) -> alt.Chart:
    """Accuracy against mean confidence per bin, with the diagonal of perfect calibration."""
    data = pd.DataFrame(
        [b for b in bins if b.get("count")],
        columns=["bin_lower", "bin_upper", "count", "accuracy", "confidence"],
    )
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 4], color="gray"
    )
    diagonal = diagonal.encode(x="x:Q", y="y:Q")
    axis = alt.Scale(domain=[0, 1])
    base = alt.Chart(data).encode(
        x=alt.X("confidence:Q", scale=axis, title="Mean confidence"),
        y=alt.Y("accuracy:Q", scale=axis, title="Accuracy"),
        tooltip=["bin_lower", "bin_upper", "count", "accuracy", "confidence"],
    )
    line = base.mark_line(color="#1f77b4")
    points = base.mark_circle(color="#1f77b4", opacity=0.9).encode(
        size=alt.Size(
            "count:Q",
            scale=alt.Scale(range=[40, 400]),
            legend=alt.Legend(title="Items", format="d", tickMinStep=1),
        )
    )
    return (diagonal + line + points).properties(height=300)


def usage_by_day_chart(by_day: Sequence[Mapping[str, Any]]) -> alt.Chart:
    """Credits spent per day (bars) with classifications in the tooltip."""
    data = pd.DataFrame(by_day, columns=["day", "credits", "classifications", "pages"])
    # Days are ISO dates: ordinal bars are as wide as a day, and ISO strings sort by date.
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="Day", sort="ascending", axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("credits:Q", title="Credits"),
            tooltip=["day", "credits", "classifications", "pages"],
        )
        .properties(height=240)
    )


def usage_by_model_chart(by_model: Sequence[Mapping[str, Any]]) -> alt.Chart:
    """Credits spent per model."""
    data = pd.DataFrame(by_model, columns=["model", "credits", "classifications", "pages"])
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("credits:Q", title="Credits"),
            y=alt.Y("model:N", sort="-x", title=None),
            tooltip=["model", "credits", "classifications", "pages"],
        )
        .properties(height=alt.Step(28))
    )


def per_label_comparison_chart(long: pd.DataFrame, metric: str = "f1") -> alt.Chart:
    """Grouped bars of one per-label metric for two runs (from metrics.compare_per_label)."""
    data = long[long["metric"] == metric]
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("label:N", title=None),
            xOffset=alt.XOffset("run:N"),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=metric),
            color=alt.Color("run:N", title="Run"),
            tooltip=["label", "run", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=280)
    )
