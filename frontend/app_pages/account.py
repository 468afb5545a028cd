"""Account: credits, usage over time and by model, the ledger, and API keys."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from frontend.api_client import JSON, DocSiftClient
from frontend.charts import usage_by_day_chart, usage_by_model_chart
from frontend.ui import call, call_or_stop, flash, require_client, show_flashes, table

LEDGER_PAGE_SIZE = 50
LEDGER_PAGE = "account_ledger_page"
# The API's key scopes (backend/accounts/scopes.py); the console does not import the backend.
KEY_SCOPES = [
    "documents:read",
    "documents:write",
    "classify",
    "classifiers:read",
    "classifiers:write",
    "evaluations",
    "reviews",
    "webhooks",
    "account:read",
    "account:write",
    "keys:write",
]


def render_balance(account: JSON) -> None:
    """Balance, reserved and available credits."""
    st.caption(f"Account {account.get('name')} · `{account.get('account_id')}`")
    cols = st.columns(3)
    cols[0].metric("Balance", account.get("balance", 0))
    cols[1].metric("Reserved", account.get("reserved", 0), help="Held by requests in flight")
    cols[2].metric("Available", account.get("available", 0))


def render_usage(usage: JSON) -> None:
    """Usage totals, credits per day and per model."""
    st.subheader("Usage")
    cols = st.columns(3)
    cols[0].metric("Credits used", usage.get("total_credits", 0))
    cols[1].metric("Classifications", usage.get("total_classifications", 0))
    cols[2].metric("Pages", usage.get("total_pages", 0))
    by_day, by_model = usage.get("by_day") or [], usage.get("by_model") or []
    if not by_day and not by_model:
        st.caption("No usage yet.")
        return
    left, right = st.columns(2)
    with left:
        st.markdown("**Credits per day**")
        if by_day:
            st.altair_chart(usage_by_day_chart(by_day), width="stretch")
    with right:
        st.markdown("**By model**")
        if by_model:
            st.altair_chart(usage_by_model_chart(by_model), width="stretch")
            st.dataframe(pd.DataFrame(by_model), hide_index=True)


def render_ledger(client: DocSiftClient) -> None:
    """One page of the ledger and the page picker."""
    st.subheader("Ledger")
    page = int(st.session_state.get(LEDGER_PAGE, 1))
    ledger = call(client.ledger, limit=LEDGER_PAGE_SIZE, offset=(page - 1) * LEDGER_PAGE_SIZE)
    if ledger is None:
        return
    total = int(ledger.get("total", 0))
    pages = max(1, math.ceil(total / LEDGER_PAGE_SIZE))
    if page > pages:  # the ledger cannot shrink, but another key's view of it might
        st.session_state[LEDGER_PAGE] = pages
    items = ledger.get("items", [])
    if items:
        st.dataframe(
            table(items),
            hide_index=True,
            column_order=["created_at", "kind", "amount", "model", "pages", "note", "request_id"],
        )
    else:
        st.caption("No ledger entries.")
    st.number_input(
        f"Page (of {pages}, {total} entries)", min_value=1, max_value=pages, step=1, key=LEDGER_PAGE
    )


def render_new_key(client: DocSiftClient) -> None:
    """Create a key and show it once."""
    with st.form("account_new_key_form", clear_on_submit=True):
        name = st.text_input("New key name", placeholder="e.g. ci", key="account_new_key_name")
        scopes = st.multiselect(
            "Scopes (empty: every scope this console's key holds)",
            KEY_SCOPES,
            key="account_new_key_scopes",
        )
        classifiers = st.text_input(
            "Limit to classifier ids (comma-separated; empty: all)",
            key="account_new_key_classifiers",
        )
        days = st.number_input(
            "Expires after days (0: never)",
            min_value=0,
            max_value=3650,
            step=1,
            key="account_new_key_days",
        )
        submitted = st.form_submit_button("Create key")
    if not submitted:
        return
    if not name.strip():
        st.error("Give the key a name.")
        return
    classifier_ids = [c.strip() for c in classifiers.split(",") if c.strip()]
    expires = datetime.now(UTC) + timedelta(days=int(days)) if days else None
    created = call(
        client.create_key,
        name.strip(),
        scopes=scopes or None,
        classifier_ids=classifier_ids or None,
        expires_at=expires.isoformat() if expires else None,
    )
    if created is not None:
        # Shown on this run only: the server keeps just a hash.
        st.success(f"Key {created['name']} created. Copy it now: it will not be shown again.")
        st.code(created["api_key"], language=None)


def render_keys(client: DocSiftClient) -> None:
    """List keys, create one, revoke one."""
    st.subheader("API keys")
    render_new_key(client)
    listing = call(client.keys)
    if listing is None:
        return
    keys = listing.get("items", [])
    if keys:
        st.dataframe(
            table(keys),
            hide_index=True,
            column_order=[
                "name",
                "display_prefix",
                "created_at",
                "last_used_at",
                "revoked_at",
                "scopes",
                "classifier_ids",
                "expires_at",
                "key_id",
            ],
        )
    active = {k["key_id"]: k for k in keys if not k.get("revoked_at")}
    if not active:
        return
    key_id = st.selectbox(
        "Key to revoke",
        list(active),
        format_func=lambda kid: f"{active[kid]['name']} ({active[kid]['display_prefix']}...)",
        key="account_revoke_pick",
    )
    if client.api_key.startswith(str(active[key_id].get("display_prefix") or "\0")):
        st.warning("This looks like the key this console is using: revoking it signs you out.")
    sure = st.checkbox("Yes, revoke it", key="account_revoke_confirm")
    if st.button("Revoke key", disabled=not sure, key="account_revoke") and call(
        client.revoke_key, key_id
    ):
        flash(f"Key {active[key_id]['name']} revoked.")
        st.rerun()


def main() -> None:
    """The Account page."""
    st.title("Account")
    show_flashes()
    client = require_client()
    account = call_or_stop(client.account)
    render_balance(account)
    render_usage(account.get("usage") or {})
    render_ledger(client)
    render_keys(client)


main()
