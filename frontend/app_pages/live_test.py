"""Live test: drop a document in, classify it, see every label's score and the pages used."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.api_client import JSON, DocSiftClient, DocSiftError, documents_of
from frontend.charts import confidence_chart
from frontend.schema import EXAMPLE_SCHEMA
from frontend.ui import (
    call,
    fmt_pct,
    fmt_seconds,
    model_choices,
    optional_items,
    page_image,
    require_client,
    table,
    upload_within_limit,
)
from frontend.widgets import (
    UPLOAD_TYPES,
    SchemaChoice,
    input_mode_controls,
    model_select,
    schema_picker,
)

RESULTS = "live_results"
COMPARED = ("text", "image")  # the side-by-side comparison's two input modes
UPLOADED = "live_uploaded"  # (uploader file id, documents): re-classifying skips upload and OCR
MAX_PREVIEWS = 4


def classify_one(
    client: DocSiftClient,
    document: JSON,
    choice: SchemaChoice,
    model: str | None,
    pages: str | None,
    input_mode: str | None = None,
) -> JSON:
    """Classify one document with the saved classifier or the inline schema."""
    if choice.classifier is not None:
        return client.run_classifier(
            choice.classifier["classifier_id"],
            document["document_id"],
            page_range=pages,
            query_model=model,
            input_mode=input_mode,
        )
    assert choice.schema is not None
    return client.classify(
        document["document_id"],
        choice.schema,
        page_range=pages,
        query_model=model,
        input_mode=input_mode,
    )


def classify_compared(
    client: DocSiftClient,
    document: JSON,
    choice: SchemaChoice,
    model: str | None,
    pages: str | None,
) -> JSON:
    """The document classified in each of COMPARED's input modes: {mode: {result, error}}."""
    out: JSON = {}
    for mode in COMPARED:
        try:
            out[mode] = {
                "result": classify_one(client, document, choice, model, pages, mode),
                "error": None,
            }
        except DocSiftError as exc:
            out[mode] = {"result": None, "error": exc.user_message()}
    return out


def classify_upload(
    client: DocSiftClient,
    upload: Any,
    choice: SchemaChoice,
    model: str | None,
    pages: str | None,
    input_mode: str | None = None,
    compare: bool = False,
) -> list[JSON]:
    """Upload the file (once), then classify each document it holds (a zip holds several)."""
    documents = uploaded_documents(client, upload)
    entries = []
    for document in documents:
        entry: JSON = {"document": document, "result": None, "error": None}
        if document.get("status") == "failed":
            entry["error"] = f"Could not read this document: {document.get('error') or 'unknown'}"
        elif compare:
            with st.spinner(f"Classifying {document['filename']} as text and as images..."):
                entry["compare"] = classify_compared(client, document, choice, model, pages)
        else:
            with st.spinner(f"Classifying {document['filename']}..."):
                try:
                    entry["result"] = classify_one(
                        client, document, choice, model, pages, input_mode
                    )
                except DocSiftError as exc:
                    entry["error"] = exc.user_message()
        entries.append(entry)
    return entries


def uploaded_documents(client: DocSiftClient, upload: Any) -> list[JSON]:
    """The documents of this upload, sent to the API only the first time it is classified."""
    previous = st.session_state.get(UPLOADED)
    if previous and previous[0] == (client.base_url, upload.file_id):
        return previous[1]
    with st.spinner(f"Uploading and reading {upload.name}..."):
        reply = call(client.upload_document, upload.name, upload.getvalue(), upload.type)
    if reply is None:
        return []
    documents = documents_of(reply)
    st.session_state[UPLOADED] = ((client.base_url, upload.file_id), documents)
    return documents


def render_previews(client: DocSiftClient, document: JSON, result: JSON) -> None:
    """Thumbnails of the pages the classification used."""
    pages = result.get("pages_used") or list(range(1, (document.get("num_pages") or 1) + 1))
    shown = pages[:MAX_PREVIEWS]
    st.caption(
        f"Pages used: {', '.join(map(str, pages))}"
        + (f" (previews of the first {len(shown)})" if len(pages) > len(shown) else "")
    )
    # Always MAX_PREVIEWS columns, so one page is a thumbnail rather than a full-width image.
    for column, page in zip(st.columns(MAX_PREVIEWS), shown, strict=False):
        try:
            png = page_image(client, document["document_id"], page)
        except DocSiftError as exc:
            column.warning(f"Page {page}: {exc.user_message()}")
            continue
        column.container(border=True).image(png, caption=f"Page {page}", width="stretch")


def render_compared(entry: JSON) -> None:
    """Text and image results of one document side by side."""
    for column, mode in zip(st.columns(len(COMPARED)), COMPARED, strict=True):
        outcome = entry["compare"][mode]
        with column:
            st.subheader(f"`{mode}`")
            if outcome["error"]:
                st.error(outcome["error"])
                continue
            result = outcome["result"]
            scores = result.get("confidence_scores", {})
            label = result.get("classification")
            st.metric("Label", label or "-")
            st.metric("Confidence", fmt_pct(scores.get(label)))
            usage = result.get("usage") or {}
            st.caption(
                f"{result.get('credits_used', 0)} credits · "
                f"{fmt_seconds(result.get('duration'))} · "
                f"{usage.get('prompt_tokens', 0)} prompt tokens "
                f"({usage.get('image_tokens', 0)} of images) · "
                f"image pages: {', '.join(map(str, result.get('image_pages') or [])) or 'none'}"
            )
            if scores:
                st.altair_chart(confidence_chart(scores, label), width="stretch")


