"""Evaluations page: start a run from a labelled zip or uploaded documents, progress, results."""

import io
import json
import zipfile

import httpx
import respx

from tests.frontend import fakes
from tests.frontend.fakes import calls_to


def labelled_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/invoice/a.pdf", b"%PDF a")
        archive.writestr("set/invoice/b.pdf", b"%PDF b")
        archive.writestr("set/other/c.txt", b"hello")
    return buffer.getvalue()


def numbered_uploads(request: httpx.Request) -> httpx.Response:
    """Each upload gets a document id named after its file."""
    name = request.content.split(b'filename="')[1].split(b'"')[0].decode()
    return httpx.Response(201, json=fakes.document(f"doc-{name}", name))


def test_zip_run_uploads_each_file_then_starts_and_shows_progress(
    open_page, api: respx.MockRouter
) -> None:
    api.post("/v1/documents").mock(side_effect=numbered_uploads)
    start = api.post("/v1/evaluations").respond(
        202, json={"evaluation_id": "ev-9", "status": "queued", "total": 3, "credits_estimate": 6}
    )
    api.get("/v1/evaluations/ev-9").respond(
        json=fakes.evaluation("ev-9", status="running", done=1, total=3)
    )
    at = open_page("evaluations")
    at.file_uploader(key="evaluations_zip").set_value(
        ("set.zip", labelled_zip(), "application/zip")
    ).run()
    counts = at.dataframe[0].value
    assert dict(zip(counts["label"], counts["documents"], strict=True)) == {
        "invoice": 2,
        "other": 1,
    }
    at.text_input(key="evaluations_name").set_value("first run")
    assert at.button(key="evaluations_start").disabled  # nothing uploaded, no cost known yet
    at.button(key="evaluations_upload").click().run()
    assert len(calls_to(api, "POST", "/v1/documents")) == 3
    # The cost is shown before the run starts.
    assert "This run will cost 6 credits (6 pages of 3 documents" in at.info[0].value
    estimate = json.loads(calls_to(api, "POST", "/v1/evaluations/estimate")[-1].content)
    assert len(estimate["items"]) == 3 and not start.called
    at.button(key="evaluations_start").click().run()
    assert not at.exception and not at.error

    assert len(calls_to(api, "POST", "/v1/documents")) == 3  # not uploaded again
    assert json.loads(start.calls.last.request.content) == {
        "name": "first run",
        "classification_schema": [
            {"label": "invoice", "description": "invoice"},
            {"label": "other", "description": "other"},
        ],
        "items": [
            {"document_id": "doc-a.pdf", "expected_label": "invoice"},
            {"document_id": "doc-b.pdf", "expected_label": "invoice"},
            {"document_id": "doc-c.txt", "expected_label": "other"},
        ],
    }
    assert "about 6 credits" in at.info[0].value
    progress = at.get("progress")[0]
    assert progress.value == 33  # percent, from done/total
    assert "1/3 documents (running)" in progress.proto.text


