"""Split: find the documents inside one file, see them drawn over its pages, adjust the page
ranges, then make each one a document of its own."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw, ImageFont, ImageOps

from frontend.api_client import JSON, DocSiftClient, DocSiftError, documents_of
from frontend.schema import EXAMPLE_SCHEMA
from frontend.ui import (
    call,
    model_choices,
    optional_items,
    page_image,
    require_client,
    show_flashes,
    table,
    upload_within_limit,
)
from frontend.widgets import UPLOAD_TYPES, model_select, schema_picker

RESULT = "split_result"  # {"file": uploader file id, "document": {...}, "split": {...}}
COLUMNS = 6
THUMB_DPI = 40
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def parse_pages(spec: str, num_pages: int) -> list[int]:
    """ "1-3,5" as [1, 2, 3, 5]; ValueError when malformed or outside the file."""
    pages: list[int] = []
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        start, end = int(first), int(last) if last else int(first)
        if start < 1 or end < start or end > num_pages:
            raise ValueError(f"'{spec}' is outside pages 1-{num_pages}")
        pages.extend(range(start, end + 1))
    if not pages:
        raise ValueError("a segment has no pages")
    return pages


def segments_frame(split: JSON) -> pd.DataFrame:
    """The server's segments as an editable table."""
    return pd.DataFrame(
        [
            {
                "pages": s["pages"],
                "label": s["classification"],
                "confidence": (s.get("confidence_scores") or {}).get(s["classification"]),
            }
            for s in split.get("segments", [])
        ]
    )


def page_owners(rows: pd.DataFrame, num_pages: int) -> tuple[dict[int, int], list[str]]:
    """Which segment (row index) each page belongs to, and the problems found."""
    owners: dict[int, int] = {}
    problems: list[str] = []
    for index, row in enumerate(rows.itertuples()):
        try:
            pages = parse_pages(row.pages, num_pages)
        except ValueError as exc:
            problems.append(f"Segment {index + 1}: {exc}.")
            continue
        for page in pages:
            if page in owners:
                problems.append(f"Page {page} is in segments {owners[page] + 1} and {index + 1}.")
            owners[page] = index
    return owners, problems


