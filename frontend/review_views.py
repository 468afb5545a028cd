"""The classifier page's Review tab: the threshold in force, how it is set, what it trades."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from frontend.api_client import JSON, DocSiftClient
from frontend.ui import call, flash, fmt_num, fmt_pct

MODES = {
    "default": "Server default",
    "threshold": "Threshold",
    "target_accuracy": "Target accuracy",
}


def tradeoff_table(at_accuracy: JSON) -> pd.DataFrame:
    """One row per target accuracy: the threshold reaching it and the share sent to review."""
    rows = []
    for target, row in at_accuracy.items():
        rows.append(
            {
                "target accuracy": target,
                "threshold": row["threshold"] if row else None,
                "auto-accepted": row["coverage"] if row else 0.0,
                "their accuracy": row["accuracy"] if row else None,
                "sent to review": row["review_share"] if row else 1.0,
            }
        )
    return pd.DataFrame(rows)


def render_review_settings(client: DocSiftClient, detail: JSON) -> None:
    """Threshold in force (with the measured figures), the policy editor, the trade-off."""
    review = detail.get("review") or {}
    training = detail.get("training") or {}
    cols = st.columns(3)
    threshold = review.get("threshold")
    cols[0].metric(
        "Review threshold", "everything" if (threshold or 0) > 1 else fmt_num(threshold, 2)
    )
    cols[1].metric("Set by", MODES.get(review.get("source", "default"), "-"))
    cols[2].metric("Model training", training.get("state", "-"))
    if review.get("source") == "target_accuracy":
        if review.get("evaluation_id") is None:
            st.caption("No completed evaluation yet: every result goes to review until one runs.")
        else:
            st.caption(
                f"On evaluation `{review['evaluation_id']}`: {fmt_pct(review.get('coverage'))} "
                f"auto-accepted at {fmt_pct(review.get('accuracy'))} accuracy, "
                f"{fmt_pct(review.get('review_share'))} sent to review."
            )
    policy = detail.get("review_policy") or {}
    current = next(
        (k for k in ("threshold", "target_accuracy") if policy.get(k) is not None), "default"
    )
    cid = detail["classifier_id"]
    mode = st.radio(
        "Review policy",
        list(MODES),
        index=list(MODES).index(current),
        format_func=MODES.get,
        horizontal=True,
        key=f"classifiers_review_mode_{cid}",
    )
    value = None
    if mode != "default":
        value = st.number_input(
            MODES[mode],
            min_value=0.0 if mode == "threshold" else 0.01,
            max_value=1.0,
            value=float(policy.get(mode) or (0.7 if mode == "threshold" else 0.95)),
            step=0.01,
            key=f"classifiers_review_value_{cid}_{mode}",
        )
    if st.button("Save review policy", key=f"classifiers_review_save_{cid}"):
        body = {"review_policy": None if mode == "default" else {mode: value}}
        if call(client.update_classifier, cid, body) is not None:
            flash("Review policy saved (a new version).")
            st.rerun()
    tradeoff = detail.get("review_tradeoff")
    if not tradeoff:
        st.caption("Run an evaluation of this classifier to see what each threshold trades.")
        return
    caught = tradeoff.get("errors_caught") or {}
    st.markdown(
        f"On its latest evaluation: AUROC of confidence {fmt_num(tradeoff.get('auroc'))}; "
        f"reviewing the least confident 10% / 20% catches {fmt_pct(caught.get('10'))} / "
        f"{fmt_pct(caught.get('20'))} of the errors."
    )
    st.dataframe(tradeoff_table(tradeoff.get("at_accuracy") or {}), hide_index=True)
    curve = pd.DataFrame(tradeoff.get("risk_coverage") or [])
    if not curve.empty:
        st.altair_chart(
            alt.Chart(curve)
            .mark_line(point=True)
            .encode(
                x=alt.X("coverage:Q", title="auto-accepted (most confident first)"),
                y=alt.Y(
                    "accuracy:Q", title="accuracy of the accepted", scale=alt.Scale(zero=False)
                ),
                tooltip=["threshold", "coverage", "accuracy"],
            ),
            use_container_width=True,
        )
