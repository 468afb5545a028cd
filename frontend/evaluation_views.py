"""How an evaluation run is shown: one run's metrics and charts, and two runs side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import streamlit as st

from frontend.api_client import JSON
from frontend.charts import confusion_matrix_chart, per_label_comparison_chart, reliability_chart
from frontend.metrics import (
    HEADLINE,
    compare_headline,
    compare_per_label,
    items_frame,
    per_label_deltas,
    per_label_frame,
)
from frontend.ui import fmt_num, fmt_pct, fmt_seconds, fmt_time

FORMATS: dict[str, Callable[[Any], str]] = {
    "accuracy": fmt_pct,
    "macro_f1": fmt_num,
    "ece": fmt_num,
    "brier": fmt_num,
    "credits": lambda v: "-" if v is None else f"{v:g}",
    "latency_p50": fmt_seconds,
    "latency_p95": fmt_seconds,
}
SCORE_COLUMNS = {
    name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")
}


def run_title(run: Mapping[str, Any]) -> str:
    """A one-line name for a run in pickers."""
    name = run.get("name") or str(run["evaluation_id"])[:8]
    accuracy = run.get("accuracy")
    parts = [name, str(run.get("model") or "?"), str(run.get("status"))]
    input_mode = (run.get("modes") or {}).get("input_mode", "text")
    if input_mode != "text":
        parts.insert(2, f"input {input_mode}")
    if accuracy is not None:
        parts.append(f"accuracy {accuracy:.1%}")
    if run.get("created_at"):
        parts.append(fmt_time(run["created_at"]) or "")
    return " · ".join(parts)


def render_headline(metrics: Mapping[str, Any]) -> None:
    """The headline metrics of a run in two rows."""
    keys = [key for key, _, _ in HEADLINE]
    names = {key: name for key, name, _ in HEADLINE}
    for row in (keys[:4], keys[4:]):
        for column, key in zip(st.columns(4), row, strict=False):
            column.metric(names[key], FORMATS[key](metrics.get(key)))


def render_run(run: JSON) -> None:
    """Everything about one run: progress, or metrics, charts and items once it is done."""
    metrics = run.get("metrics")
    done, total = run.get("done", 0), run.get("total", 0)
    if not metrics:
        st.info(f"Status: {run.get('status')} ({done}/{total} documents).")
        st.progress(done / total if total else 0.0)
        return
    st.caption(
        f"Model `{run.get('model')}` · {done}/{total} documents · status {run.get('status')}"
    )
    render_headline(metrics)
    if metrics.get("prompt_tokens") is not None:
        st.caption(
            f"Tokens: {metrics.get('prompt_tokens')} prompt, "
            f"{metrics.get('completion_tokens')} completion"
        )
    st.subheader("Per label")
    st.dataframe(per_label_frame(metrics), hide_index=True, column_config=SCORE_COLUMNS)
    left, right = st.columns(2)
    matrix = metrics.get("confusion_matrix") or {}
    with left:
        st.subheader("Confusion matrix")
        if matrix.get("labels"):
            chart = confusion_matrix_chart(matrix["labels"], matrix["matrix"])
            st.altair_chart(chart, width="stretch")
    with right:
        st.subheader("Reliability")
        if metrics.get("reliability"):
            st.altair_chart(reliability_chart(metrics["reliability"]), width="stretch")
    if metrics.get("coverage"):
        with st.expander("Coverage at confidence thresholds"):
            st.dataframe(pd.DataFrame(metrics["coverage"]), hide_index=True)
    with st.expander(f"Items ({len(run.get('items', []))})"):
        st.dataframe(items_frame(run.get("items", [])), hide_index=True)


def render_comparison(run_a: JSON, run_b: JSON) -> None:
    """Headline deltas (B minus A), a per-label chart and per-label F1 deltas."""
    metrics_a, metrics_b = run_a.get("metrics"), run_b.get("metrics")
    if not metrics_a or not metrics_b:
        st.info("Both runs must be finished to compare them.")
        return
    name_a = f"A: {run_a.get('name') or str(run_a['evaluation_id'])[:8]}"
    name_b = f"B: {run_b.get('name') or str(run_b['evaluation_id'])[:8]}"
    mode_a, mode_b = ((r.get("modes") or {}).get("input_mode", "text") for r in (run_a, run_b))
    if mode_a != mode_b:  # e.g. text against image on the same set
        st.caption(f"Input: A reads `{mode_a}`, B reads `{mode_b}`.")
    headline = compare_headline(metrics_a, metrics_b)
    for column, row in zip(st.columns(4), headline.head(4).itertuples(), strict=False):
        fmt = FORMATS[row.key]
        unchanged = pd.isna(row.delta) or row.delta == 0
        column.metric(
            row.metric,
            fmt(row.b),
            delta=None if pd.isna(row.delta) else fmt_delta(row.key, row.delta),
            delta_color="off" if unchanged else ("normal" if row.higher_is_better else "inverse"),
            help=f"A: {fmt(row.a)}",
        )
    table = headline.assign(
        a=[FORMATS[k](v) for k, v in zip(headline["key"], headline["a"], strict=True)],
        b=[FORMATS[k](v) for k, v in zip(headline["key"], headline["b"], strict=True)],
        delta=[
            "-" if pd.isna(d) else fmt_delta(k, d)
            for k, d in zip(headline["key"], headline["delta"], strict=True)
        ],
    )[["metric", "a", "b", "delta"]]
    st.dataframe(table.rename(columns={"a": "A", "b": "B", "delta": "B - A"}), hide_index=True)
    metric = st.segmented_control(
        "Per-label metric",
        ["f1", "precision", "recall"],
        default="f1",
        key="evaluations_cmp_metric",
    )
    long = compare_per_label(metrics_a, metrics_b, name_a, name_b)
    st.altair_chart(per_label_comparison_chart(long, metric or "f1"), width="stretch")
    st.dataframe(
        per_label_deltas(metrics_a, metrics_b),
        hide_index=True,
        column_config={
            "f1_a": st.column_config.NumberColumn("F1 (A)", format="%.3f"),
            "f1_b": st.column_config.NumberColumn("F1 (B)", format="%.3f"),
            "delta": st.column_config.NumberColumn("B - A", format="%+.3f"),
        },
    )


def fmt_delta(key: str, delta: float) -> str:
    """A signed change: percentage points for accuracy, raw units otherwise."""
    if key == "accuracy":
        return f"{delta * 100:+.1f} pp"
    if key == "credits":
        return f"{delta:+g}"
    return f"{delta:+.3f}"
