"""Review: work through the results whose confidence is under the review threshold, oldest first.

One result at a time: the page image beside the scores, the suggested label preselected. One
click (or key) decides: "Accept" (A) confirms the suggestion, a label button (1-9) picks
another. Every decision becomes a labelled example of the classifier, which retrains in the
background.
"""

from __future__ import annotations

import streamlit as st

from frontend.api_client import JSON, DocSiftClient
from frontend.charts import confidence_chart
from frontend.ui import (
    call,
    call_or_stop,
    flash,
    fmt_pct,
    optional_items,
    require_client,
    show_flashes,
)

DONE = "review_done"  # decisions made in this browser session (progress)
ALL = "All classifiers"


@st.cache_data(show_spinner=False, max_entries=64)
def page_png(
    _client: DocSiftClient, base_url: str, api_key: str, document_id: str, page: int
) -> bytes:
    """A page preview; URL and key are part of the cache key so accounts never share images."""
    return _client.page_image(document_id, page, dpi=96)


def focus(item: JSON) -> tuple[int | None, str, dict[str, float], list[int]]:
    """What to decide: (segment or None, suggested label, scores, pages) - for a split, its
    first segment still pending."""
    for segment in item.get("segments") or []:
        if segment.get("review_status") == "pending" and not segment.get("decision"):
            first = int(segment["pages"].split(",")[0].split("-")[0])
            return (
                segment["index"],
                segment["classification"],
                segment["confidence_scores"],
                [first],
            )
    return None, item["classification"], item["confidence_scores"], item.get("pages_used") or [1]


def decide(client: DocSiftClient, item: JSON, label: str, segment: int | None) -> None:
    reply = call(client.review, item["request_id"], label, segment)
    if reply is None:
        return
    st.session_state[DONE] = st.session_state.get(DONE, 0) + 1
    outcome = reply["decision"]["outcome"] if reply.get("decision") else "saved"
    flash(f"{outcome.capitalize()}: {label}")
    st.rerun()


def render_item(client: DocSiftClient, item: JSON) -> None:
    segment, suggested, scores, pages = focus(item)
    image_col, score_col = st.columns([3, 2], gap="large")
    with image_col:
        png = call(page_png, client, client.base_url, client.api_key, item["document_id"], pages[0])
        if png:
            st.image(png, caption=f"Page {pages[0]} of the document", use_container_width=True)
        else:
            st.caption("No page image for this document.")
    with score_col:
        where = (
            f", segment {segment + 1} (pages {item['segments'][segment]['pages']})"
            if segment is not None
            else ""
        )
        st.subheader(f"Suggested: {suggested}")
        confidence = max(scores.values(), default=0.0)
        threshold = item.get("threshold")
        st.caption(
            f"Confidence {fmt_pct(confidence)} (review threshold {fmt_pct(threshold)}) · "
            f"model `{item['model']}`{where} · {item['created_at'][:19].replace('T', ' ')}"
        )
        st.altair_chart(confidence_chart(scores, suggested), use_container_width=True)
        labels = item["labels"]
        choice = st.radio(
            "Label",
            labels,
            index=labels.index(suggested) if suggested in labels else 0,
            horizontal=True,
            key=f"review_label_{item['request_id']}_{segment}",
        )
        if st.button(
            f"Accept: {choice}",
            type="primary",
            key="review_accept",
            shortcut="a",
            help="Shortcut: A",
        ):
            decide(client, item, choice, segment)
        st.caption("Or one click on the right label (keys 1-9):")
        columns = st.columns(min(len(labels), 5))
        for number, label in enumerate(labels, start=1):
            with columns[(number - 1) % len(columns)]:
                if st.button(
                    label,
                    key=f"review_pick_{number}",
                    shortcut=str(number) if number <= 9 else None,
                    use_container_width=True,
                ):
                    decide(client, item, label, segment)


def main() -> None:
    st.title("Review")
    client = require_client()
    show_flashes()
    classifiers = optional_items(client.list_classifiers, "classifiers")
    names = {c["classifier_id"]: c["name"] for c in classifiers}
    picked = st.selectbox(
        "Queue",
        [ALL, *names],
        format_func=lambda cid: names.get(cid, cid),
        key="review_classifier",
    )
    queue = call_or_stop(
        client.reviews, "pending", limit=1, classifier_id=None if picked == ALL else picked
    )
    left = int(queue["total"])
    done = int(st.session_state.get(DONE, 0))
    st.progress(done / (done + left) if done + left else 1.0)
    st.markdown(f"**{left}** awaiting review · **{done}** decided in this session")
    if not queue["items"]:
        st.success("Nothing to review: every result is over its review threshold or decided.")
        return
    render_item(client, queue["items"][0])


main()
