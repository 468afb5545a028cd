"""Classifiers page: list, create with the label table, edit, versions, examples."""

import json

import httpx
import respx

from frontend.schema import EXAMPLE_SCHEMA
from tests.frontend import fakes
from tests.frontend.fakes import calls_to


def test_lists_saved_classifiers(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/classifiers").respond(
        json=fakes.page([fakes.classifier(), fakes.classifier("clf-2", "w9 router", version=3)])
    )
    at = open_page("classifiers")
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["mailroom", "w9 router"]
    assert table["version"].tolist() == [1, 3]
    assert at.selectbox(key="classifiers_selected").options == [
        "New classifier",
        "mailroom (v1)",
        "w9 router (v3)",
    ]


def test_create_posts_the_edited_label_table(open_page, api: respx.MockRouter) -> None:
    created = fakes.classifier("clf-new", "mail", schema=EXAMPLE_SCHEMA[:2])
    route = api.post("/v1/classifiers").respond(201, json=created)
    # The list the page reloads after creating holds the new classifier.
    api.get("/v1/classifiers").mock(
        side_effect=lambda request: httpx.Response(200, json=fakes.page([created] * route.called))
    )
    api.get("/v1/classifiers/clf-new").respond(json={**created, "versions": []})
    api.get("/v1/classifiers/clf-new/examples").respond(json=fakes.page([], estimate=None))
    at = open_page("classifiers")
    at.text_input(key="classifiers_new_name").set_value(" mail ")
    # Edit row 0, delete rows 2 and 3, add one row: what a user does in the table.
    at.session_state["classifiers_new_labels"] = {
        "edited_rows": {0: {"description": "Asks for payment"}},
        "added_rows": [{"label": "w9", "description": "IRS form W-9"}],
        "deleted_rows": [2, 3],
    }
    at.selectbox(key="classifiers_new_model").set_value("gpt-4o-mini")
    at.text_input(key="classifiers_new_page_range").set_value("1-2")
    at.button(key="classifiers_create").click().run()

    assert not at.exception and not at.error
    assert json.loads(route.calls.last.request.content) == {
        "name": "mail",
        "classification_schema": [
            {"label": "invoice", "description": "Asks for payment"},
            {"label": "purchase_order", "description": EXAMPLE_SCHEMA[1]["description"]},
            {"label": "w9", "description": "IRS form W-9"},
        ],
        "query_model": "gpt-4o-mini",
        "page_range": "1-2",
    }
    # After the rerun the new classifier is selected and the success message shown.
    assert "Created classifier mail (version 1)" in at.success[0].value
    assert at.selectbox(key="classifiers_selected").value == "clf-new"


