"""Defects a new user ran into (issue 28), each shown fixed under AppTest."""

import httpx
import respx

from tests.frontend import fakes


def test_picker_shows_the_new_version_after_a_save(open_page, api: respx.MockRouter) -> None:
    v1 = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    v2 = {**v1, "version": 2, "page_range": "1-3"}
    patch = api.patch("/v1/classifiers/clf-1").respond(json=v2)
    current = lambda: v2 if patch.called else v1  # noqa: E731
    api.get("/v1/classifiers").mock(
        side_effect=lambda request: httpx.Response(200, json=fakes.page([current()]))
    )
    api.get("/v1/classifiers/clf-1").mock(
        side_effect=lambda request: httpx.Response(200, json=current())
    )
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([], estimate=None))
    at = open_page("classifiers")
    at.selectbox(key="classifiers_selected").set_value("clf-1").run()
    at.text_input(key="classifiers_edit_clf-1_v1_page_range").set_value("1-3")
    at.button(key="classifiers_edit_clf-1_v1_save").click().run()
    assert not at.exception
    picker = at.selectbox(key="classifiers_selected")
    assert picker.value == "clf-1"
    assert picker.options[picker.index] == "mailroom (v2)"
    # The value is sent to the browser again, so it replaces the "(v1)" it was showing.
    assert picker.proto.set_value and picker.proto.raw_value == "mailroom (v2)"
    at.run()  # and once shown, it is not forced again
    assert not at.selectbox(key="classifiers_selected").proto.set_value


def examples_page(open_page, api: respx.MockRouter, items: list | None = None):
    detail = fakes.classifier(versions=[fakes.version(1, fakes.SCHEMA)])
    api.get("/v1/classifiers").respond(json=fakes.page([detail]))
    api.get("/v1/classifiers/clf-1").respond(json=detail)
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page(items or [], estimate=None))
    at = open_page("classifiers")
    at.selectbox(key="classifiers_selected").set_value("clf-1").run()
    return at


def test_examples_tab_stays_open_after_an_upload(open_page, api: respx.MockRouter) -> None:
    api.post("/v1/documents").respond(201, json=fakes.document("doc-a"))
    api.post("/v1/classifiers/clf-1/examples").respond(
        201, json={"example_id": "ex-1", "document_id": "doc-a", "label": "other"}
    )
    at = examples_page(open_page, api)
    at.session_state["classifiers_tabs_clf-1"] = "Examples"  # the user opened the tab
    at.run()
    at.file_uploader[0].set_value(("a.pdf", b"%PDF-1.7", "application/pdf")).run()
    at.button(key="classifiers_add_clf-1").click().run()
    assert not at.exception
    assert "Added 1 example(s)" in at.success[0].value
    assert at.session_state["classifiers_tabs_clf-1"] == "Examples"


def test_a_duplicate_example_is_reported_by_file_name(open_page, api: respx.MockRouter) -> None:
    api.post("/v1/documents").respond(201, json=fakes.document("doc-b", "w9 copy.pdf"))
    api.post("/v1/classifiers/clf-1/examples").respond(
        409,
        json=fakes.error(
            "conflict", "w9 copy.pdf is already an example of this classifier (as w9.pdf)."
        ),
    )
    at = examples_page(open_page, api)
    at.file_uploader[0].set_value(("w9 copy.pdf", b"%PDF-1.7", "application/pdf")).run()
    at.button(key="classifiers_add_clf-1").click().run()
    assert not at.exception and not at.success
    assert "w9 copy.pdf: w9 copy.pdf is already an example" in at.warning[0].value