def test_folders_that_are_not_labels_block_the_run(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    at = open_page("evaluations")
    at.file_uploader(key="evaluations_zip").set_value(
        ("set.zip", labelled_zip(), "application/zip")
    ).run()
    # The saved classifier has invoice, contract, other; no folder may fall outside them.
    assert not any("Folders" in w.value for w in at.warning)
    assert not at.button(key="evaluations_upload").disabled
    at.radio(key="evaluations_schema_mode").set_value("Inline schema").run()
    inline = at.data_editor[0]  # prefilled with the zip's folders
    assert inline.value["label"].tolist() == ["invoice", "other"]
    at.session_state[inline.key] = {
        "edited_rows": {1: {"label": "memo"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert "Folders that are not labels of the schema: other." in at.warning[0].value
    assert at.button(key="evaluations_upload").disabled
    assert at.button(key="evaluations_start").disabled


def test_uploaded_documents_can_be_labelled_in_the_table(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    api.get("/v1/documents").respond(
        json=fakes.page([fakes.document("doc-1"), fakes.document("doc-2", "memo.pdf")])
    )
    start = api.post("/v1/evaluations").respond(
        202, json={"evaluation_id": "ev-2", "status": "queued", "total": 1}
    )
    api.get("/v1/evaluations/ev-2").respond(json=fakes.evaluation("ev-2", status="queued", done=0))
    at = open_page("evaluations")
    at.radio(key="evaluations_source").set_value("Documents already uploaded").run()
    at.session_state["evaluations_uploaded_invoice|contract|other"] = {
        "edited_rows": {1: {"expected_label": "other"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.selectbox(key="evaluations_model").set_value("local")
    at.run()
    at.button(key="evaluations_start").click().run()
    assert json.loads(start.calls.last.request.content) == {
        "classifier_id": "clf-1",
        "query_model": "local",
        "items": [{"document_id": "doc-2", "expected_label": "other"}],
    }


def test_a_finished_run_shows_metrics_and_charts(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/evaluations").respond(
        json=fakes.page([fakes.evaluation_row("ev-1", "baseline", 0.6667, "completed")])
    )
    api.get("/v1/evaluations/ev-1").respond(
        json=fakes.evaluation(run_metrics=fakes.metrics(0.6667, 0.6, 0.6667))
    )
    at = open_page("evaluations")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == "66.7%"
    assert metrics["Macro F1"] == "0.600"
    assert metrics["Calibration error (ECE)"] == "0.120"
    assert metrics["Credits"] == "3"
    assert metrics["Latency p95 (s)"] == "0.90 s"
    per_label = next(d.value for d in at.dataframe if "recall" in d.value.columns)
    assert per_label.set_index("label").loc["invoice", "recall"] == 0.5
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    first_marks = [spec["layer"][0]["mark"]["type"] for spec in specs]
    assert first_marks == ["rect", "line"]  # confusion-matrix heatmap, reliability diagonal


def test_watching_a_run_that_ends_opens_its_results(open_page, api: respx.MockRouter) -> None:
    finished = fakes.evaluation("ev-5", run_metrics=fakes.metrics(0.75, 0.7, 0.8), name="nightly")
    api.get("/v1/evaluations/ev-5").respond(json=finished)
    api.get("/v1/evaluations").respond(
        json=fakes.page(
            [
                fakes.evaluation_row("ev-1", "older", 0.5, "completed"),
                fakes.evaluation_row("ev-5", "nightly", 0.75, "completed"),
            ]
        )
    )
    api.get("/v1/evaluations/ev-1").respond(json=fakes.evaluation("ev-1", run_metrics=None))
    at = open_page("evaluations")
    at.session_state["evaluations_active"] = "ev-5"
    at.run()
    assert not at.exception
    assert "Evaluation nightly completed" in at.success[0].value
    assert at.selectbox(key="evaluations_picked").value == "ev-5"
    assert "evaluations_active" not in at.session_state


def test_compare_two_runs_shows_deltas(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/evaluations").respond(
        json=fakes.page(
            [
                fakes.evaluation_row("ev-new", "new prompt", 0.8333, "completed"),
                fakes.evaluation_row("ev-old", "baseline", 0.6667, "completed"),
            ]
        )
    )
    api.get("/v1/evaluations/ev-new").respond(
        json=fakes.evaluation("ev-new", run_metrics=fakes.metrics(0.8333, 0.8, 0.9))
    )
    api.get("/v1/evaluations/ev-old").respond(
        json=fakes.evaluation("ev-old", run_metrics=fakes.metrics(0.6667, 0.6, 0.6667))
    )
    at = open_page("evaluations")
    assert at.selectbox(key="evaluations_cmp_a").value == "ev-old"
    assert at.selectbox(key="evaluations_cmp_b").value == "ev-new"
    accuracy = [m for m in at.metric if m.label == "Accuracy" and m.proto.delta]
    assert accuracy[0].value == "83.3%"
    assert accuracy[0].proto.delta == "+16.7 pp"
    deltas = next(d.value for d in at.dataframe if "f1_a" in d.value.columns).set_index("label")
    assert round(deltas.loc["invoice", "delta"], 4) == 0.2333
    chart = json.loads(at.get("vega_lite_chart")[-1].proto.spec)
    assert chart["encoding"]["xOffset"]["field"] == "run"


def test_the_cost_shown_is_the_runs_own_mode_and_both_runs_when_comparing(
    open_page, api: respx.MockRouter
) -> None:
    api.post("/v1/documents").mock(side_effect=numbered_uploads)
    estimates = api.post("/v1/evaluations/estimate").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=fakes.estimate(
                credits=27 if json.loads(request.content).get("input_mode") == "image" else 3,
                available=983,
            ),
        )
    )
    at = open_page("evaluations")
    at.file_uploader(key="evaluations_zip").set_value(
        ("set.zip", labelled_zip(), "application/zip")
    ).run()
    at.checkbox(key="evaluations_compare").check().run()
    at.button(key="evaluations_upload").click().run()
    sent = [json.loads(call.request.content).get("input_mode") for call in estimates.calls]
    assert sent[-2:] == ["text", "image"]
    # The text run and the image run (at the image rate) together.
    assert "This run will cost 30 credits" in at.info[0].value
