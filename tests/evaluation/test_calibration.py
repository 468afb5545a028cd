"""Temperature calibration: fitted on a run, lowers ECE, applied to later runs only while enabled."""

from backend.evaluation.calibration import calibrate_scores
from tests.evaluation.helpers import SCHEMA
from tests.fixtures.db import make_document


async def _classifier(client, tenant) -> str:
    response = await client.post(
        "/v1/classifiers",
        json={"name": "c", "classification_schema": SCHEMA, "query_model": "fake"},
        headers=tenant.headers,
    )
    return response.json()["classifier_id"]


async def _evaluated(client, tenant, labelled_set, wait_done, classifier_id) -> str:
    items = await labelled_set(tenant)
    started = await client.post(
        "/v1/evaluations",
        json={"classifier_id": classifier_id, "items": items},
        headers=tenant.headers,
    )
    evaluation_id = started.json()["evaluation_id"]
    await wait_done(tenant, evaluation_id)
    return evaluation_id


async def _run(client, harness, tenant, classifier_id) -> dict:
    doc = await make_document(harness, tenant, ["invoice 99"])
    response = await client.post(
        f"/v1/classifiers/{classifier_id}/run", json={"document_id": doc}, headers=tenant.headers
    )
    return response.json()


async def test_calibration_lowers_the_error_of_an_overconfident_model(
    client, harness, tenant, labelled_set, wait_done
):
    cid = await _classifier(client, tenant)
    evaluation_id = await _evaluated(client, tenant, labelled_set, wait_done, cid)
    url = f"/v1/evaluations/{evaluation_id}/calibration"
    assert (await client.get(url, headers=tenant.headers)).status_code == 404  # not fitted yet
    fitted = await client.post(url, json={}, headers=tenant.headers)
    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    # 7 of 8 right at 0.99: T > 1 brings confidence down to the accuracy
    assert body["temperature"] > 1 and body["enabled"] is True
    assert body["ece_before"] == round(0.99 - 7 / 8, 4) and body["ece_after"] < 0.01
    assert body["classifier_id"] == cid and body["version"] == 1 and body["model"] == "fake"
    report = (await client.get(f"/v1/evaluations/{evaluation_id}", headers=tenant.headers)).json()
    assert report["calibration"]["ece_before"] == body["ece_before"]
    assert report["calibration"]["ece_after"] == body["ece_after"]

    run = await _run(client, harness, tenant, cid)
    assert run["classification"] == "invoice"
    assert abs(run["confidence_scores"]["invoice"] - 7 / 8) < 0.02
    assert abs(sum(run["confidence_scores"].values()) - 1) < 0.001

    off = await client.patch(url, json={"enabled": False}, headers=tenant.headers)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert (await _run(client, harness, tenant, cid))["confidence_scores"]["invoice"] == 0.99
    unchanged = await client.patch(url, json={}, headers=tenant.headers)
    assert unchanged.json()["enabled"] is False
    on = await client.patch(url, json={"enabled": True}, headers=tenant.headers)
    assert on.json()["enabled"] is True
    assert (await _run(client, harness, tenant, cid))["confidence_scores"]["invoice"] < 0.9

    async with harness.app.state.docsift.sessionmaker() as session:
        scores = {"invoice": 0.99, "other": 0.01}
        same = await calibrate_scores(
            session, classifier_id=cid, version=2, model="fake", scores=scores
        )
        softened = await calibrate_scores(
            session, classifier_id=cid, version=1, model="fake", scores=scores
        )
    assert same == scores  # another version has no calibration
    assert softened["invoice"] < 0.9


async def test_a_later_evaluation_measures_the_calibrated_confidence(
    client, harness, tenant, labelled_set, wait_done
):
    cid = await _classifier(client, tenant)
    first = await _evaluated(client, tenant, labelled_set, wait_done, cid)
    fitted = (
        await client.post(f"/v1/evaluations/{first}/calibration", json={}, headers=tenant.headers)
    ).json()
    second = await _evaluated(client, tenant, labelled_set, wait_done, cid)
    report = (await client.get(f"/v1/evaluations/{second}", headers=tenant.headers)).json()
    metrics = report["metrics"]
    assert metrics["calibration_temperature"] == fitted["temperature"]
    assert metrics["ece"] < 0.01 < fitted["ece_before"]
    assert metrics["accuracy"] == 7 / 8  # predictions unchanged
    assert all(abs(max(i["confidence_scores"].values()) - 7 / 8) < 0.01 for i in report["items"])
    # refitting on calibrated scores composes with the temperature the run used
    refit = (
        await client.post(f"/v1/evaluations/{second}/calibration", json={}, headers=tenant.headers)
    ).json()
    assert abs(refit["temperature"] - fitted["temperature"]) / fitted["temperature"] < 0.05
    assert refit["ece_before"] == metrics["ece"]


async def test_refitting_replaces_the_calibration(client, harness, tenant, labelled_set, wait_done):
    cid = await _classifier(client, tenant)
    first = await _evaluated(client, tenant, labelled_set, wait_done, cid)
    second = await _evaluated(client, tenant, labelled_set, wait_done, cid)
    await client.post(f"/v1/evaluations/{first}/calibration", json={}, headers=tenant.headers)
    refit = await client.post(
        f"/v1/evaluations/{second}/calibration", json={"enabled": False}, headers=tenant.headers
    )
    assert refit.json()["evaluation_id"] == second and refit.json()["enabled"] is False
    # one calibration per classifier version and model, reachable from either run
    via_first = await client.get(f"/v1/evaluations/{first}/calibration", headers=tenant.headers)
    assert via_first.json()["evaluation_id"] == second
    first_report = (await client.get(f"/v1/evaluations/{first}", headers=tenant.headers)).json()
    assert first_report["calibration"] is None


async def test_calibration_needs_a_finished_classifier_run_with_enough_items(
    client, harness, tenant, labelled_set, wait_done
):
    items = await labelled_set(tenant)
    inline = await client.post(
        "/v1/evaluations",
        json={"classification_schema": SCHEMA, "query_model": "fake", "items": items},
        headers=tenant.headers,
    )
    inline_id = inline.json()["evaluation_id"]
    await wait_done(tenant, inline_id)
    refused = await client.post(
        f"/v1/evaluations/{inline_id}/calibration", json={}, headers=tenant.headers
    )
    assert refused.status_code == 400 and "saved classifier" in refused.json()["message"]
    cid = await _classifier(client, tenant)
    small = await client.post(
        "/v1/evaluations",
        json={"classifier_id": cid, "items": items[:3]},
        headers=tenant.headers,
    )
    await wait_done(tenant, small.json()["evaluation_id"])
    too_few = await client.post(
        f"/v1/evaluations/{small.json()['evaluation_id']}/calibration",
        json={},
        headers=tenant.headers,
    )
    assert too_few.status_code == 400 and "at least 5" in too_few.json()["message"]