def test_uploaders_take_the_servers_size_limit(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/limits").respond(json=fakes.limits(max_upload_mb=7))
    at = examples_page(open_page, api)
    assert at.file_uploader[0].proto.max_upload_size_mb == 7
    live = open_page("live_test")
    assert live.file_uploader(key="live_file").proto.max_upload_size_mb == 7


def test_a_file_over_the_limit_is_refused_before_upload(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/limits").respond(json={**fakes.limits(), "max_upload_bytes": 1000})
    upload = api.post("/v1/documents").respond(201, json=fakes.document())
    at = open_page("live_test")
    at.file_uploader(key="live_file").set_value(("big.pdf", b"x" * 1001, "application/pdf")).run()
    assert "big.pdf is 0.0 MB: the server accepts at most" in at.error[0].value
    assert at.button(key="live_classify").disabled
    assert not upload.called


def test_a_new_file_clears_the_previous_result(open_page, api: respx.MockRouter) -> None:
    api.post("/v1/documents").respond(201, json=fakes.document())
    api.post("/v1/classify").respond(json=fakes.classify_result())
    at = open_page("live_test")
    at.file_uploader(key="live_file").set_value(("a.pdf", b"%PDF-1.7 a", "application/pdf")).run()
    at.button(key="live_classify").click().run()
    assert [m.value for m in at.metric][0] == "invoice"
    at.file_uploader(key="live_file").set_value(("b.pdf", b"%PDF-1.7 b", "application/pdf")).run()
    assert not at.exception and not at.metric


def test_model_box_follows_the_schema_source(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    at = open_page("live_test")
    model = at.selectbox(key="live_model")
    assert model.options[model.index] == "Classifier default"
    at.radio(key="live_schema_mode").set_value("Inline schema").run()
    model = at.selectbox(key="live_model")
    assert model.options[model.index] == "Server default (local)"
    assert model.proto.set_value  # the browser is told, so it stops showing the old label
    assert model.value == ""


def test_page_range_placeholder_does_not_look_like_a_value(open_page) -> None:
    at = open_page("live_test")
    box = at.text_input(key="live_page_range")
    assert box.value == "" and box.placeholder.startswith("all pages")


def test_the_toolbar_has_no_deploy_button(open_page) -> None:
    import streamlit as st

    open_page("classifiers")
    assert st.get_option("client.toolbarMode") == "minimal"


def test_an_evaluation_the_account_cannot_pay_cannot_start(
    open_page, api: respx.MockRouter
) -> None:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    api.get("/v1/documents").respond(json=fakes.page([fakes.document("doc-1")]))
    api.post("/v1/evaluations/estimate").respond(json=fakes.estimate(credits=40, available=12))
    start = api.post("/v1/evaluations").respond(202, json={"evaluation_id": "ev-1", "total": 1})
    at = open_page("evaluations")
    at.radio(key="evaluations_source").set_value("Documents already uploaded").run()
    at.session_state["evaluations_uploaded_invoice|contract|other"] = {
        "edited_rows": {0: {"expected_label": "invoice"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert "This run will cost 40 credits" in at.error[0].value
    assert "12 available" in at.error[0].value
    assert at.button(key="evaluations_start").disabled and not start.called


def test_evaluation_items_show_file_names(open_page, api: respx.MockRouter) -> None:
    run = fakes.evaluation(run_metrics=fakes.metrics(1.0, 1.0, 1.0))
    run["items"][0]["filename"] = "northwind invoice.pdf"
    api.get("/v1/evaluations").respond(
        json=fakes.page([fakes.evaluation_row("ev-1", "baseline", 1.0, "completed")])
    )
    api.get("/v1/evaluations/ev-1").respond(json=run)
    at = open_page("evaluations")
    items = at.dataframe[-1].value
    assert items["document"].tolist() == ["northwind invoice.pdf"]
    assert list(items.columns)[0] == "document" and list(items.columns)[-1] == "document_id"


def test_models_the_server_cannot_use_are_not_offered(open_page, api: respx.MockRouter) -> None:
    listing = fakes.models()
    listing["models"][1] |= {"available": False, "unavailable_reason": "OPENAI_API_KEY is not set"}
    api.get("/v1/models").respond(json=listing)
    at = open_page("live_test")
    options = at.selectbox(key="live_model").options
    assert "local" in options
    assert "gpt-4o-mini" not in options
