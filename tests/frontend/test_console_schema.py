"""Label tables to schemas, diffs between versions, and PATCH bodies."""

import pandas as pd
import pytest

from frontend.schema import (
    Change,
    SchemaProblem,
    changed_fields,
    diff_versions,
    schema_frame,
    schema_from_rows,
)


def test_rows_are_trimmed_and_blank_rows_dropped() -> None:
    table = pd.DataFrame(
        [
            {"label": " invoice ", "description": "Pay me "},
            {"label": None, "description": None},
            {"label": "other", "description": None},
        ]
    )
    assert schema_from_rows(table) == [
        {"label": "invoice", "description": "Pay me"},
        {"label": "other", "description": ""},
    ]


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([{"label": "a", "description": ""}], "at least 2"),
        ([{"label": "a"}, {"label": "b"}, {"label": "a"}], "repeated: a"),
        ([{"label": "a"}, {"label": "", "description": "orphan"}], "Row 2"),
    ],
)
def test_invalid_tables_say_why(rows: list[dict], problem: str) -> None:
    with pytest.raises(SchemaProblem, match=problem):
        schema_from_rows(rows)


def test_frame_round_trips() -> None:
    schema = [{"label": "a", "description": "A"}, {"label": "b", "description": "B"}]
    assert schema_from_rows(schema_frame(schema)) == schema


def test_diff_lists_added_removed_changed_labels_and_settings() -> None:
    old = {
        "classification_schema": [
            {"label": "invoice", "description": "bill"},
            {"label": "memo", "description": "note"},
        ],
        "query_model": None,
        "page_range": "1",
    }
    new = {
        "classification_schema": [
            {"label": "invoice", "description": "a bill to pay"},
            {"label": "contract", "description": "agreement"},
        ],
        "query_model": "gpt-4o",
        "page_range": "1",
    }
    assert diff_versions(old, new) == [
        Change("added", "label contract", "", "agreement"),
        Change("removed", "label memo", "note", ""),
        Change("changed", "label invoice", "bill", "a bill to pay"),
        Change("changed", "query_model", "", "gpt-4o"),
    ]
    assert diff_versions(new, new) == []


def test_changed_fields_ignores_blank_versus_none() -> None:
    current = {
        "name": "n",
        "description": None,
        "page_range": None,
        "classification_schema": [{"label": "a", "description": None}],
    }
    proposed = {
        "name": "n",
        "description": "",
        "page_range": "1-2",
        "classification_schema": [{"label": "a", "description": ""}],
    }
    assert changed_fields(current, proposed) == {"page_range": "1-2"}
