"""Evaluations: run a classifier over a labelled set, watch it, read the metrics, compare runs."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from frontend.api_client import JSON, DocSiftClient, DocSiftError, EvaluationItem, documents_of
from frontend.datasets import LabelledFile, LabelledSet, read_labelled_zip
from frontend.evaluation_views import render_comparison, render_run, run_title
from frontend.schema import EXAMPLE_SCHEMA
from frontend.ui import (
    call,
    flash,
    fmt_time,
    model_choices,
    optional_items,
    require_client,
    show_flashes,
    upload_within_limit,
)
from frontend.widgets import SchemaChoice, input_mode_controls, model_select, schema_picker

ACTIVE = "evaluations_active"  # the run being watched
PICKED = "evaluations_picked"
PENDING_PICK = "evaluations_pending_pick"
TERMINAL = {"completed", "failed", "cancelled"}
POLL_SECONDS = 2
ZIP, UPLOADED = "Zip with a folder per label", "Documents already uploaded"
PREPARED = "evaluations_prepared"  # {"zip": uploader file id, "items": [...]} once uploaded


@st.fragment(run_every=POLL_SECONDS)
def watch_active_run(client: DocSiftClient) -> None:
    """Poll the running evaluation; when it ends, rerun the page to show its results."""
    evaluation_id = st.session_state.get(ACTIVE)
    if not evaluation_id:
        return
    run = call(client.evaluation, evaluation_id)
    if run is None:
        return
    done, total = run.get("done", 0), run.get("total", 0)
    label = run.get("name") or evaluation_id
    st.progress(
        done / total if total else 0.0,
        text=f"Evaluation {label}: {done}/{total} documents ({run.get('status')})",
    )
    if run.get("status") in TERMINAL:
        st.session_state.pop(ACTIVE, None)
        st.session_state[PENDING_PICK] = evaluation_id
        kind = "success" if run.get("status") == "completed" else "warning"
        flash(f"Evaluation {label} {run.get('status')}: see the Results tab.", kind)
        st.rerun()


def read_zip_upload(upload: object) -> LabelledSet | None:
    """Read and summarise a labelled zip; None (with a message) if unusable."""
    try:
        labelled = read_labelled_zip(upload.getvalue())  # type: ignore[attr-defined]
    except ValueError as exc:
        st.error(str(exc))
        return None
    if not labelled.files:
        st.error("No files inside label folders: put each document in a folder named by its label.")
        return None
    counts = labelled.counts()
    st.dataframe(
        pd.DataFrame({"label": list(counts), "documents": list(counts.values())}), hide_index=True
    )
    if labelled.skipped:
        st.caption("Skipped: " + "; ".join(labelled.skipped))
    return labelled


def upload_labelled(client: DocSiftClient, files: Sequence[LabelledFile]) -> list[EvaluationItem]:
    """Upload every file with a progress bar; returns the items that uploaded and were read."""
    items: list[EvaluationItem] = []
    progress = st.progress(0.0, text="Uploading the labelled set...")
    for number, labelled in enumerate(files, start=1):
        try:
            reply = client.upload_document(labelled.filename, labelled.content)
        except DocSiftError as exc:
            st.warning(f"{labelled.label}/{labelled.filename} left out: {exc.user_message()}")
        else:
            for document in documents_of(reply):
                if document.get("status") == "failed":
                    st.warning(f"{document.get('filename')} left out: {document.get('error')}")
                    continue
                items.append(
                    {"document_id": document["document_id"], "expected_label": labelled.label}
                )
        progress.progress(number / len(files), text=f"Uploaded {number}/{len(files)} files")
    return items


def pick_uploaded(client: DocSiftClient, labels: list[str]) -> list[EvaluationItem]:
    """Label already-uploaded documents in a table; rows left blank are not evaluated."""
    listing = call(client.list_documents, limit=200)
    documents = (listing or {}).get("items", [])
    if not documents:
        st.info("No uploaded documents yet.")
        return []
    table = pd.DataFrame(
        [
            {
                "expected_label": None,
                "filename": d.get("filename"),
                "pages": d.get("num_pages"),
                "status": d.get("status"),
                "uploaded": fmt_time(d.get("created_at")),
                "document_id": d["document_id"],
            }
            for d in documents
        ]
    )
    edited = st.data_editor(
        table,
        key=f"evaluations_uploaded_{'|'.join(labels)}",
        hide_index=True,
        disabled=["filename", "pages", "status", "uploaded", "document_id"],
        column_config={
            "expected_label": st.column_config.SelectboxColumn("Expected label", options=labels)
        },
    )
    chosen = edited[edited["expected_label"].notna() & (edited["expected_label"] != "")]
    st.caption(f"{len(chosen)} of {len(edited)} documents labelled.")
    return [
        {"document_id": row.document_id, "expected_label": row.expected_label}
        for row in chosen.itertuples()
    ]


def start_run(
    client: DocSiftClient,
    items: list[EvaluationItem],
    choice: SchemaChoice,
    name: str,
    model: str | None,
    input_mode: str | None = None,
    compare: bool = False,
) -> None:
    """POST the run and start watching it; with `compare`, a second run on the same documents
    in image mode (text mode against image mode in the Compare tab)."""
    classifier_id = choice.classifier["classifier_id"] if choice.classifier else None
    modes = ["text", "image"] if compare else [input_mode]
    reply = None
    for mode in modes:
        suffix = f" ({mode})" if compare else ""
        reply = call(
            client.create_evaluation,
            items,
            name=(name + suffix).strip() or None,
            classifier_id=classifier_id,
            schema=None if classifier_id else choice.schema,
            query_model=model,
            input_mode=mode,
        )
        if reply is None:
            return
    if compare:
        flash("Started a text run and an image run: compare them in Compare runs.", "info")
    if reply is not None:
        st.session_state[ACTIVE] = reply["evaluation_id"]
        estimate = reply.get("credits_estimate")
        cost = f", about {estimate} credits" if estimate is not None else ""
        flash(f"Started evaluation over {reply.get('total', len(items))} documents{cost}.", "info")
        st.rerun()


def render_estimate(
    client: DocSiftClient,
    items: list[EvaluationItem],
    choice: SchemaChoice,
    model: str | None,
    input_mode: str | None = None,
    compare: bool = False,
) -> bool:
    """Show what the run (both runs, when comparing) will cost before it starts; False when the
    account cannot pay it. Image pages have their own rate, so the mode is part of the price."""
    classifier_id = choice.classifier["classifier_id"] if choice.classifier else None
    estimate = None
    for mode in ["text", "image"] if compare else [input_mode]:
        one = call(
            client.estimate_evaluation,
            items,
            classifier_id=classifier_id,
            schema=None if classifier_id else choice.schema,
            query_model=model,
            input_mode=mode,
        )
        if one is None:
            return False
        if estimate is not None:  # the second run of a comparison, on the same pages
            one["credits_estimate"] += estimate["credits_estimate"]
            one["pages"] += estimate["pages"]
            one["enough"] = one["credits_estimate"] <= one["available"]
        estimate = one
    if estimate is None:
        return False
    text = (
        f"This run will cost {estimate['credits_estimate']} credits "
        f"({estimate['pages']} pages of {len(items)} documents with `{estimate['model']}`); "
        f"{estimate['available']} available."
    )
    if estimate.get("enough", True):
        st.info(text, icon=":material/payments:")
        return True
    st.error(text + " Add credits or evaluate fewer documents.")
    return False


def render_new_run(
    client: DocSiftClient, classifiers: list[JSON], models: list[str], default_model: str | None
) -> None:
    """Choose the labelled set, the labels and the model; see the cost; then start a run."""
    name = st.text_input("Run name", key="evaluations_name", placeholder="e.g. v3 on gpt-4o-mini")
    source = st.radio("Labelled set", [ZIP, UPLOADED], horizontal=True, key="evaluations_source")
    labelled: LabelledSet | None = None
    upload = None
    default_schema: list = EXAMPLE_SCHEMA
    if source == ZIP:
        upload = upload_within_limit(
            client, "Zip with one folder per label", types=["zip"], key="evaluations_zip"
        )
        labelled = read_zip_upload(upload) if upload is not None else None
        if labelled is not None:
            default_schema = [{"label": lab, "description": lab} for lab in labelled.labels]
    choice = schema_picker("evaluations", classifiers, default_schema)
    if choice.problem:
        st.warning(choice.problem)
    blank = "Classifier default" if choice.classifier else f"Server default ({default_model})"
    model = model_select("Model", models, "evaluations_model", blank_means=blank)
    input_mode, compare = input_mode_controls(
        "evaluations",
        "Run text and image on the same set",
        "Two runs, input text and input image, side by side in Compare runs",
    )
    items = pick_uploaded(client, choice.labels) if source == UPLOADED else []
    unknown = sorted(set(labelled.labels) - set(choice.labels)) if labelled else []
    if unknown:
        st.warning(f"Folders that are not labels of the schema: {', '.join(unknown)}.")
    usable = not choice.problem and not unknown
    if labelled is not None and upload is not None:
        # The zip's files are uploaded first, so the run's cost can be shown before it starts.
        prepared = st.session_state.get(PREPARED)
        if prepared and prepared["zip"] == upload.file_id:
            items = prepared["items"]
            st.caption(f"{len(items)} document(s) uploaded from {upload.name}.")
        elif st.button("Upload the set", disabled=not usable, key="evaluations_upload"):
            items = upload_labelled(client, labelled.files)
            st.session_state[PREPARED] = {"zip": upload.file_id, "items": items}
            if not items:
                st.error("No document could be uploaded, so there is nothing to evaluate.")
    affordable = (
        bool(items)
        and usable
        and render_estimate(client, items, choice, model, input_mode, compare)
    )
    if st.button(
        "Start evaluation", type="primary", disabled=not affordable, key="evaluations_start"
    ):
        start_run(client, items, choice, name.strip(), model, input_mode, compare)


def pick_run(runs: list[JSON], label: str, key: str, index: int = 0) -> str:
    """A run picker over past runs."""
    by_id = {r["evaluation_id"]: r for r in runs}
    return st.selectbox(
        label,
        list(by_id),
        index=min(index, len(by_id) - 1),
        format_func=lambda rid: run_title(by_id[rid]),
        key=key,
    )


def render_results(client: DocSiftClient, runs: list[JSON]) -> None:
    """Metrics and charts of one run."""
    if not runs:
        st.info("No evaluations yet: start one in the New run tab.")
        return
    if st.session_state.get(PENDING_PICK) in {r["evaluation_id"] for r in runs}:
        st.session_state[PICKED] = st.session_state.pop(PENDING_PICK)
    run = call(client.evaluation, pick_run(runs, "Run", PICKED))
    if run is not None:
        render_run(run)


def render_compare(client: DocSiftClient, runs: list[JSON]) -> None:
    """Two finished runs side by side."""
    finished = [r for r in runs if r.get("status") == "completed"]
    if len(finished) < 2:
        st.info("Two finished runs are needed to compare.")
        return
    col_a, col_b = st.columns(2)
    with col_a:
        id_a = pick_run(finished, "Run A (baseline)", "evaluations_cmp_a", index=1)
    with col_b:
        id_b = pick_run(finished, "Run B", "evaluations_cmp_b", index=0)
    run_a, run_b = call(client.evaluation, id_a), call(client.evaluation, id_b)
    if run_a is not None and run_b is not None:
        render_comparison(run_a, run_b)


def main() -> None:
    """The Evaluations page."""
    st.title("Evaluations")
    show_flashes()
    client = require_client()
    if st.session_state.get(ACTIVE):
        watch_active_run(client)
    classifiers = optional_items(client.list_classifiers, "saved classifiers")
    runs = optional_items(lambda: client.list_evaluations(limit=100), "evaluations")
    models, default_model = model_choices(client)
    # A run that just finished opens on its results.
    opened = "Results" if st.session_state.get(PENDING_PICK) else None
    new_tab, results_tab, compare_tab = st.tabs(
        ["New run", "Results", "Compare runs"], default=opened
    )
    with new_tab:
        render_new_run(client, classifiers, models, default_model)
    with results_tab:
        render_results(client, runs)
    with compare_tab:
        render_compare(client, runs)


main()