def render_result(client: DocSiftClient, entry: JSON) -> None:
    """Label, scores chart, credits, duration and previews of one result."""
    document, result = entry["document"], entry["result"]
    if entry["error"]:
        st.error(f"{document.get('filename', 'document')}: {entry['error']}")
        return
    if entry.get("compare"):
        render_compared(entry)
        return
    scores = result.get("confidence_scores", {})
    label = result.get("classification")
    cols = st.columns(4)
    cols[0].metric("Label", label or "-")
    cols[1].metric("Confidence", fmt_pct(scores.get(label)))
    cols[2].metric("Credits", result.get("credits_used", 0))
    cols[3].metric("Duration", fmt_seconds(result.get("duration")))
    details = [
        f"model `{result.get('model', '?')}`",
        f"confidence method `{result.get('confidence_method', '?')}`",
        f"{result.get('num_pages', '?')} page(s)",
        f"input `{(result.get('modes') or {}).get('input_mode', 'text')}`",
    ]
    if result.get("classifier_id"):
        details.append(f"classifier version {result.get('classifier_version')}")
    details.append(f"request `{result.get('request_id')}`")
    st.caption(" · ".join(details))
    if scores:
        st.altair_chart(confidence_chart(scores, label), width="stretch")
    render_previews(client, document, result)


def render_results(client: DocSiftClient, upload: Any) -> None:
    """The results of the last Classify click (one per document of a zip), only while the file
    they were for is still the one chosen."""
    kept = st.session_state.get(RESULTS)
    if not kept or upload is None or kept["file"] != upload.file_id:
        st.session_state.pop(RESULTS, None)  # another file: its result would mislead
        return
    entries = kept["entries"]
    if len(entries) == 1:
        render_result(client, entries[0])
        return
    for number, entry in enumerate(entries):
        title = entry["document"].get("filename", "document")
        if entry["result"]:
            title += f" → {entry['result'].get('classification')}"
        elif entry.get("compare"):
            labels = [
                f"{mode}: {(o['result'] or {}).get('classification', 'error')}"
                for mode, o in entry["compare"].items()
            ]
            title += f" → {', '.join(labels)}"
        with st.expander(title, expanded=number == 0):
            render_result(client, entry)


def render_recent(client: DocSiftClient) -> None:
    """The account's latest classifications (all of them are on the History page)."""
    st.subheader("Recent results")
    listing = call(client.classifications, limit=10)
    if listing is None:
        return
    rows = []
    for item in listing.get("items", []):
        scores = item.get("confidence_scores") or {}
        rows.append(
            {
                "when": item.get("created_at"),
                "document": item.get("filename") or item.get("document_id"),
                "kind": item.get("kind", "classify"),
                "label": item.get("classification"),
                "confidence": scores.get(item.get("classification")),
                "credits": item.get("credits_used"),
                "pages": item.get("num_pages"),
                "duration (s)": item.get("duration"),
                "model": item.get("model"),
            }
        )
    if not rows:
        st.caption("No classifications yet.")
        return
    st.dataframe(
        table(rows),
        hide_index=True,
        column_config={"confidence": st.column_config.NumberColumn(format="percent")},
    )
    st.page_link(
        "app_pages/history.py", label="Every result, with filters", icon=":material/history:"
    )


def main() -> None:
    """The Live test page."""
    st.title("Live test")
    client = require_client()
    classifiers = optional_items(client.list_classifiers, "saved classifiers")
    models, default_model = model_choices(client)
    upload = upload_within_limit(
        client, "Document (PDF, image, text or zip)", types=UPLOAD_TYPES, key="live_file"
    )
    choice = schema_picker("live", classifiers, EXAMPLE_SCHEMA)
    if choice.problem:
        st.warning(choice.problem)
    col_model, col_pages = st.columns(2)
    with col_model:
        blank = "Classifier default" if choice.classifier else f"Server default ({default_model})"
        model = model_select("Model", models, "live_model", blank_means=blank)
    pages = col_pages.text_input(
        "Page range (optional)",
        key="live_page_range",
        placeholder="all pages (e.g. 1-2 or 1,3)",
        help="Leave blank to classify every page; each page used is billed.",
    )
    input_mode, compare = input_mode_controls(
        "live",
        "Compare text and image side by side",
        "Classifies twice, as text and as page images (a model that takes images)",
    )
    ready = upload is not None and choice.problem is None
    if st.button("Classify", type="primary", disabled=not ready, key="live_classify"):
        entries = classify_upload(
            client, upload, choice, model, pages.strip() or None, input_mode, compare
        )
        st.session_state[RESULTS] = {"file": upload.file_id, "entries": entries}
    render_results(client, upload)
    render_recent(client)


main()
