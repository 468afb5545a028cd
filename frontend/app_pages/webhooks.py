"""Webhooks: where batch events are sent, the secret that signs them, and every delivery with
its attempts (a failed one can be sent again)."""

from __future__ import annotations

import math

import streamlit as st

from frontend.api_client import JSON, DocSiftClient
from frontend.ui import call, call_or_stop, flash, fmt_time, require_client, show_flashes, table

PAGE_SIZE = 20
STATUSES = ["", "failed", "pending", "succeeded"]


def render_config(client: DocSiftClient) -> None:
    """The URL (set, change, clear) and the signing secret (shown on request, rotated)."""
    config = call_or_stop(client.webhook_config)
    st.subheader("Endpoint")
    url = st.text_input(
        "Webhook URL",
        value=config.get("url") or "",
        key="webhooks_url",
        placeholder="https://example.com/docsift-events",
        help="Batch events are POSTed here, signed; a batch's own webhook_url wins.",
    )
    col_save, col_clear, _ = st.columns([1, 1, 4])
    save = col_save.button(
        "Save URL", type="primary", key="webhooks_save", disabled=not url.strip()
    )
    if save and call(client.set_webhook_url, url.strip()) is not None:
        flash("Webhook URL saved.")
        st.rerun()
    remove = col_clear.button("Remove", key="webhooks_clear", disabled=not config.get("url"))
    if remove and call(client.set_webhook_url, None) is not None:
        flash("Webhook URL removed: no more events are sent.", "info")
        st.rerun()
    st.subheader("Signing secret")
    secret = config.get("secret")
    if not secret:
        st.caption("A secret is created when a URL is first saved.")
        return
    st.caption(
        f"Each delivery carries an HMAC-SHA256 signature in the `{config.get('signature_header')}` "
        "header; check it with this secret."
    )
    if st.toggle("Show the secret", key="webhooks_show_secret"):
        st.code(secret, language=None)
    else:
        st.code(secret[:8] + "…" + "•" * 12, language=None)
    rotate = st.button("Rotate secret", key="webhooks_rotate")
    if rotate and call(client.rotate_webhook_secret) is not None:
        flash("New signing secret made: update your receiver.", "warning")
        st.rerun()


def delivery_rows(items: list[JSON]) -> list[JSON]:
    return [
        {
            "created": d.get("created_at"),
            "event": d.get("event_type"),
            "status": d.get("status"),
            "attempts": d.get("attempts"),
            "HTTP": d.get("response_status"),
            "last error": d.get("last_error"),
            "delivered": d.get("delivered_at"),
            "url": d.get("url"),
            "batch_id": d.get("batch_id"),
            "delivery_id": d.get("delivery_id"),
        }
        for d in items
    ]


def render_delivery(client: DocSiftClient, delivery: JSON) -> None:
    """One delivery: every attempt, the payload, and Retry when it failed."""
    log = delivery.get("log") or []
    if log:
        st.dataframe(table(log), hide_index=True)
    else:
        st.caption("Not attempted yet.")
    if (
        delivery.get("status") == "failed"
        and st.button(
            "Retry delivery", type="primary", key=f"webhooks_retry_{delivery['delivery_id']}"
        )
        and call(client.retry_delivery, delivery["delivery_id"]) is not None
    ):
        flash("Delivery queued again.", "info")
        st.rerun()
    with st.expander("Payload"):
        st.json(delivery.get("payload") or {})


def render_deliveries(client: DocSiftClient) -> None:
    st.subheader("Deliveries")
    col_status, col_page = st.columns([1, 1])
    status = col_status.selectbox(
        "Status", STATUSES, key="webhooks_status", format_func=lambda s: s or "any"
    )
    page = int(st.session_state.get("webhooks_page", 1))
    listing = call_or_stop(
        client.deliveries, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, status=status or None
    )
    total = int(listing.get("total", 0))
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        st.session_state["webhooks_page"] = 1
        st.rerun()
    col_page.number_input(
        f"Page (of {pages})", min_value=1, max_value=pages, step=1, key="webhooks_page"
    )
    items = listing.get("items", [])
    if not items:
        st.info("No deliveries yet: they appear when a batch finishes with a webhook set.")
        return
    st.dataframe(table(delivery_rows(items)), hide_index=True)
    by_id = {d["delivery_id"]: d for d in items}
    picked = st.selectbox(
        "Delivery",
        list(by_id),
        format_func=lambda did: (
            f"{fmt_time(by_id[did].get('created_at'))} · {by_id[did].get('event_type')} · "
            f"{by_id[did].get('status')}"
        ),
        key="webhooks_delivery",
    )
    render_delivery(client, by_id[picked])


def main() -> None:
    """The Webhooks page."""
    st.title("Webhooks")
    show_flashes()
    client = require_client()
    render_config(client)
    render_deliveries(client)


main()
