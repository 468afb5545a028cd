"""Input widgets several pages share: the label table, defaults, the model and schema pickers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from frontend.api_client import JSON, SchemaItem
from frontend.schema import SchemaProblem, schema_frame, schema_from_rows

_MISSING = object()
UPLOAD_TYPES = ["pdf", "png", "jpg", "jpeg", "tiff", "tif", "webp", "txt", "zip"]
SAVED, INLINE = "Saved classifier", "Inline schema"


def stable_selectbox(
    label: str,
    options: Sequence[Any],
    key: str,
    format_func: Callable[[Any], str] = str,
    index: int = 0,
    **kwargs: Any,
) -> Any:
    """st.selectbox whose option labels may change between runs (a new version, another
    default). The browser keeps showing, and sends back, the label it showed; so an old label
    is mapped back to its option, and the value is set again when its label changed, which
    makes the browser show the new one."""
    options = list(options)
    labels_key = f"{key}__labels"
    shown: dict[str, Any] = st.session_state.get(labels_key, {})
    if key in st.session_state and options:
        value = st.session_state[key]
        if value not in options:
            value = shown.get(str(value), value)
        if value not in options:
            value = options[min(index, len(options) - 1)]
        if value != st.session_state[key] or shown.get(format_func(value), _MISSING) != value:
            st.session_state[key] = value
    st.session_state[labels_key] = {format_func(o): o for o in options}
    return st.selectbox(
        label,
        options,
        index=0 if key in st.session_state else index,
        format_func=format_func,
        key=key,
        **kwargs,
    )


def label_editor(schema: Sequence[Mapping[str, Any]], key: str) -> pd.DataFrame:
    """An editable label/description table; rows can be added and deleted."""
    return st.data_editor(
        schema_frame(schema),
        key=key,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "label": st.column_config.TextColumn("Label", required=True, max_chars=100),
            "description": st.column_config.TextColumn("Description", width="large"),
        },
    )


def model_select(
    label: str,
    models: Sequence[str],
    key: str,
    *,
    current: str | None = None,
    blank_means: str | None = None,
) -> str | None:
    """A model picker; the blank option (None) leaves the choice to `blank_means`."""
    options: list[str] = [""] if blank_means else []
    options += [m for m in models if m not in options]
    if current and current not in options:
        options.append(current)  # a model the server no longer lists stays visible
    index = options.index(current) if current in options else 0
    if not options:
        st.warning("The server lists no models.")
        return None
    choice = stable_selectbox(
        label, options, key, format_func=lambda m: m or f"{blank_means}", index=index
    )
    return choice or None


def defaults_inputs(
    prefix: str, current: Mapping[str, Any], models: Sequence[str], default_model: str | None
) -> dict[str, str | None]:
    """A classifier's defaults: model, page range and instructions (blank becomes None)."""
    col_model, col_range = st.columns(2)
    with col_model:
        query_model = model_select(
            "Default model",
            models,
            f"{prefix}_model",
            current=current.get("query_model"),
            blank_means=f"Server default ({default_model or 'unknown'})",
        )
    with col_range:
        page_range = st.text_input(
            "Default page range",
            value=current.get("page_range") or "",
            placeholder="all pages; e.g. 1-2 or 1,3,5",
            key=f"{prefix}_page_range",
        )
    instructions = st.text_area(
        "Instructions",
        value=current.get("instructions") or "",
        placeholder="Optional guidance added to the prompt",
        key=f"{prefix}_instructions",
    )
    return {
        "query_model": query_model,
        "page_range": page_range.strip() or None,
        "instructions": instructions.strip() or None,
    }


@dataclass
class SchemaChoice:
    """Where labels come from: a saved classifier, or an inline schema (or a problem to show)."""

    classifier: JSON | None = None
    schema: list[SchemaItem] | None = None
    problem: str | None = None

    @property
    def labels(self) -> list[str]:
        """The labels of the chosen schema."""
        if self.classifier is not None:
            return [item["label"] for item in self.classifier["classification_schema"]]
        return [item["label"] for item in self.schema or []]


def schema_picker(
    prefix: str, classifiers: Sequence[JSON], default_schema: Sequence[Mapping[str, Any]]
) -> SchemaChoice:
    """Choose a saved classifier or edit an inline label set."""
    mode = st.radio(
        "Labels from",
        [SAVED, INLINE],
        index=0 if classifiers else 1,
        horizontal=True,
        key=f"{prefix}_schema_mode",
    )
    if mode == SAVED:
        if not classifiers:
            return SchemaChoice(
                problem="No saved classifiers yet: create one or use an inline schema."
            )
        by_id = {c["classifier_id"]: c for c in classifiers}
        chosen = stable_selectbox(
            "Classifier",
            list(by_id),
            f"{prefix}_classifier",
            format_func=lambda cid: (
                f"{by_id[cid]['name']} (v{by_id[cid]['version']})" if cid in by_id else str(cid)
            ),
        )
        return SchemaChoice(classifier=by_id[chosen])
    # A new default (e.g. another zip's folders) must reset the table, so it is part of the key.
    digest = hashlib.sha1(repr(list(default_schema)).encode()).hexdigest()[:8]
    rows = label_editor(default_schema, key=f"{prefix}_inline_labels_{digest}")
    try:
        return SchemaChoice(schema=schema_from_rows(rows))
    except SchemaProblem as exc:
        return SchemaChoice(problem=str(exc))


INPUT_MODES = ["text", "image", "text+image", "auto"]


def input_mode_controls(
    prefix: str, compare_label: str, compare_help: str
) -> tuple[str | None, bool]:
    """The input mode picker (None: the classifier's, else the model's default) and the
    text-vs-image compare box, side by side; keys `<prefix>_input_mode` and `<prefix>_compare`."""
    col_input, col_compare = st.columns(2)
    input_mode = col_input.selectbox(
        "Input",
        [None, *INPUT_MODES],
        format_func=lambda mode: mode or "Default (the classifier's, else the model's)",
        key=f"{prefix}_input_mode",
        help="What the model reads: the pages' text, their images (vision models), or both",
    )
    compare = col_compare.checkbox(compare_label, key=f"{prefix}_compare", help=compare_help)
    return input_mode, compare
