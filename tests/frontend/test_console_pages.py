"""The pages added for issue 28: Documents, Split, Batches, History and Webhooks."""

import json

import httpx
import respx

from tests.frontend import fakes
from tests.frontend.fakes import calls_to

MICRO = "2026-11-23T10:00:00.654321Z"


# Documents


def test_documents_list_search_and_viewer(open_page, api: respx.MockRouter) -> None:
    docs = [
        fakes.document("doc-1", "w9 acme.pdf", num_pages=3, kind="pdf", created_at=MICRO),
        fakes.document("doc-2", "scan.png", num_pages=1, kind="image"),
    ]
    listing = api.get("/v1/documents").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=fakes.page([d for d in docs if request.url.params.get("q", "") in d["filename"]]),
        )
    )
    api.get("/v1/documents/doc-1").respond(
        json={**docs[0], "pages": [{"page": n, "chars": 40, "ocr": False} for n in (1, 2, 3)]}
    )
    api.get("/v1/documents/doc-1/pages/1").respond(
        json={
            "document_id": "doc-1",
            "page": 1,
            "text": "Form W-9 Request for TIN",
            "chars": 24,
            "ocr": False,
        }
    )
    at = open_page("documents")
    shown = at.dataframe[0].value
    assert shown["filename"].tolist() == ["w9 acme.pdf", "scan.png"]
    assert shown["type"].tolist() == ["pdf", "image"]
    assert shown["uploaded"][0] == "2026-11-23 10:00:00"
    assert shown["preview"][0].startswith("data:image/png;base64,")
    at.text_input(key="documents_q").set_value("w9").run()
    assert listing.calls.last.request.url.params["q"] == "w9"
    assert at.dataframe[0].value["filename"].tolist() == ["w9 acme.pdf"]
    # The viewer: page image beside its text, a page slider for a 3-page document.
    assert at.selectbox(key="documents_open").value == "doc-1"
    assert at.text_area[0].value == "Form W-9 Request for TIN"
    assert at.slider[0].max == 3 and len(at.image) == 1
    assert not at.exception


