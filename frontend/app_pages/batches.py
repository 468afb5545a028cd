"""Batches: classify a zip or a selection of documents on the queue, watch every item, read and
download the results."""

from __future__ import annotations

import streamlit as st

from frontend.api_client import JSON, DocSiftClient
from frontend.schema import EXAMPLE_SCHEMA
from frontend.ui import (
    call,
    flash,
    model_choices,
    optional_items,
    require_client,
    show_flashes,
    table,
    upload_within_limit,
)
from frontend.widgets import SchemaChoice, model_select, schema_picker, stable_selectbox

WATCHED = "batches_watched"  # the batch shown below the form
DONE = {"completed", "failed", "cancelled"}
POLL_SECONDS = 2
ZIP, PICK = "Upload a zip (or one file)", "Documents already uploaded"


def item_rows(batch: JSON) -> list[JSON]:
    """One row per item: file, status, label and confidence once done."""
    rows = []
    for item in batch.get("items", []):
        result = item.get("result") or {}
        label = result.get("classification")
        rows.append(
            {
                "#": item.get("position", 0) + 1,
                "filename": item.get("filename") or item.get("document_id"),
                "status": item.get("status"),
                "label": label,
                "confidence": (result.get("confidence_scores") or {}).get(label),
                "pages": result.get("num_pages"),
                "credits": result.get("credits_used"),
                "attempts": item.get("attempts"),
                "error": item.get("error"),
                "document_id": item.get("document_id"),
                "request_id": result.get("request_id"),
            }
        )
    return rows


def render_batch(batch: JSON) -> None:
    """Progress, per-item table and (once done) the CSV download."""
    done, total = batch.get("done", 0), batch.get("total", 0)
    status = batch.get("status")
    st.progress(
        done / total if total else 0.0,
        text=f"{done}/{total} items · {batch.get('succeeded', 0)} succeeded · "
        f"{batch.get('failed', 0)} failed · {status}",
    )
    st.caption(
        f"model `{batch.get('model')}` · estimate {batch.get('credits_estimate')} credits · "
        f"used {batch.get('credits_used')} · batch `{batch.get('batch_id')}`"
    )
    rows = table(item_rows(batch))
    st.dataframe(
        rows,
        hide_index=True,
        column_config={"confidence": st.column_config.NumberColumn(format="percent")},
    )
    if status in DONE and not rows.empty:
        st.download_button(
            "Download results (CSV)",
            rows.to_csv(index=False).encode(),
            file_name=f"batch-{batch.get('batch_id')}.csv",
            mime="text/csv",
            key=f"batches_csv_{batch.get('batch_id')}",
        )


@st.fragment(run_every=POLL_SECONDS)
def watch(client: DocSiftClient, batch_id: str) -> None:
    """Refresh the batch every few seconds until it is done."""
    batch = call(client.batch, batch_id)
    if batch is None:
        return
    render_batch(batch)
    if batch.get("status") in DONE:
        st.session_state[f"batches_done_{batch_id}"] = True
        st.rerun()  # stop polling: the page redraws it without the fragment


def submit(client: DocSiftClient, choice: SchemaChoice, model: str | None, pages: str) -> None:
    """The form for a new batch: a zip, or documents picked from the uploaded ones."""
    source = st.radio("Documents", [ZIP, PICK], horizontal=True, key="batches_source")
    options = {
        "classifier_id": choice.classifier["classifier_id"] if choice.classifier else None,
        "classification_schema": None if choice.classifier else choice.schema,
        "query_model": model,
        "page_range": pages.strip() or None,
    }
    reply = None
    if source == ZIP:
        upload = upload_within_limit(
            client,
            "Zip of documents",
            types=["zip", "pdf", "png", "jpg", "jpeg", "tif", "tiff", "txt"],
            key="batches_zip",
        )
        ready = upload is not None and not choice.problem
        if st.button("Start batch", type="primary", disabled=not ready, key="batches_start_zip"):
            with st.spinner(f"Uploading {upload.name}..."):
                reply = call(client.upload_batch, upload.name, upload.getvalue(), options)
    else:
        listing = call(client.list_documents, limit=200, status="processed")
        documents = (listing or {}).get("items", [])
        names = {d["document_id"]: f"{d['filename']} ({d['num_pages']} p.)" for d in documents}
        picked = st.multiselect("Documents", list(names), format_func=names.get, key="batches_pick")
        ready = bool(picked) and not choice.problem
        if st.button("Start batch", type="primary", disabled=not ready, key="batches_start_pick"):
            reply = call(
                client.create_batch,
                picked,
                classifier_id=options["classifier_id"],
                schema=options["classification_schema"],
                query_model=model,
                page_range=options["page_range"],
            )
    if reply is not None:
        st.session_state[WATCHED] = reply["batch_id"]
        refused = [d for d in reply.get("documents") or [] if d.get("status") == "failed"]
        flash(
            f"Batch started: {reply.get('total')} item(s), about "
            f"{reply.get('credits_estimate')} credits."
            + (f" {len(refused)} file(s) could not be read." if refused else ""),
            "info",
        )
        st.rerun()


def main() -> None:
    """The Batches page."""
    st.title("Batches")
    show_flashes()
    client = require_client()
    classifiers = optional_items(client.list_classifiers, "saved classifiers")
    models, default_model = model_choices(client)
    batches = optional_items(lambda: client.list_batches(limit=50), "batches")
    with st.expander("New batch", expanded=not batches):
        choice = schema_picker("batches", classifiers, EXAMPLE_SCHEMA)
        if choice.problem:
            st.warning(choice.problem)
        col_model, col_pages = st.columns(2)
        with col_model:
            blank = (
                "Classifier default" if choice.classifier else f"Server default ({default_model})"
            )
            model = model_select("Model", models, "batches_model", blank_means=blank)
        pages = col_pages.text_input(
            "Page range (optional)", key="batches_pages", placeholder="all pages (e.g. 1-2)"
        )
        submit(client, choice, model, pages)
    if not batches:
        st.info("No batches yet.")
        return
    st.subheader("Batches")
    st.dataframe(
        table(
            [
                {
                    "created": b.get("created_at"),
                    "status": b.get("status"),
                    "done": f"{b.get('done')}/{b.get('total')}",
                    "failed": b.get("failed"),
                    "model": b.get("model"),
                    "credits": b.get("credits_used"),
                    "finished": b.get("finished_at"),
                    "batch_id": b.get("batch_id"),
                }
                for b in batches
            ]
        ),
        hide_index=True,
    )
    by_id = {b["batch_id"]: b for b in batches}
    if st.session_state.get(WATCHED) in by_id:
        st.session_state["batches_open"] = st.session_state.pop(WATCHED)
    opened = stable_selectbox(
        "Batch",
        list(by_id),
        "batches_open",
        format_func=lambda bid: (
            f"{str(by_id[bid].get('created_at', ''))[:19].replace('T', ' ')} · "
            f"{by_id[bid].get('done')}/{by_id[bid].get('total')} · {by_id[bid].get('status')}"
            if bid in by_id
            else str(bid)
        ),
    )
    if by_id[opened].get("status") in DONE:
        batch = call(client.batch, opened)
        if batch is not None:
            render_batch(batch)
    else:
        watch(client, opened)


main()
