"""The HTTP client: request shapes, the contract's error body, unreachable servers."""

import json

import httpx
import pytest
import respx

from frontend.api_client import ApiError, ApiUnreachable, DocSiftClient, documents_of
from tests.frontend import fakes


@pytest.fixture
def client() -> DocSiftClient:
    return DocSiftClient(fakes.BASE_URL + "/", fakes.API_KEY)


@respx.mock(base_url=fakes.BASE_URL)
def test_sends_the_key_and_leaves_out_unset_fields(respx_mock, client: DocSiftClient) -> None:
    route = respx_mock.post("/v1/classify").respond(json=fakes.classify_result())
    client.classify("doc-1", fakes.SCHEMA, query_model="local")
    request = route.calls.last.request
    assert request.headers["x-api-key"] == fakes.API_KEY
    assert json.loads(request.content) == {
        "document_id": "doc-1",
        "classification_schema": fakes.SCHEMA,
        "query_model": "local",
    }


@respx.mock(base_url=fakes.BASE_URL)
def test_contract_error_becomes_a_readable_message(respx_mock, client: DocSiftClient) -> None:
    body = fakes.error("insufficient_credits", "This request needs 3 credits; 1 available.")
    respx_mock.get("/v1/account").respond(402, json=body)
    with pytest.raises(ApiError) as caught:
        client.account()
    assert (caught.value.status, caught.value.code) == (402, "insufficient_credits")
    message = caught.value.user_message()
    assert "Not enough credits" in message
    assert "3 credits; 1 available" in message
    assert "HTTP 402" in message


@respx.mock(base_url=fakes.BASE_URL)
def test_non_contract_error_keeps_status_and_text(respx_mock, client: DocSiftClient) -> None:
    respx_mock.get("/v1/models").respond(502, text="Bad Gateway from the proxy")
    with pytest.raises(ApiError) as caught:
        client.models()
    assert caught.value.code == "http_502"
    assert "Bad Gateway from the proxy" in caught.value.user_message()


@respx.mock(base_url=fakes.BASE_URL)
def test_connection_failure_names_the_url(respx_mock, client: DocSiftClient) -> None:
    respx_mock.get("/v1/models").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ApiUnreachable, match=r"Cannot reach the API at http://docsift\.test"):
        client.models()


@respx.mock(base_url=fakes.BASE_URL)
def test_upload_is_multipart_with_the_filename(respx_mock, client: DocSiftClient) -> None:
    route = respx_mock.post("/v1/documents").respond(201, json=fakes.document())
    reply = client.upload_document("scan.png", b"\x89PNG...")
    body = route.calls.last.request.content
    assert b'name="file"; filename="scan.png"' in body
    assert b"Content-Type: image/png" in body
    assert documents_of(reply) == [fakes.document()]


def test_documents_of_a_zip_reply_lists_each_document() -> None:
    docs = [fakes.document("a"), fakes.document("b")]
    assert documents_of({"documents": docs}) == docs


@respx.mock(base_url=fakes.BASE_URL)
def test_pagination_and_filters_go_in_the_query(respx_mock, client: DocSiftClient) -> None:
    route = respx_mock.get("/v1/classifications").respond(json=fakes.page([]))
    client.classifications(limit=10, offset=20, classifier_id="clf-1", label=None)
    params = route.calls.last.request.url.params
    assert dict(params) == {"limit": "10", "offset": "20", "classifier_id": "clf-1"}
