"""Classifiers: saved label sets with defaults, their versions and their labelled examples."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from frontend.api_client import JSON, ApiError, DocSiftClient, DocSiftError, documents_of
from frontend.review_views import render_review_settings
from frontend.schema import (
    EXAMPLE_SCHEMA,
    SchemaProblem,
    changed_fields,
    diff_versions,
    schema_from_rows,
)
from frontend.ui import (
    THUMB_COLUMN,
    call,
    call_or_stop,
    flash,
    fmt_num,
    fmt_pct,
    fmt_time,
    model_choices,
    refuse_too_large,
    require_client,
    show_flashes,
    thumbnail_uri,
    upload_limit_mb,
)
from frontend.ui import table as ui_table
from frontend.widgets import UPLOAD_TYPES, defaults_inputs, label_editor, stable_selectbox

NEW = "__new__"
SELECTED = "classifiers_selected"
PENDING = "classifiers_pending_selection"  # set before a rerun; a widget's key cannot be
UPLOADS_GEN = "classifiers_uploader_generation"
MAX_THUMBS = 60  # previews beyond these would make the tab slow to open  # bumping it empties the example uploader


def select_after_rerun(classifier_id: str) -> None:
    """Select this classifier on the next run (the picker's key is locked this run)."""
    st.session_state[PENDING] = classifier_id


def render_list(classifiers: Sequence[JSON]) -> None:
    """A table of every saved classifier."""
    if not classifiers:
        st.info("No classifiers yet: create the first one below.")
        return
    rows = [
        {
            "name": c["name"],
            "version": c["version"],
            "labels": len(c["classification_schema"]),
            "model": c.get("query_model") or "default",
            "examples": c.get("num_examples", 0),
            "updated": c.get("updated_at"),
            "id": c["classifier_id"],
        }
        for c in classifiers
    ]
    st.dataframe(ui_table(rows), hide_index=True)


def pick_classifier(classifiers: Sequence[JSON]) -> str:
    """The classifier to work on, or NEW (its label follows the current version)."""
    names = {c["classifier_id"]: f"{c['name']} (v{c['version']})" for c in classifiers}
    options = [NEW, *names]
    if PENDING in st.session_state:
        st.session_state[SELECTED] = st.session_state.pop(PENDING)
    return stable_selectbox(
        "Classifier",
        options,
        SELECTED,
        format_func=lambda cid: "New classifier" if cid == NEW else names.get(cid, str(cid)),
    )


def render_create(client: DocSiftClient, models: list[str], default_model: str | None) -> None:
    """The form for a new classifier."""
    st.subheader("New classifier")
    name = st.text_input("Name", key="classifiers_new_name", placeholder="e.g. mailroom")
    description = st.text_input("Description", key="classifiers_new_description")
    st.caption("Labels: one row per label, with a plain-English description.")
    rows = label_editor(EXAMPLE_SCHEMA, key="classifiers_new_labels")
    defaults = defaults_inputs("classifiers_new", {}, models, default_model)
    if not st.button("Create classifier", type="primary", key="classifiers_create"):
        return
    if not name.strip():
        st.error("Give the classifier a name.")
        return
    try:
        schema = schema_from_rows(rows)
    except SchemaProblem as exc:
        st.error(str(exc))
        return
    created = call(
        client.create_classifier,
        name.strip(),
        schema,
        description=description.strip() or None,
        **defaults,
    )
    if created is not None:
        flash(f"Created classifier {created['name']} (version {created['version']}).")
        select_after_rerun(created["classifier_id"])
        st.rerun()


def render_edit(
    client: DocSiftClient, classifier: JSON, models: list[str], default_model: str | None
) -> None:
    """Edit labels, name and defaults (a new version when they change), or delete."""
    prefix = f"classifiers_edit_{classifier['classifier_id']}_v{classifier['version']}"
    name = st.text_input("Name", value=classifier["name"], key=f"{prefix}_name")
    description = st.text_input(
        "Description", value=classifier.get("description") or "", key=f"{prefix}_description"
    )
    rows = label_editor(classifier["classification_schema"], key=f"{prefix}_labels")
    defaults = defaults_inputs(prefix, classifier, models, default_model)
    if st.button("Save changes", type="primary", key=f"{prefix}_save"):
        try:
            schema = schema_from_rows(rows)
        except SchemaProblem as exc:
            st.error(str(exc))
            return
        proposed = {
            "name": name.strip() or classifier["name"],
            "description": description.strip(),
            "classification_schema": schema,
            **defaults,
        }
        changes = changed_fields(classifier, proposed)
        if not changes:
            st.info("Nothing changed.")
            return
        updated = call(client.update_classifier, classifier["classifier_id"], changes)
        if updated is not None:
            flash(f"Saved {updated['name']}: now version {updated['version']}.")
            st.rerun()
    with st.expander("Delete this classifier"):
        sure = st.checkbox("Yes, delete it", key=f"{prefix}_confirm_delete")
        if st.button("Delete", disabled=not sure, key=f"{prefix}_delete") and call(
            client.delete_classifier, classifier["classifier_id"]
        ):
            flash(f"Deleted classifier {classifier['name']}.")
            select_after_rerun(NEW)
            st.rerun()


def render_versions(detail: JSON) -> None:
    """Every version, and the changes between two of them."""
    versions = sorted(detail.get("versions", []), key=lambda v: v["version"])
    st.dataframe(
        ui_table(
            [
                {
                    "version": v["version"],
                    "labels": ", ".join(i["label"] for i in v["classification_schema"]),
                    "model": v.get("query_model") or "default",
                    "page range": v.get("page_range") or "all",
                    "created": v.get("created_at"),
                }
                for v in versions
            ]
        ),
        hide_index=True,
    )
    if len(versions) < 2:
        st.info("Only one version so far: save a change to compare versions.")
        return
    numbers = [v["version"] for v in versions]
    by_number = {v["version"]: v for v in versions}
    key = f"classifiers_diff_{detail['classifier_id']}"
    col_old, col_new = st.columns(2)
    old = col_old.selectbox("From version", numbers, index=len(numbers) - 2, key=f"{key}_old")
    new = col_new.selectbox("To version", numbers, index=len(numbers) - 1, key=f"{key}_new")
    changes = diff_versions(by_number[old], by_number[new])
    if not changes:
        st.success(f"Versions {old} and {new} are the same.")
        return
    st.dataframe(pd.DataFrame([vars(c) for c in changes]), hide_index=True)


def render_estimate(estimate: JSON | None) -> None:
    """The accuracy the server estimates from the labelled examples."""
    if not estimate:
        return
    cols = st.columns(3)
    cols[0].metric("Estimated accuracy", fmt_pct(estimate.get("accuracy")))
    cols[1].metric("Calibration error (ECE)", fmt_num(estimate.get("ece")))
    cols[2].metric("Examples", estimate.get("n_examples", 0))
    if estimate.get("accuracy") is None:
        st.caption("Add examples for at least two labels to get an accuracy estimate.")
    elif estimate.get("too_few_examples"):
        st.warning(
            "Too few examples for a trustworthy estimate: the figure above could be far off. "
            "Add more examples (at least 30 in all) or run an evaluation."
        )
    if interval := estimate.get("accuracy_interval"):
        st.caption(
            f"95% interval for the accuracy: {fmt_pct(interval[0])} to {fmt_pct(interval[1])} "
            f"(Wilson, from {estimate.get('n_examples', 0)} examples)."
        )
    if per_label := estimate.get("per_label"):
        st.dataframe(pd.DataFrame.from_dict(per_label, orient="index"))


def add_examples(client: DocSiftClient, classifier_id: str, files: list, label: str) -> int:
    """Upload each file (a zip gives several documents) and label every document; returns count.
    A file that is already an example (the server answers 409) is reported and skipped."""
    added = 0
    progress = st.progress(0.0, text="Uploading...")
    for number, upload in enumerate(files, start=1):
        try:
            reply = client.upload_document(upload.name, upload.getvalue(), upload.type)
            for document in documents_of(reply):
                try:
                    client.add_example(classifier_id, document["document_id"], label)
                    added += 1
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    st.warning(f"{document.get('filename', upload.name)}: {exc.message}")
        except DocSiftError as exc:
            st.error(f"{upload.name}: {exc.user_message()}")
        progress.progress(number / len(files), text=f"{number}/{len(files)} files uploaded")
    return added


def example_rows(client: DocSiftClient, items: list[JSON]) -> list[JSON]:
    """The examples as a person reads them: preview, file name, label; ids last."""
    return [
        {
            "preview": thumbnail_uri(client, item["document_id"]) if n < MAX_THUMBS else None,
            "filename": item.get("filename") or "(deleted document)",
            "label": item["label"],
            "pages": item.get("num_pages"),
            "added": item.get("created_at"),
            "document_id": item["document_id"],
            "example_id": item["example_id"],
        }
        for n, item in enumerate(items)
    ]


def render_delete_example(client: DocSiftClient, cid: str, items: list[JSON]) -> None:
    """Pick an example by file name (with its preview) and delete it."""
    by_id = {item["example_id"]: item for item in items}

    def name(eid: str) -> str:
        item = by_id[eid]
        added = fmt_time(item.get("created_at")) or ""
        return f"{item.get('filename') or 'deleted document'} · {item['label']} · added {added}"

    col_pick, col_preview = st.columns([3, 1])
    with col_pick:
        chosen = st.selectbox(
            "Example to delete",
            list(by_id),
            format_func=name,
            key=f"classifiers_example_delete_pick_{cid}",
        )
        st.caption(f"document `{by_id[chosen]['document_id']}`")
        delete = st.button("Delete example", key=f"classifiers_example_delete_{cid}")
    preview = thumbnail_uri(client, by_id[chosen]["document_id"])
    if preview:
        col_preview.image(preview, width=120)
    if delete and call(client.delete_example, cid, chosen):
        flash(f"Example {by_id[chosen].get('filename') or chosen} deleted.")
        st.rerun()


def render_examples(client: DocSiftClient, classifier: JSON) -> None:
    """Estimate, add examples by upload, list and delete them."""
    cid = classifier["classifier_id"]
    listing = call(client.examples, cid)
    if listing is None:
        return
    render_estimate(listing.get("estimate"))
    labels = [item["label"] for item in classifier["classification_schema"]]
    generation = st.session_state.setdefault(UPLOADS_GEN, 0)
    files = st.file_uploader(
        "Documents to add as examples",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        key=f"classifiers_example_files_{cid}_{generation}",
        max_upload_size=upload_limit_mb(client),
    )
    label = st.selectbox("Their label", labels, key=f"classifiers_example_label_{cid}")
    if st.button("Upload and add examples", disabled=not files, key=f"classifiers_add_{cid}"):
        added = add_examples(client, cid, refuse_too_large(client, files or []), label)
        if added:
            flash(f"Added {added} example(s) labelled {label}.")
            st.session_state[UPLOADS_GEN] = generation + 1
            st.rerun()
    items = listing.get("items", [])
    st.caption(f"{listing.get('total', len(items))} example(s)")
    if not items:
        return
    st.dataframe(
        ui_table(example_rows(client, items)),
        hide_index=True,
        column_config={"preview": THUMB_COLUMN},
        row_height=60,
    )
    render_delete_example(client, cid, items)


def render_classifier(
    client: DocSiftClient, classifier_id: str, models: list[str], default_model: str | None
) -> None:
    """One classifier's tabs."""
    detail = call(client.classifier, classifier_id)
    if detail is None:
        return
    st.subheader(f"{detail['name']} - version {detail['version']}")
    if detail.get("description"):
        st.caption(detail["description"])
    # Keyed, so the open tab survives the rerun after an upload or a delete.
    edit, versions, examples, review = st.tabs(
        ["Labels and defaults", "Versions", "Examples", "Review"],
        key=f"classifiers_tabs_{classifier_id}",
        on_change="rerun",
    )
    with edit:
        render_edit(client, detail, models, default_model)
    with versions:
        render_versions(detail)
    with examples:
        render_examples(client, detail)
    with review:
        render_review_settings(client, detail)


def main() -> None:
    """The Classifiers page."""
    st.title("Classifiers")
    show_flashes()
    client = require_client()
    classifiers = call_or_stop(client.list_classifiers).get("items", [])
    models, default_model = model_choices(client)
    render_list(classifiers)
    selected = pick_classifier(classifiers)
    if selected == NEW:
        render_create(client, models, default_model)
    else:
        render_classifier(client, selected, models, default_model)


main()
