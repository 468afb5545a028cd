"""Label sets: table rows to the API's `classification_schema`, and diffs between versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from frontend.api_client import SchemaItem

COLUMNS = ["label", "description"]
VERSION_FIELDS = ("query_model", "page_range", "instructions")
EXAMPLE_SCHEMA: list[SchemaItem] = [
    {
        "label": "invoice",
        "description": "A document requesting payment for goods or services rendered",
    },
    {
        "label": "purchase_order",
        "description": "A buyer-issued document authorizing a purchase from a supplier",
    },
    {"label": "contract", "description": "A legally binding agreement between two or more parties"},
    {"label": "other", "description": "Any document that does not fit the above categories"},
]


class SchemaProblem(ValueError):
    """A label table that cannot become a valid schema; the message says why."""


def schema_frame(schema: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A label/description table for st.data_editor."""
    rows = [{"label": item["label"], "description": item.get("description", "")} for item in schema]
    return pd.DataFrame(rows, columns=COLUMNS).astype("string")


def _text(value: Any) -> str:
    """A cell as trimmed text (None and NaN become blank)."""
    return "" if value is None or pd.isna(value) else str(value).strip()


def schema_from_rows(table: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[SchemaItem]:
    """Clean edited rows into a schema: blank rows dropped, at least 2 unique labels."""
    rows = table.to_dict("records") if isinstance(table, pd.DataFrame) else list(table)
    schema: list[SchemaItem] = []
    for number, row in enumerate(rows, start=1):
        label, description = _text(row.get("label")), _text(row.get("description"))
        if not label and not description:
            continue
        if not label:
            raise SchemaProblem(f"Row {number} has a description but no label.")
        schema.append({"label": label, "description": description})
    labels = [item["label"] for item in schema]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SchemaProblem(f"Labels must be unique; repeated: {', '.join(duplicates)}.")
    if len(schema) < 2:
        raise SchemaProblem("A label set needs at least 2 labels.")
    return schema


@dataclass(frozen=True)
class Change:
    """One difference between two classifier versions."""

    kind: str  # added | removed | changed
    item: str  # "label <name>" or a setting's name
    before: str
    after: str


def diff_versions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Labels added, removed or re-described, then settings changed, from old to new."""
    old_labels = {i["label"]: i.get("description", "") for i in old["classification_schema"]}
    new_labels = {i["label"]: i.get("description", "") for i in new["classification_schema"]}
    changes = [
        Change("added", f"label {label}", "", new_labels[label])
        for label in new_labels
        if label not in old_labels
    ]
    changes += [
        Change("removed", f"label {label}", old_labels[label], "")
        for label in old_labels
        if label not in new_labels
    ]
    changes += [
        Change("changed", f"label {label}", old_labels[label], new_labels[label])
        for label in new_labels
        if label in old_labels and old_labels[label] != new_labels[label]
    ]
    for name in VERSION_FIELDS:
        before, after = _text(old.get(name)), _text(new.get(name))
        if before != after:
            changes.append(Change("changed", name, before, after))
    return changes


def _comparable(name: str, value: Any) -> Any:
    """Blank and None mean the same; schema items compare by label and description only."""
    if name == "classification_schema" and value is not None:
        return [(item["label"], item.get("description") or "") for item in value]
    return value if value not in ("", None) else None


def changed_fields(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> dict[str, Any]:
    """The proposed fields whose value differs from the current classifier (for PATCH)."""
    return {
        name: value
        for name, value in proposed.items()
        if _comparable(name, current.get(name)) != _comparable(name, value)
    }