def test_documents_delete_needs_a_confirmation(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/documents").respond(json=fakes.page([fakes.document()]))
    api.get("/v1/documents/doc-1").respond(json={**fakes.document(), "pages": []})
    api.get(path__regex=r"^/v1/documents/doc-1/pages/\d+$").respond(
        json={"document_id": "doc-1", "page": 1, "text": "x", "chars": 1, "ocr": False}
    )
    delete = api.delete("/v1/documents/doc-1").respond(
        json={"document_id": "doc-1", "deleted": True}
    )
    at = open_page("documents")
    assert at.button(key="documents_delete_doc-1").disabled
    at.checkbox(key="documents_confirm_doc-1").check().run()
    at.button(key="documents_delete_doc-1").click().run()
    assert delete.called and "Deleted invoice.pdf" in at.success[0].value


def test_a_history_link_opens_its_document(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/documents").respond(json=fakes.page([fakes.document("doc-1")]))
    api.get("/v1/documents/doc-7").respond(
        json={**fakes.document("doc-7", "old.pdf", num_pages=1), "pages": []}
    )
    api.get("/v1/documents/doc-7/pages/1").respond(
        json={"document_id": "doc-7", "page": 1, "text": "old text", "chars": 8, "ocr": False}
    )
    at = open_page("classifiers")
    at.query_params["document"] = "doc-7"
    at.switch_page("app_pages/documents.py").run()
    assert not at.exception
    assert at.selectbox(key="documents_open").value == "doc-7"
    assert at.subheader[0].value == "old.pdf"


# Split

SPLIT = {
    "request_id": "req-s",
    "document_id": "doc-1",
    "classifier_id": None,
    "classifier_version": None,
    "segments": [
        {
            "pages": "1-2",
            "classification": "invoice",
            "confidence_scores": {"invoice": 0.9, "contract": 0.05, "other": 0.05},
        },
        {
            "pages": "3-4",
            "classification": "contract",
            "confidence_scores": {"invoice": 0.1, "contract": 0.8, "other": 0.1},
        },
    ],
    "credits_used": 4,
    "num_pages": 4,
    "duration": 1.0,
    "model": "local",
}


def split_page(open_page, api: respx.MockRouter):
    api.post("/v1/documents").respond(201, json=fakes.document("doc-1", "bundle.pdf", num_pages=4))
    split = api.post("/v1/split").respond(json=SPLIT)
    at = open_page("split")
    at.file_uploader(key="split_file").set_value(("bundle.pdf", b"%PDF", "application/pdf")).run()
    at.button(key="split_run").click().run()
    assert not at.exception
    return at, split


def segments_table(at):
    """The segments editor (AppTest lists a data_editor among the dataframes)."""
    return next(d.value for d in at.dataframe if "pages" in d.value.columns)


def test_split_draws_segments_over_the_pages(open_page, api: respx.MockRouter) -> None:
    at, split = split_page(open_page, api)
    assert json.loads(split.calls.last.request.content)["document_id"] == "doc-1"
    editor = segments_table(at)
    assert editor["pages"].tolist() == ["1-2", "3-4"]
    assert editor["label"].tolist() == ["invoice", "contract"]
    assert len(at.image) == 4  # every page, each with its segment drawn over it
    assert "2 document(s) found" in at.subheader[0].value


def test_split_adjusted_then_made_into_documents(open_page, api: respx.MockRouter) -> None:
    made = api.post("/v1/documents/doc-1/segments").respond(
        201,
        json={
            "documents": [
                fakes.document("c1", "bundle p1.pdf", num_pages=1),
                fakes.document("c2", "bundle p2-4.pdf", num_pages=3),
            ]
        },
    )
    at, _ = split_page(open_page, api)
    editor_key = "split_segments_req-s"
    # Overlapping pages are refused before anything is sent.
    at.session_state[editor_key] = {
        "edited_rows": {1: {"pages": "2-4"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert any("Page 2 is in segments 1 and 2" in w.value for w in at.warning)
    assert at.button(key="split_create").disabled
    at.session_state[editor_key] = {
        "edited_rows": {0: {"pages": "1"}, 1: {"pages": "2-4"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.warning
    at.button(key="split_create").click().run()
    assert json.loads(made.calls.last.request.content) == {
        "segments": [{"pages": "1"}, {"pages": "2-4"}]
    }
    created = at.dataframe[-1].value
    assert created["filename"].tolist() == ["bundle p1.pdf", "bundle p2-4.pdf"]
    assert created["label"].tolist() == ["invoice", "contract"]


# Batches


def batch(status: str, done: int) -> dict:
    items = []
    for n, name in enumerate(["a.pdf", "b.pdf", "c.pdf"]):
        finished = n < done
        items.append(
            {
                "item_id": f"it-{n}",
                "position": n,
                "document_id": f"doc-{n}",
                "filename": name,
                "status": "completed" if finished else "pending",
                "attempts": 1 if finished else 0,
                "error": None,
                "result": fakes.classify_result(f"doc-{n}", request_id=f"req-{n}")
                if finished
                else None,
            }
        )
    return {
        "batch_id": "b-1",
        "status": status,
        "total": 3,
        "done": done,
        "succeeded": done,
        "failed": 0,
        "credits_estimate": 6,
        "credits_used": 2 * done,
        "model": "local",
        "classifier_id": None,
        "classifier_version": None,
        "page_range": None,
        "webhook_url": None,
        "created_at": MICRO,
        "started_at": MICRO,
        "finished_at": None,
        "labels": ["invoice", "contract", "other"],
        "items": items,
    }


def summary(b: dict) -> dict:
    return {k: v for k, v in b.items() if k not in ("items", "labels")}


def test_batch_from_a_zip_shows_live_progress(open_page, api: respx.MockRouter) -> None:
    started = api.post("/v1/batch-uploads").respond(
        202, json={"batch_id": "b-1", "status": "queued", "total": 3, "credits_estimate": 6}
    )
    running = batch("running", 1)
    api.get("/v1/batches").mock(
        side_effect=lambda request: httpx.Response(
            200, json=fakes.page([summary(running)] if started.called else [])
        )
    )
    api.get("/v1/batches/b-1").respond(json=running)
    at = open_page("batches")
    at.file_uploader(key="batches_zip").set_value(("set.zip", b"PK\x03\x04", "application/zip"))
    at.run()
    at.button(key="batches_start_zip").click().run()
    assert not at.exception
    sent = calls_to(api, "POST", "/v1/batch-uploads")[0]
    assert b'filename="set.zip"' in sent.content
    assert b'"classification_schema"' in sent.content
    assert "Batch started: 3 item(s), about 6 credits" in at.info[0].value
    progress = at.get("progress")[0]
    assert progress.value == 33 and "1/3 items" in progress.proto.text
    items = at.dataframe[-1].value
    assert items["filename"].tolist() == ["a.pdf", "b.pdf", "c.pdf"]
    assert items["status"].tolist() == ["completed", "pending", "pending"]
    assert not at.get("download_button")  # not until the batch is done


def test_finished_batch_downloads_as_csv(open_page, api: respx.MockRouter) -> None:
    finished = {**batch("completed", 3), "finished_at": MICRO}
    api.get("/v1/batches").respond(json=fakes.page([summary(finished)]))
    api.get("/v1/batches/b-1").respond(json=finished)
    at = open_page("batches")
    assert not at.exception
    listing = at.dataframe[-2].value
    assert listing["created"].tolist() == ["2026-11-23 10:00:00"]
    download = at.get("download_button")[0]
    assert download.proto.label == "Download results (CSV)"
    items = at.dataframe[-1].value
    assert items["label"].tolist() == ["invoice"] * 3


def test_batch_from_picked_documents(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/documents").respond(
        json=fakes.page([fakes.document("doc-1"), fakes.document("doc-2", "b.pdf")])
    )
    create = api.post("/v1/batches").respond(
        202, json={"batch_id": "b-1", "status": "queued", "total": 2, "credits_estimate": 4}
    )
    api.get("/v1/batches/b-1").respond(json=batch("queued", 0))
    at = open_page("batches")
    at.radio(key="batches_source").set_value("Documents already uploaded").run()
    at.multiselect(key="batches_pick").set_value(["doc-2", "doc-1"]).run()
    at.button(key="batches_start_pick").click().run()
    body = json.loads(create.calls.last.request.content)
    assert body["document_ids"] == ["doc-2", "doc-1"] and "classification_schema" in body


# History


def record(number: int, kind: str = "classify", **fields) -> dict:
    return {
        **fakes.classify_result(f"doc-{number}", request_id=f"req-{number}", created_at=MICRO),
        "kind": kind,
        "filename": f"file{number}.pdf",
        "classification_schema": fakes.SCHEMA,
        "page_range": None,
        "result": None,
        **fields,
    }


def test_history_filters_pages_and_links(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    listing = api.get("/v1/classifications").respond(
        json=fakes.page(
            [
                record(1),
                record(2, "classifier_run", classifier_id="clf-1", classifier_version=2),
                record(3, "split", result={"segments": [{"pages": "1"}, {"pages": "2"}]}),
            ],
            total=60,
        )
    )
    at = open_page("history")
    rows = at.dataframe[0].value
    assert rows["kind"].tolist() == ["classify", "classifier_run", "split"]
    assert rows["document"].tolist() == ["file1.pdf", "file2.pdf", "file3.pdf"]
    assert rows["classifier"].tolist() == ["inline schema", "mailroom v2", "inline schema"]
    assert rows["label"].tolist() == ["invoice", "invoice", "2 documents"]
    assert rows["when"][0] == "2026-11-23 10:00:00"
    assert rows["open"][0] == "/documents?document=doc-1"
    at.selectbox(key="history_kind").set_value("split")
    at.text_input(key="history_label").set_value("invoice")
    at.number_input(key="history_page").set_value(2).run()
    params = listing.calls.last.request.url.params
    assert params["kind"] == "split" and params["label"] == "invoice"
    assert params["offset"] == "25" and params["limit"] == "25"
    assert "page 2 of 3" in at.caption[0].value


# Webhooks


def delivery(status: str) -> dict:
    return {
        "delivery_id": "dl-1",
        "event_type": "batch.completed",
        "batch_id": "b-1",
        "url": "https://example.com/hook",
        "status": status,
        "attempts": 3,
        "response_status": 500,
        "last_error": "HTTP 500",
        "created_at": MICRO,
        "delivered_at": None,
        "log": [
            {"attempt": n, "at": MICRO, "status_code": 500, "error": "HTTP 500", "duration_ms": 12}
            for n in (1, 2, 3)
        ],
        "payload": {"type": "batch.completed"},
    }


def test_webhooks_url_secret_and_retry(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/webhooks").respond(json=fakes.webhook_config("https://example.com/hook"))
    api.get("/v1/webhooks/deliveries").respond(json=fakes.page([delivery("failed")]))
    save = api.put("/v1/webhooks").respond(json=fakes.webhook_config("https://example.com/new"))
    retry = api.post("/v1/webhooks/deliveries/dl-1/retry").respond(202, json=delivery("pending"))
    at = open_page("webhooks")
    assert at.text_input(key="webhooks_url").value == "https://example.com/hook"
    assert "whsec_te…" in at.code[0].value and "whsec_test" not in at.code[0].value
    at.toggle(key="webhooks_show_secret").set_value(True).run()
    assert at.code[0].value == "whsec_test"
    rows = at.dataframe[0].value
    assert rows["status"].tolist() == ["failed"] and rows["created"][0] == "2026-11-23 10:00:00"
    assert len(at.dataframe[1].value) == 3  # every attempt
    at.button(key="webhooks_retry_dl-1").click().run()
    assert retry.called and "Delivery queued again" in at.info[0].value
    at.text_input(key="webhooks_url").set_value("https://example.com/new")
    at.button(key="webhooks_save").click().run()
    assert json.loads(save.calls.last.request.content) == {"url": "https://example.com/new"}
