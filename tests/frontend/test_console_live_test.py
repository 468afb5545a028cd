"""Live test page: upload, classify (inline schema or saved classifier), results, history."""

import json

import respx

from frontend.schema import EXAMPLE_SCHEMA
from tests.frontend import fakes
from tests.frontend.fakes import calls_to

PDF = ("invoice.pdf", b"%PDF-1.7 fake", "application/pdf")


def upload_and_classify(at) -> None:
    at.file_uploader(key="live_file").set_value(PDF).run()
    at.button(key="live_classify").click().run()
    assert not at.exception


def mock_upload_and_previews(api: respx.MockRouter) -> None:
    api.post("/v1/documents").respond(201, json=fakes.document())
    api.get(path__regex=r"/v1/documents/doc-1/pages/\d+/image").respond(
        content=fakes.png_bytes(), headers={"content-type": "image/png"}
    )


def test_classify_with_an_inline_schema_shows_the_result(open_page, api: respx.MockRouter) -> None:
    mock_upload_and_previews(api)
    classify = api.post("/v1/classify").respond(json=fakes.classify_result())
    at = open_page("live_test")
    assert at.radio(key="live_schema_mode").value == "Inline schema"  # no saved classifier yet
    at.text_input(key="live_page_range").set_value("1-2")
    upload_and_classify(at)

    body = json.loads(classify.calls.last.request.content)
    assert body == {
        "document_id": "doc-1",
        "classification_schema": EXAMPLE_SCHEMA,
        "page_range": "1-2",
    }
    upload = calls_to(api, "POST", "/v1/documents")[0]
    assert b'filename="invoice.pdf"' in upload.content
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Label": "invoice",
        "Confidence": "81.2%",
        "Credits": "2",
        "Duration": "1.25 s",
    }
    assert any("confidence method `classifier`" in c.value for c in at.caption)
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert chart["layer"][0]["encoding"]["y"]["sort"] == ["invoice", "contract", "other"]
    assert len(at.image) == 2  # one preview per page used
    previews = calls_to(api, "GET", "/v1/documents/doc-1/pages/1/image")
    assert previews and previews[0].headers["x-api-key"] == fakes.API_KEY


def test_saved_classifier_runs_with_the_chosen_model(open_page, api: respx.MockRouter) -> None:
    mock_upload_and_previews(api)
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    run = api.post("/v1/classifiers/clf-1/run").respond(
        json=fakes.classify_result(classifier_id="clf-1", classifier_version=1)
    )
    at = open_page("live_test")
    assert at.radio(key="live_schema_mode").value == "Saved classifier"
    at.selectbox(key="live_model").set_value("gpt-4o-mini")
    upload_and_classify(at)
    assert json.loads(run.calls.last.request.content) == {
        "document_id": "doc-1",
        "query_model": "gpt-4o-mini",
    }
    assert any("classifier version 1" in c.value for c in at.caption)


def test_out_of_credits_is_a_readable_error(open_page, api: respx.MockRouter) -> None:
    mock_upload_and_previews(api)
    api.post("/v1/classify").respond(
        402, json=fakes.error("insufficient_credits", "Needs 2 credits, 0 available.")
    )
    at = open_page("live_test")
    upload_and_classify(at)
    assert "Not enough credits" in at.error[0].value
    assert "Needs 2 credits, 0 available." in at.error[0].value
    assert not at.metric


def test_a_zip_classifies_each_document(open_page, api: respx.MockRouter) -> None:
    docs = [
        fakes.document("doc-1", "a.pdf"),
        fakes.document("doc-2", "b.png", status="failed", error="no text found"),
        fakes.document("doc-3", "c.pdf"),
    ]
    api.post("/v1/documents").respond(201, json={"documents": docs})
    api.get(path__regex=r"/v1/documents/doc-\d/pages/\d+/image").respond(
        content=fakes.png_bytes(), headers={"content-type": "image/png"}
    )
    classify = api.post("/v1/classify").respond(json=fakes.classify_result())
    at = open_page("live_test")
    at.file_uploader(key="live_file").set_value(("set.zip", b"PK", "application/zip")).run()
    at.button(key="live_classify").click().run()
    sent = [json.loads(c.request.content)["document_id"] for c in classify.calls]
    assert sent == ["doc-1", "doc-3"]
    assert [e.label for e in at.expander] == ["a.pdf → invoice", "b.png", "c.pdf → invoice"]
    assert "no text found" in at.error[0].value


def test_recent_results_are_listed(open_page, api: respx.MockRouter) -> None:
    history = [
        fakes.classify_result(request_id="r1", classification="contract"),
        fakes.classify_result(request_id="r2"),
    ]
    route = api.get("/v1/classifications").respond(json=fakes.page(history))
    at = open_page("live_test")
    table = at.dataframe[-1].value
    assert table["label"].tolist() == ["contract", "invoice"]
    assert table["confidence"].tolist() == [0.125, 0.8125]
    assert route.calls.last.request.url.params["limit"] == "10"


def test_classifying_again_reuses_the_uploaded_document(open_page, api: respx.MockRouter) -> None:
    mock_upload_and_previews(api)
    classify = api.post("/v1/classify").respond(json=fakes.classify_result())
    at = open_page("live_test")
    upload_and_classify(at)
    at.selectbox(key="live_model").set_value("gpt-4o-mini")
    at.button(key="live_classify").click().run()
    assert len(calls_to(api, "POST", "/v1/documents")) == 1
    models = [json.loads(c.request.content).get("query_model") for c in classify.calls]
    assert models == [None, "gpt-4o-mini"]
    at.file_uploader(key="live_file").set_value(("other.pdf", b"%PDF other", "application/pdf"))
    at.run()
    at.button(key="live_classify").click().run()
    assert len(calls_to(api, "POST", "/v1/documents")) == 2


def test_compare_classifies_as_text_and_as_images_side_by_side(
    open_page, api: respx.MockRouter
) -> None:
    mock_upload_and_previews(api)

    def answer(request):  # noqa: ANN001, ANN202
        mode = json.loads(request.content).get("input_mode")
        label = "invoice" if mode == "text" else "contract"
        scores = {"invoice": 0.1, "contract": 0.1, "other": 0.1, label: 0.8}
        return respx.MockResponse(
            json=fakes.classify_result(
                classification=label,
                confidence_scores=scores,
                image_pages=[1, 2] if mode == "image" else [],
                usage={"prompt_tokens": 900, "completion_tokens": 1, "image_tokens": 1530},
            )
        )

    classify = api.post("/v1/classify").mock(side_effect=answer)
    at = open_page("live_test")
    at.checkbox(key="live_compare").check()
    upload_and_classify(at)
    sent = [json.loads(c.request.content).get("input_mode") for c in classify.calls]
    assert sent == ["text", "image"]
    assert [m.value for m in at.metric if m.label == "Label"] == ["invoice", "contract"]
    assert any("image pages: 1, 2" in c.value for c in at.caption)
