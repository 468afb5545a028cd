"""Review page: the oldest pending result with its page image and scores, one click to decide."""

import json

import respx

from tests.frontend import fakes
from tests.frontend.fakes import calls_to


def item(request_id: str = "req-1", **fields) -> dict:
    return {
        "request_id": request_id,
        "document_id": "doc-1",
        "kind": "classifier_run",
        "classifier_id": "clf-1",
        "classifier_version": 1,
        "model": "local",
        "classification": "contract",
        "confidence": 0.55,
        "confidence_scores": {"invoice": 0.35, "contract": 0.55, "other": 0.1},
        "labels": ["invoice", "contract", "other"],
        "review_status": "pending",
        "threshold": 0.7,
        "label": "contract",
        "decision": None,
        "segments": None,
        "pages_used": [1, 2],
        "created_at": fakes.NOW,
        **fields,
    }


def mock_queue(api: respx.MockRouter, items: list[dict], total: int) -> respx.Route:
    api.get("/v1/classifiers").respond(json=fakes.page([fakes.classifier()]))
    api.get(path__regex=r"/v1/documents/doc-1/pages/\d+/image").respond(
        content=fakes.png_bytes(), headers={"content-type": "image/png"}
    )
    return api.get("/v1/reviews").respond(json=fakes.page(items, total=total, pending=total))


def decided(label: str, outcome: str) -> dict:
    return item(
        review_status="reviewed",
        label=label,
        decision={
            "label": label,
            "outcome": outcome,
            "original": "contract",
            "reviewed_by": "key-1",
            "reviewed_at": fakes.NOW,
            "example_id": "ex-1",
            "segment": None,
        },
    )


def test_shows_the_oldest_pending_with_image_scores_and_suggestion(open_page, api) -> None:
    queue = mock_queue(api, [item()], total=3)
    at = open_page("review")
    assert not at.exception
    assert queue.calls.last.request.url.params["status"] == "pending"
    assert len(at.image) == 1
    assert calls_to(api, "GET", "/v1/documents/doc-1/pages/1/image")
    assert at.radio(key="review_label_req-1_None").value == "contract"  # preselected
    assert any("3** awaiting review" in m.value for m in at.markdown)
    assert at.subheader[0].value == "Suggested: contract"
    assert at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")


def test_accept_confirms_and_a_label_button_corrects(open_page, api) -> None:
    mock_queue(api, [item()], total=3)
    post = api.post("/v1/reviews/req-1").respond(json=decided("contract", "confirmed"))
    at = open_page("review")
    at.button(key="review_accept").click().run()
    assert json.loads(post.calls.last.request.content) == {"label": "contract"}
    assert any("Confirmed: contract" in s.value for s in at.success)
    post.respond(json=decided("invoice", "corrected"))
    at.button(key="review_pick_1").click().run()  # "invoice", the first label
    assert json.loads(post.calls.last.request.content) == {"label": "invoice"}
    assert any("Corrected: invoice" in s.value for s in at.success)


def test_split_results_decide_their_pending_segment(open_page, api) -> None:
    segments = [
        {
            "index": 0,
            "pages": "1",
            "classification": "invoice",
            "confidence": 0.9,
            "confidence_scores": {"invoice": 0.9, "contract": 0.05, "other": 0.05},
            "review_status": "auto_accepted",
            "document_id": None,
            "decision": None,
        },
        {
            "index": 1,
            "pages": "2-3",
            "classification": "other",
            "confidence": 0.5,
            "confidence_scores": {"invoice": 0.2, "contract": 0.3, "other": 0.5},
            "review_status": "pending",
            "document_id": None,
            "decision": None,
        },
    ]
    mock_queue(api, [item(kind="split", segments=segments)], total=1)
    post = api.post("/v1/reviews/req-1").respond(json=decided("other", "confirmed"))
    at = open_page("review")
    assert at.radio(key="review_label_req-1_1").value == "other"
    assert calls_to(api, "GET", "/v1/documents/doc-1/pages/2/image")
    at.button(key="review_accept").click().run()
    assert json.loads(post.calls.last.request.content) == {"label": "other", "segment": 1}


def test_an_empty_queue_says_so(open_page, api) -> None:
    mock_queue(api, [], total=0)
    at = open_page("review")
    assert "Nothing to review" in at.success[0].value


def test_a_conflict_is_a_readable_error(open_page, api) -> None:
    mock_queue(api, [item()], total=1)
    api.post("/v1/reviews/req-1").respond(
        409, json=fakes.error("conflict", "Result req-1 was already reviewed as 'invoice'.")
    )
    at = open_page("review")
    at.button(key="review_pick_3").click().run()
    assert "already reviewed" in at.error[0].value


def test_classifier_review_tab_shows_threshold_tradeoff_and_saves_a_policy(
    open_page, api: respx.MockRouter
) -> None:
    from tests.frontend.test_console_classifiers import open_classifier

    detail = fakes.classifier(
        versions=[fakes.version(1, fakes.SCHEMA)],
        review_policy={"target_accuracy": 0.95},
        review={
            "threshold": 0.81,
            "source": "target_accuracy",
            "target_accuracy": 0.95,
            "evaluation_id": "ev-1",
            "coverage": 0.72,
            "accuracy": 0.96,
            "review_share": 0.28,
        },
        training={"state": "ready"},
        review_tradeoff={
            "evaluation_id": "ev-1",
            "auroc": 0.88,
            "errors_caught": {"5": 0.3, "10": 0.5, "20": 0.75},
            "at_accuracy": {
                "0.95": {
                    "threshold": 0.81,
                    "coverage": 0.72,
                    "accuracy": 0.96,
                    "review_share": 0.28,
                },
                "0.99": None,
            },
            "risk_coverage": [
                {"threshold": 0.9, "coverage": 0.5, "accuracy": 1.0},
                {"threshold": 0.2, "coverage": 1.0, "accuracy": 0.9},
            ],
        },
    )
    api.get("/v1/classifiers/clf-1/examples").respond(json=fakes.page([], estimate=None))
    patch = api.patch("/v1/classifiers/clf-1").respond(json={**detail, "version": 2})
    at = open_classifier(open_page, api, detail)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Review threshold"] == "0.81" and metrics["Set by"] == "Target accuracy"
    assert any("72.0% auto-accepted at 96.0% accuracy" in c.value for c in at.caption)
    table = at.dataframe[-1].value
    assert table["sent to review"].tolist() == [0.28, 1.0]
    at.radio(key="classifiers_review_mode_clf-1").set_value("threshold").run()
    at.number_input(key="classifiers_review_value_clf-1_threshold").set_value(0.6).run()
    at.button(key="classifiers_review_save_clf-1").click().run()
    assert json.loads(patch.calls.last.request.content) == {"review_policy": {"threshold": 0.6}}
