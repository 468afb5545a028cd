"""Documents: every upload, searchable, with a viewer of its pages and text, and deletion."""

from __future__ import annotations

import math

import streamlit as st

from frontend.api_client import JSON, DocSiftClient, DocSiftError
from frontend.ui import (
    THUMB_COLUMN,
    call,
    call_or_stop,
    flash,
    fmt_time,
    page_image,
    require_client,
    show_flashes,
    table,
    thumbnail_uri,
)

PAGE_SIZE = 25
OPEN = "documents_open"  # the document shown in the viewer
LINK_SEEN = "documents_link_seen"
STATUSES = ["", "processed", "processing", "uploaded", "failed"]


def human_size(size: int | None) -> str:
    """1234567 as 1.2 MB."""
    if not size:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def document_rows(client: DocSiftClient, documents: list[JSON]) -> list[JSON]:
    """One row per document: preview and name first, the id last."""
    return [
        {
            "preview": thumbnail_uri(client, d["document_id"])
            if d.get("status") == "processed"
            else None,
            "filename": d.get("filename"),
            "type": d.get("kind") or d.get("content_type"),
            "pages": d.get("num_pages"),
            "status": d.get("status"),
            "uploaded": d.get("created_at"),
            "size": human_size(d.get("size_bytes")),
            "document_id": d["document_id"],
        }
        for d in documents
    ]


def render_list(client: DocSiftClient) -> list[JSON]:
    """Search, filter and page through the documents; returns the page shown."""
    col_q, col_status, col_page = st.columns([3, 1, 1])
    query = col_q.text_input(
        "Search file names", key="documents_q", placeholder="e.g. invoice or w9"
    )
    status = col_status.selectbox(
        "Status", STATUSES, key="documents_status", format_func=lambda s: s or "any"
    )
    page = int(st.session_state.get("documents_page", 1))
    listing = call_or_stop(
        client.list_documents,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        q=query.strip() or None,
        status=status or None,
    )
    total = int(listing.get("total", 0))
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:  # the filters changed: back to the first page
        st.session_state["documents_page"] = 1
        st.rerun()
    col_page.number_input(
        f"Page (of {pages})", min_value=1, max_value=max(pages, page), step=1, key="documents_page"
    )
    documents = listing.get("items", [])
    st.caption(f"{total} document(s)" + (f" matching '{query.strip()}'" if query.strip() else ""))
    if documents:
        st.dataframe(
            table(document_rows(client, documents)),
            hide_index=True,
            column_config={"preview": THUMB_COLUMN},
            row_height=60,
        )
    elif not query:
        st.info("No documents yet: upload one on the Live test, Split or Batches page.")
    return documents


def render_viewer(client: DocSiftClient, document_id: str) -> None:
    """One document: its details, a page image beside the page's text, its children, delete."""
    document = call(client.document, document_id)
    if document is None:
        return
    st.subheader(document.get("filename") or document_id)
    st.caption(
        f"{document.get('kind')} · {document.get('num_pages')} page(s) · "
        f"{human_size(document.get('size_bytes'))} · {document.get('status')} · uploaded "
        f"{fmt_time(document.get('created_at'))} · id `{document_id}`"
    )
    if document.get("error"):
        st.warning(document["error"])
    if document.get("parent_id"):
        st.caption(f"Made from document `{document['parent_id']}`.")
    if children := document.get("children"):
        st.caption("Documents made from this one:")
        st.dataframe(
            table(
                [
                    {k: c.get(k) for k in ("filename", "kind", "num_pages", "status")}
                    for c in children
                ]
            ),
            hide_index=True,
        )
    pages = int(document.get("num_pages") or 0)
    if document.get("status") == "processed" and pages:
        number = 1
        if pages > 1:
            number = st.slider("Page", 1, pages, 1, key=f"documents_view_page_{document_id}")
        col_image, col_text = st.columns(2)
        try:
            col_image.container(border=True).image(
                page_image(client, document_id, number, 100),
                caption=f"Page {number}",
                width="stretch",
            )
        except DocSiftError as exc:
            col_image.warning(exc.user_message())
        text = call(client.page_text, document_id, number)
        if text is not None:
            with col_text:
                st.caption(
                    f"{text.get('chars', 0)} characters" + (" (OCR)" if text.get("ocr") else "")
                )
                st.text_area(
                    "Extracted text",
                    text.get("text", ""),
                    height=520,
                    disabled=True,
                    key=f"documents_text_{document_id}_{number}",
                )
    with st.expander("Delete this document"):
        st.caption("Its file is removed; past results keep their record.")
        sure = st.checkbox("Yes, delete it", key=f"documents_confirm_{document_id}")
        if st.button("Delete", disabled=not sure, key=f"documents_delete_{document_id}") and call(
            client.delete_document, document_id
        ):
            flash(f"Deleted {document.get('filename')}.")
            st.session_state.pop(OPEN, None)
            st.query_params.pop("document", None)
            st.rerun()


def main() -> None:
    """The Documents page."""
    st.title("Documents")
    show_flashes()
    client = require_client()
    documents = render_list(client)
    linked = st.query_params.get("document")  # a link from History or Batches
    names = {d["document_id"]: d.get("filename") or d["document_id"] for d in documents}
    if linked and linked not in names:
        names = {linked: f"document {linked[:8]}", **names}
    if not names:
        return
    if linked and st.session_state.get(LINK_SEEN) != linked:
        st.session_state[OPEN] = linked  # open the linked document once, then let the user pick
        st.session_state[LINK_SEEN] = linked
    if st.session_state.get(OPEN) not in names:
        st.session_state.pop(OPEN, None)
    opened = st.selectbox(
        "Open a document", list(names), format_func=lambda did: names[did], key=OPEN
    )
    render_viewer(client, opened)


main()
