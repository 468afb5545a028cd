"""History: every classification the account made, filtered and paged, each linked to its
document and classifier version."""

from __future__ import annotations

import math
from datetime import date, time

import streamlit as st

from frontend.api_client import JSON
from frontend.charts import confidence_chart
from frontend.ui import call_or_stop, optional_items, require_client, table

PAGE_SIZE = 25
KINDS = {
    "": "every kind",
    "classify": "classify (inline schema)",
    "classifier_run": "saved classifier run",
    "split": "split",
    "batch": "batch item",
    "evaluation": "evaluation item",
}


def history_rows(items: list[JSON], classifiers: dict[str, JSON]) -> list[JSON]:
    """One row per classification, read like a log: when, what, which document, which result."""
    rows = []
    for item in items:
        scores = item.get("confidence_scores") or {}
        label = item.get("classification")
        classifier = classifiers.get(item.get("classifier_id") or "")
        version = item.get("classifier_version")
        segments = (item.get("result") or {}).get("segments")
        rows.append(
            {
                "when": item.get("created_at"),
                "kind": item.get("kind"),
                "document": item.get("filename") or "(deleted)",
                "label": f"{len(segments)} documents" if segments else label,
                "confidence": None if segments else scores.get(label),
                "classifier": (
                    f"{classifier['name']} v{version}"
                    if classifier
                    else (f"v{version}" if version else "inline schema")
                ),
                "model": item.get("model"),
                "pages": item.get("num_pages"),
                "credits": item.get("credits_used"),
                "open": f"/documents?document={item.get('document_id')}",
                "request_id": item.get("request_id"),
            }
        )
    return rows


def filters(classifiers: dict[str, JSON]) -> dict[str, str | None]:
    """The filter row; blank means no filter."""
    cols = st.columns([1.3, 1.3, 1, 1, 1])
    kind = cols[0].selectbox("Kind", list(KINDS), format_func=KINDS.get, key="history_kind")
    options = ["", *classifiers]
    classifier = cols[1].selectbox(
        "Classifier",
        options,
        format_func=lambda cid: classifiers[cid]["name"] if cid else "any",
        key="history_classifier",
    )
    label = cols[2].text_input("Label", key="history_label", placeholder="any")
    since = cols[3].date_input("From", value=None, key="history_since")
    until = cols[4].date_input("To", value=None, key="history_until")
    document = st.query_params.get("document")
    if document:
        st.caption(f"Only document `{document}`.")
    return {
        "kind": kind or None,
        "classifier_id": classifier or None,
        "label": label.strip() or None,
        "since": _day(since, time.min),
        "until": _day(until, time.max),
        "document_id": document,
    }


def _day(day: date | None, at: time) -> str | None:
    return f"{day.isoformat()}T{at.isoformat(timespec='seconds')}Z" if day else None


def render_detail(item: JSON) -> None:
    """One record: its scores, segments for a split, and the raw JSON."""
    st.caption(
        f"request `{item.get('request_id')}` · document `{item.get('document_id')}` · "
        f"confidence method `{item.get('confidence_method')}`"
    )
    segments = (item.get("result") or {}).get("segments")
    if segments:
        st.dataframe(table(segments), hide_index=True)
    elif item.get("confidence_scores"):
        st.altair_chart(
            confidence_chart(item["confidence_scores"], item.get("classification")),
            width="stretch",
        )
    with st.expander("Raw record"):
        st.json(item)


def main() -> None:
    """The History page."""
    st.title("History")
    client = require_client()
    classifiers = {
        c["classifier_id"]: c for c in optional_items(client.list_classifiers, "saved classifiers")
    }
    chosen = filters(classifiers)
    page = int(st.session_state.get("history_page", 1))
    listing = call_or_stop(
        client.classifications, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **chosen
    )
    total = int(listing.get("total", 0))
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:  # the filters changed: back to the first page
        st.session_state["history_page"] = 1
        st.rerun()
    items = listing.get("items", [])
    st.caption(f"{total} classification(s); page {page} of {pages}")
    if not items:
        st.info("No classifications match." if total == 0 else "No more results.")
    else:
        st.dataframe(
            table(history_rows(items, classifiers)),
            hide_index=True,
            column_config={
                "confidence": st.column_config.NumberColumn(format="percent"),
                "open": st.column_config.LinkColumn("document link", display_text="open"),
            },
        )
    st.columns([1, 4])[0].number_input(
        f"Page (of {pages})", min_value=1, max_value=max(pages, page), step=1, key="history_page"
    )
    if items:
        by_id = {i["request_id"]: i for i in items}
        picked = st.selectbox(
            "Details of",
            list(by_id),
            format_func=lambda rid: (
                f"{by_id[rid].get('filename') or rid} · {by_id[rid].get('kind')} · "
                f"{by_id[rid].get('classification')}"
            ),
            key="history_detail",
        )
        render_detail(by_id[picked])


main()