def test_create_refuses_duplicate_labels_without_calling_the_api(
    open_page, api: respx.MockRouter
) -> None:
    route = api.post("/v1/classifiers").respond(201, json=fakes.classifier())
    at = open_page("classifiers")
    at.text_input(key="classifiers_new_name").set_value("dupes")
    at.session_state["classifiers_new_labels"] = {
        "edited_rows": {1: {"label": "invoice"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.button(key="classifiers_create").click().run()
    assert "repeated: invoice" in at.error[0].value
    assert not route.called


def test_create_shows_the_servers_validation_error(open_page, api: respx.MockRouter) -> None:
    api.post("/v1/classifiers").respond(
        400, json=fakes.error("invalid_request", "name is already used by another classifier")
    )
    at = open_page("classifiers")
    at.text_input(key="classifiers_new_name").set_value("mailroom")
    at.button(key="classifiers_create").click().run()
    assert not at.exception
    assert "name is already used by another classifier" in at.error[0].value
    assert "invalid_request" in at.error[0].value


def open_classifier(open_page, api: respx.MockRouter, detail: dict) -> object:
    api.get("/v1/classifiers").respond(json=fakes.page([detail]))
    api.get(f"/v1/classifiers/{detail['classifier_id']}").respond(json=detail)
    at = open_page("classifiers")
    at.selectbox(key="classifiers_selected").set_value(detail["classifier_id"]).run()
    assert not at.exception
    return at


def test_edit_patches_only_what_changed(open_page, api: respx.MockRouter) -> None:
    detail = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([], estimate=None))
    route = api.patch("/v1/classifiers/clf-1").respond(json={**detail, "version": 2})
    at = open_classifier(open_page, api, detail)
    at.text_input(key="classifiers_edit_clf-1_v1_page_range").set_value("1-3")
    at.button(key="classifiers_edit_clf-1_v1_save").click().run()
    assert json.loads(route.calls.last.request.content) == {"page_range": "1-3"}
    assert "now version 2" in at.success[0].value


def test_versions_tab_diffs_two_versions(open_page, api: respx.MockRouter) -> None:
    v2_schema = [
        {"label": "invoice", "description": "A bill to pay"},
        {"label": "w9", "description": "IRS form"},
        {"label": "other", "description": "Anything else"},
    ]
    detail = fakes.classifier(
        version=2,
        schema=v2_schema,
        versions=[
            fakes.version(1, fakes.SCHEMA),
            fakes.version(2, v2_schema, query_model="gpt-4o-mini"),
        ],
    )
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([], estimate=None))
    at = open_classifier(open_page, api, detail)
    diff = at.dataframe[-1].value
    rows = set(zip(diff["kind"], diff["item"], diff["after"], strict=True))
    assert rows == {
        ("added", "label w9", "IRS form"),
        ("removed", "label contract", ""),
        ("changed", "label invoice", "A bill to pay"),
        ("changed", "query_model", "gpt-4o-mini"),
    }


def test_examples_show_the_estimate_and_upload_with_a_label(
    open_page, api: respx.MockRouter
) -> None:
    detail = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    example = {"example_id": "ex-1", "document_id": "doc-9", "label": "other", "created_at": "x"}
    estimate = {"accuracy": 0.93, "ece": 0.041, "n_examples": 14, "per_label": {}}
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([example], estimate=estimate))
    api.post("/v1/documents").respond(
        201, json={"documents": [fakes.document("doc-a"), fakes.document("doc-b")]}
    )
    examples = api.post("/v1/classifiers/clf-1/examples").respond(201, json=example)
    at = open_classifier(open_page, api, detail)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Estimated accuracy"] == "93.0%"
    assert metrics["Examples"] == "14"

    at.file_uploader[0].set_value(("batch.zip", b"PK\x03\x04", "application/zip")).run()
    at.selectbox(key="classifiers_example_label_clf-1").set_value("contract")
    at.button(key="classifiers_add_clf-1").click().run()
    assert not at.exception
    sent = [json.loads(call.request.content) for call in examples.calls]
    assert sent == [
        {"document_id": "doc-a", "label": "contract"},
        {"document_id": "doc-b", "label": "contract"},
    ]
    upload = calls_to(api, "POST", "/v1/documents")[0]
    assert b'filename="batch.zip"' in upload.content
    assert "Added 2 example(s) labelled contract" in at.success[0].value


def test_delete_an_example(open_page, api: respx.MockRouter) -> None:
    detail = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    example = {
        "example_id": "ex-7",
        "document_id": "doc-9",
        "label": "other",
        "created_at": "2026-11-23T10:00:00.123456Z",
        "filename": "w9.pdf",
        "num_pages": 6,
    }
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([example], estimate=None))
    route = api.delete("/v1/classifiers/clf-1/examples/ex-7").respond(204)
    at = open_classifier(open_page, api, detail)
    # Documents by file name and preview, ids last; times to the second.
    shown = at.dataframe[-1].value
    assert list(shown.columns[:5]) == ["preview", "filename", "label", "pages", "added"]
    assert shown["filename"].tolist() == ["w9.pdf"]
    assert shown["added"].tolist() == ["2026-11-23 10:00:00"]
    assert shown["preview"][0].startswith("data:image/png;base64,")
    assert at.selectbox(key="classifiers_example_delete_pick_clf-1").options == [
        "w9.pdf · other · added 2026-11-23 10:00:00"
    ]
    at.button(key="classifiers_example_delete_clf-1").click().run()
    assert route.called
    assert "Example w9.pdf deleted" in at.success[0].value


def test_an_estimate_from_few_examples_shows_its_interval(open_page, api: respx.MockRouter) -> None:
    detail = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    estimate = {
        "accuracy": 1.0,
        "accuracy_interval": [0.7, 1.0],
        "too_few_examples": True,
        "ece": 0.0,
        "n_examples": 9,
        "per_label": {},
    }
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([], estimate=estimate))
    at = open_classifier(open_page, api, detail)
    assert any("Too few examples" in w.value for w in at.warning)
    assert any("70.0% to 100.0%" in c.value for c in at.caption)