def overlay(png: bytes, color: str, caption: str, starts: bool) -> bytes:
    """A page thumbnail framed in its segment's colour, its label written across the top; a
    thick left edge marks the first page of a document."""
    with Image.open(io.BytesIO(png)) as source:
        image = ImageOps.expand(source.convert("RGB"), border=4, fill=color)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(11, image.width // 14))
    band = int(font.size * 1.6)
    draw.rectangle([0, 0, image.width, band], fill=color)
    draw.text((14 if starts else 6, band // 2), caption, fill="white", font=font, anchor="lm")
    if starts:
        draw.rectangle([0, 0, 10, image.height], fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_pages(client: DocSiftClient, document: JSON, rows: pd.DataFrame) -> list[str]:
    """Every page's thumbnail with its segment drawn over it; returns the problems found."""
    num_pages = int(document.get("num_pages") or 0)
    owners, problems = page_owners(rows, num_pages)
    missing = [p for p in range(1, num_pages + 1) if p not in owners]
    if missing:
        problems.append(f"Pages in no segment: {', '.join(map(str, missing))}.")
    labels = list(rows["label"]) if len(rows) else []
    columns = st.columns(COLUMNS)
    for page in range(1, num_pages + 1):
        column = columns[(page - 1) % COLUMNS]
        try:
            png = page_image(client, document["document_id"], page, THUMB_DPI)
        except DocSiftError as exc:
            column.warning(f"Page {page}: {exc.user_message()}")
            continue
        owner = owners.get(page)
        if owner is None:
            column.image(png, caption=f"Page {page}: no segment", width="stretch")
            continue
        starts = owners.get(page - 1) != owner
        caption = f"{owner + 1}: {labels[owner]}"
        column.image(
            overlay(png, COLORS[owner % len(COLORS)], caption, starts),
            caption=f"Page {page}",
            width="stretch",
        )
    return problems


def upload_once(client: DocSiftClient, upload: Any) -> JSON | None:
    """The uploaded document for this file (uploaded on the first Split only)."""
    kept = st.session_state.get(RESULT)
    if kept and kept["file"] == upload.file_id:
        return kept["document"]
    with st.spinner(f"Uploading and reading {upload.name}..."):
        reply = call(client.upload_document, upload.name, upload.getvalue(), upload.type)
    if reply is None:
        return None
    documents = documents_of(reply)
    if len(documents) != 1:
        st.error("Split one file at a time (a zip holds several documents already).")
        return None
    return documents[0]


def render_result(client: DocSiftClient, kept: JSON) -> None:
    """The split: adjustable segments, pages with segments drawn, and Create documents."""
    document, split = kept["document"], kept["split"]
    st.subheader(f"{document.get('filename')}: {len(split.get('segments', []))} document(s) found")
    st.caption(
        f"{split.get('num_pages')} pages · model `{split.get('model')}` · "
        f"{split.get('credits_used')} credits · request `{split.get('request_id')}`"
    )
    st.caption("Adjust the page ranges or labels; add or delete rows to split differently.")
    rows = st.data_editor(
        segments_frame(split),
        key=f"split_segments_{split['request_id']}",
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "pages": st.column_config.TextColumn("Pages", required=True, help="e.g. 1-2 or 3,5"),
            "label": st.column_config.TextColumn("Label", required=True),
            "confidence": st.column_config.NumberColumn(
                "Confidence", format="percent", disabled=True
            ),
        },
    )
    rows = rows.dropna(subset=["pages"]).reset_index(drop=True)
    rows["label"] = rows["label"].fillna("?")
    problems = render_pages(client, document, rows)
    for problem in problems:
        st.warning(problem)
    if st.button(
        "Create documents",
        type="primary",
        disabled=bool(problems) or rows.empty,
        key="split_create",
        help="One new document per segment; nothing is classified, so nothing is charged.",
    ):
        made = call(client.create_segments, document["document_id"], list(rows["pages"]))
        if made is not None:
            kept["created"] = [
                {**d, "label": label}
                for d, label in zip(made["documents"], rows["label"], strict=False)
            ]
    if kept.get("created"):
        st.success(f"Created {len(kept['created'])} document(s).")
        st.dataframe(
            table(
                [
                    {
                        "filename": d.get("filename"),
                        "label": d.get("label"),
                        "pages": d.get("num_pages"),
                        "created": d.get("created_at"),
                        "open": f"/documents?document={d['document_id']}",
                        "document_id": d["document_id"],
                    }
                    for d in kept["created"]
                ]
            ),
            hide_index=True,
            column_config={"open": st.column_config.LinkColumn("open", display_text="open")},
        )


def main() -> None:
    """The Split page."""
    st.title("Split")
    show_flashes()
    client = require_client()
    st.caption(
        "A scan of several documents (an invoice, then a W-9, then a letter): find where each "
        "starts and label it. Every page is classified, so every page is charged."
    )
    classifiers = optional_items(client.list_classifiers, "saved classifiers")
    models, default_model = model_choices(client)
    upload = upload_within_limit(
        client,
        "File to split (PDF, multi-page TIFF, text)",
        types=[t for t in UPLOAD_TYPES if t != "zip"],
        key="split_file",
    )
    choice = schema_picker("split", classifiers, EXAMPLE_SCHEMA)
    if choice.problem:
        st.warning(choice.problem)
    blank = "Classifier default" if choice.classifier else f"Server default ({default_model})"
    model = model_select("Model", models, "split_model", blank_means=blank)
    kept = st.session_state.get(RESULT)
    if kept and (upload is None or kept["file"] != upload.file_id):
        st.session_state.pop(RESULT, None)  # another file: the old split would mislead
        kept = None
    ready = upload is not None and choice.problem is None
    if st.button("Split", type="primary", disabled=not ready, key="split_run"):
        document = upload_once(client, upload)
        if document is not None and document.get("status") == "failed":
            st.error(f"Could not read {document.get('filename')}: {document.get('error')}")
        elif document is not None:
            with st.spinner(f"Classifying {document.get('num_pages')} page(s)..."):
                split = call(
                    client.split,
                    document["document_id"],
                    classifier_id=choice.classifier["classifier_id"] if choice.classifier else None,
                    schema=choice.schema,
                    query_model=model,
                )
            if split is not None:
                kept = {"file": upload.file_id, "document": document, "split": split}
                st.session_state[RESULT] = kept
    if kept:
        render_result(client, kept)


main()
