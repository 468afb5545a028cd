"""Account page: credits, usage charts, the paginated ledger, API keys."""

import json

import httpx
import respx

from tests.frontend import fakes


def test_balance_usage_and_charts(open_page, api: respx.MockRouter) -> None:
    at = open_page("account")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Balance": "987",
        "Reserved": "4",
        "Available": "983",
        "Credits used": "13",
        "Classifications": "7",
        "Pages": "13",
    }
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert [spec["encoding"]["x"]["field"] for spec in specs] == ["day", "credits"]
    by_model = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert by_model["model"].tolist() == ["local", "gpt-4o-mini"]


def ledger_page(request: httpx.Request) -> httpx.Response:
    """120 entries, served a page at a time as the API does."""
    offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
    items = [fakes.ledger_entry(n) for n in range(offset, min(offset + limit, 120))]
    return httpx.Response(200, json=fakes.page(items, total=120) | {"offset": offset})


def test_ledger_is_paginated(open_page, api: respx.MockRouter) -> None:
    route = api.get("/v1/account/ledger").mock(side_effect=ledger_page)
    at = open_page("account")
    pager = at.number_input(key="account_ledger_page")
    assert "of 3, 120 entries" in pager.label
    ledger = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert len(ledger) == 50
    pager.set_value(3).run()
    assert route.calls.last.request.url.params["offset"] == "100"
    ledger = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert ledger["id"].tolist() == [f"led-{n}" for n in range(100, 120)]


def test_a_new_key_is_shown_once(open_page, api: respx.MockRouter) -> None:
    route = api.post("/v1/account/keys").respond(
        201,
        json={
            "key_id": "k9",
            "name": "ci",
            "api_key": "dsk_secret_shown_once",
            "display_prefix": "dsk_secr",
            "created_at": fakes.NOW,
        },
    )
    at = open_page("account")
    at.text_input(key="account_new_key_name").set_value("ci")
    at.form_submit_button[0].click().run()
    assert json.loads(route.calls.last.request.content) == {"name": "ci"}
    assert at.code[0].value == "dsk_secret_shown_once"
    assert "will not be shown again" in at.success[0].value
    at.run()  # any later rerun forgets it
    assert not at.code


def test_a_scoped_expiring_key(open_page, api: respx.MockRouter) -> None:
    route = api.post("/v1/account/keys").respond(
        201,
        json={
            "key_id": "k9",
            "name": "reader",
            "api_key": "dsk_reader",
            "display_prefix": "dsk_read",
            "created_at": fakes.NOW,
        },
    )
    at = open_page("account")
    at.text_input(key="account_new_key_name").set_value("reader")
    at.multiselect(key="account_new_key_scopes").select("documents:read").select("classify")
    at.text_input(key="account_new_key_classifiers").set_value("c1, c2")
    at.number_input(key="account_new_key_days").set_value(30)
    at.form_submit_button[0].click().run()
    sent = json.loads(route.calls.last.request.content)
    assert sent["scopes"] == ["documents:read", "classify"]
    assert sent["classifier_ids"] == ["c1", "c2"]
    assert sent["expires_at"] > fakes.NOW
    assert at.code[0].value == "dsk_reader"


def test_revoke_a_key_after_confirming(open_page, api: respx.MockRouter) -> None:
    api.get("/v1/account/keys").respond(
        json={
            "items": [
                fakes.api_key_row("k1", "old", revoked=True),
                fakes.api_key_row("k2", "ci"),
            ]
        }
    )
    route = api.delete("/v1/account/keys/k2").respond(json={"key_id": "k2", "revoked_at": "now"})
    at = open_page("account")
    assert at.selectbox(key="account_revoke_pick").options == ["ci (dsk_k2...)"]
    assert at.button(key="account_revoke").disabled
    at.checkbox(key="account_revoke_confirm").check().run()
    at.button(key="account_revoke").click().run()
    assert route.called
    assert "Key ci revoked" in at.success[0].value


def test_an_api_error_on_the_ledger_leaves_the_rest_of_the_page(
    open_page, api: respx.MockRouter
) -> None:
    api.get("/v1/account/ledger").respond(
        500, json=fakes.error("internal_error", "database is locked")
    )
    at = open_page("account")
    assert "database is locked" in at.error[0].value
    assert {m.label for m in at.metric} >= {"Balance", "Available"}
    assert at.subheader[-1].value == "API keys"
