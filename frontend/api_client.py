"""The console's one HTTP client for the DocSift API (no Streamlit here, so it stays testable)."""

from __future__ import annotations

import json
import mimetypes
from typing import Any, TypedDict

import httpx

JSON = dict[str, Any]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)  # classify and OCR can take minutes
FRIENDLY_TITLES = {
    "invalid_api_key": "The API key was rejected: check the key in the sidebar",
    "insufficient_credits": "Not enough credits",
    "invalid_request": "The request was not valid",
    "not_found": "Not found",
    "document_not_processed": "The document is not processed yet",
    "unsupported_file": "Unsupported file",
    "payload_too_large": "The file is too large",
    "conflict": "Already there",
    "rate_limited": "Too many requests: wait a moment and try again",
    "model_error": "The model provider failed",
    "internal_error": "The server hit an internal error",
}


class SchemaItem(TypedDict):
    """One label of a classification schema."""

    label: str
    description: str


class EvaluationItem(TypedDict):
    """One document of an evaluation and the label it should get."""

    document_id: str
    expected_label: str


class DocSiftError(Exception):
    """Anything that went wrong talking to the API, with a message fit for a person."""

    def user_message(self) -> str:
        return str(self)


class ApiUnreachable(DocSiftError):
    """The API could not be reached at all (refused, DNS, timeout)."""

    def __init__(self, base_url: str, detail: str) -> None:
        super().__init__(f"Cannot reach the API at {base_url} ({detail})")
        self.base_url = base_url


class ApiError(DocSiftError):
    """The API answered with an error body: `{"success": false, "error", "message"}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def user_message(self) -> str:
        title = FRIENDLY_TITLES.get(self.code, self.code.replace("_", " ").capitalize())
        return f"{title}. {self.message} (HTTP {self.status}, `{self.code}`)"


def _error_from(response: httpx.Response) -> ApiError:
    """Read the contract's error body, or make one up from a non-contract reply."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return ApiError(response.status_code, str(body["error"]), str(body.get("message", "")))
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, f"http_{response.status_code}", text)


def _evaluation_body(
    items: list[EvaluationItem],
    classifier_id: str | None,
    schema: list[SchemaItem] | None,
    query_model: str | None,
    input_mode: str | None,
) -> JSON:
    """What an evaluation run is, for starting it and for pricing it alike."""
    return _drop_none(
        classifier_id=classifier_id,
        classification_schema=schema,
        query_model=query_model,
        input_mode=input_mode,
        items=items,
    )


def _drop_none(**fields: Any) -> JSON:
    """Only the fields that were given, so the server's defaults apply to the rest."""
    return {name: value for name, value in fields.items() if value is not None}


def guess_content_type(filename: str) -> str:
    """A MIME type for an upload; the server sniffs the bytes anyway."""
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


class DocSiftClient:
    """Typed helpers over the v1 endpoints; every failure raises a DocSiftError."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": api_key},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ApiUnreachable or ApiError instead of returning an error."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, type(exc).__name__) from exc
        if response.is_error:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode the JSON reply."""
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "bad_response", "the reply was not JSON") from exc

    @staticmethod
    def _page(limit: int, offset: int, **filters: Any) -> JSON:
        """Query parameters for a paginated list."""
        return _drop_none(limit=limit, offset=offset, **filters)

    # Service
    def health(self) -> JSON:
        """GET /healthz."""
        return self._json("GET", "/healthz")

    def models(self) -> JSON:
        """GET /v1/models: the models this server offers and its default."""
        return self._json("GET", "/v1/models")

    def limits(self) -> JSON:
        """GET /v1/limits: the upload and page limits the server enforces."""
        return self._json("GET", "/v1/limits")

    # Account
    def account(self) -> JSON:
        """GET /v1/account: balance, reserved credits and usage."""
        return self._json("GET", "/v1/account")

    def ledger(self, limit: int = 50, offset: int = 0) -> JSON:
        """GET /v1/account/ledger: one page of credit movements."""
        return self._json("GET", "/v1/account/ledger", params=self._page(limit, offset))

    def keys(self) -> JSON:
        """GET /v1/account/keys."""
        return self._json("GET", "/v1/account/keys")

    def create_key(
        self,
        name: str,
        scopes: list[str] | None = None,
        classifier_ids: list[str] | None = None,
        expires_at: str | None = None,
    ) -> JSON:
        """POST /v1/account/keys: the reply holds the key itself, shown only this once.

        Options left None are not sent (the server's defaults: the caller's scopes, every
        classifier, no expiry)."""
        body: dict[str, Any] = {"name": name}
        for field, value in (
            ("scopes", scopes),
            ("classifier_ids", classifier_ids),
            ("expires_at", expires_at),
        ):
            if value is not None:
                body[field] = value
        return self._json("POST", "/v1/account/keys", json=body)

    def revoke_key(self, key_id: str) -> JSON:
        """DELETE /v1/account/keys/{key_id}."""
        return self._json("DELETE", f"/v1/account/keys/{key_id}")

    # Documents
    def upload_document(
        self, filename: str, content: bytes, content_type: str | None = None
    ) -> JSON:
        """Upload one file; a zip answers `{"documents": [...]}`, anything else one document."""
        mime = content_type or guess_content_type(filename)
        return self._json("POST", "/v1/documents", files={"file": (filename, content, mime)})

    def list_documents(
        self, limit: int = 50, offset: int = 0, q: str | None = None, status: str | None = None
    ) -> JSON:
        """GET /v1/documents: newest first; `q` searches file names."""
        params = self._page(limit, offset, q=q or None, status=status)
        return self._json("GET", "/v1/documents", params=params)

    def page_text(self, document_id: str, page: int) -> JSON:
        """GET /v1/documents/{id}/pages/{n}: one page's extracted text."""
        return self._json("GET", f"/v1/documents/{document_id}/pages/{page}")

    def create_segments(self, document_id: str, segments: list[str]) -> JSON:
        """POST /v1/documents/{id}/segments: one new document per page range, nothing charged."""
        body = {"segments": [{"pages": pages} for pages in segments]}
        return self._json("POST", f"/v1/documents/{document_id}/segments", json=body)

    # Splitting
    def split(
        self,
        document_id: str,
        *,
        classifier_id: str | None = None,
        schema: list[SchemaItem] | None = None,
        query_model: str | None = None,
        page_range: str | None = None,
    ) -> JSON:
        """POST /v1/split: the documents inside one file, each with its label (charged)."""
        body = _drop_none(
            document_id=document_id,
            classifier_id=classifier_id,
            classification_schema=None if classifier_id else schema,
            query_model=query_model,
            page_range=page_range,
        )
        return self._json("POST", "/v1/split", json=body)

    # Batches
    def create_batch(
        self,
        document_ids: list[str],
        *,
        classifier_id: str | None = None,
        schema: list[SchemaItem] | None = None,
        query_model: str | None = None,
        page_range: str | None = None,
    ) -> JSON:
        """POST /v1/batches: classify uploaded documents on the queue."""
        body = _drop_none(
            document_ids=document_ids,
            classifier_id=classifier_id,
            classification_schema=None if classifier_id else schema,
            query_model=query_model,
            page_range=page_range,
        )
        return self._json("POST", "/v1/batches", json=body)

    def upload_batch(self, filename: str, content: bytes, options: JSON) -> JSON:
        """POST /v1/batch-uploads: a zip (or one file) classified as one batch."""
        files = {"file": (filename, content, guess_content_type(filename))}
        data = {"batch": json.dumps(_drop_none(**options))}
        return self._json("POST", "/v1/batch-uploads", files=files, data=data)

    def list_batches(self, limit: int = 50, offset: int = 0) -> JSON:
        """GET /v1/batches."""
        return self._json("GET", "/v1/batches", params=self._page(limit, offset))

    def batch(self, batch_id: str) -> JSON:
        """GET /v1/batches/{id}: progress and every item with its result."""
        return self._json("GET", f"/v1/batches/{batch_id}")

    # Webhooks
    def webhook_config(self) -> JSON:
        """GET /v1/webhooks: URL and signing secret."""
        return self._json("GET", "/v1/webhooks")

    def set_webhook_url(self, url: str | None) -> JSON:
        """PUT /v1/webhooks: set or (None) clear the URL."""
        return self._json("PUT", "/v1/webhooks", json={"url": url})

    def rotate_webhook_secret(self) -> JSON:
        """POST /v1/webhooks/secret."""
        return self._json("POST", "/v1/webhooks/secret")

    def deliveries(self, limit: int = 20, offset: int = 0, status: str | None = None) -> JSON:
        """GET /v1/webhooks/deliveries: newest first, with every attempt."""
        params = self._page(limit, offset, status=status)
        return self._json("GET", "/v1/webhooks/deliveries", params=params)

    def retry_delivery(self, delivery_id: str) -> JSON:
        """POST /v1/webhooks/deliveries/{id}/retry (failed deliveries only)."""
        return self._json("POST", f"/v1/webhooks/deliveries/{delivery_id}/retry")

    def document(self, document_id: str) -> JSON:
        """GET /v1/documents/{id}: metadata and per-page info."""
        return self._json("GET", f"/v1/documents/{document_id}")

    def page_image(self, document_id: str, page: int, dpi: int = 72) -> bytes:
        """GET /v1/documents/{id}/pages/{n}/image: a PNG preview."""
        path = f"/v1/documents/{document_id}/pages/{page}/image"
        return self._request("GET", path, params={"dpi": dpi}).content

    def delete_document(self, document_id: str) -> JSON:
        """DELETE /v1/documents/{id}."""
        return self._json("DELETE", f"/v1/documents/{document_id}")

    # Classification
    def classify(
        self,
        document_id: str,
        schema: list[SchemaItem],
        *,
        page_range: str | None = None,
        query_model: str | None = None,
        instructions: str | None = None,
        input_mode: str | None = None,
    ) -> JSON:
        """POST /v1/classify with an inline schema."""
        body = _drop_none(
            document_id=document_id,
            classification_schema=schema,
            page_range=page_range,
            query_model=query_model,
            instructions=instructions,
            input_mode=input_mode,
        )
        return self._json("POST", "/v1/classify", json=body)

    def classifications(self, limit: int = 20, offset: int = 0, **filters: str | None) -> JSON:
        """GET /v1/classifications: past results, newest first, optionally filtered."""
        return self._json("GET", "/v1/classifications", params=self._page(limit, offset, **filters))

    def classification(self, request_id: str) -> JSON:
        """GET /v1/classifications/{request_id}."""
        return self._json("GET", f"/v1/classifications/{request_id}")

    # Classifiers
    def list_classifiers(self, limit: int = 200, offset: int = 0) -> JSON:
        """GET /v1/classifiers."""
        return self._json("GET", "/v1/classifiers", params=self._page(limit, offset))

    def classifier(self, classifier_id: str) -> JSON:
        """GET /v1/classifiers/{id}: the classifier with its versions."""
        return self._json("GET", f"/v1/classifiers/{classifier_id}")

    def create_classifier(
        self,
        name: str,
        schema: list[SchemaItem],
        *,
        description: str | None = None,
        query_model: str | None = None,
        page_range: str | None = None,
        instructions: str | None = None,
    ) -> JSON:
        """POST /v1/classifiers: version 1 of a new classifier."""
        body = _drop_none(
            name=name,
            description=description,
            classification_schema=schema,
            query_model=query_model,
            page_range=page_range,
            instructions=instructions,
        )
        return self._json("POST", "/v1/classifiers", json=body)

    def update_classifier(self, classifier_id: str, changes: JSON) -> JSON:
        """PATCH only the fields that changed; the server makes a new version when needed."""
        return self._json("PATCH", f"/v1/classifiers/{classifier_id}", json=changes)

    def delete_classifier(self, classifier_id: str) -> JSON:
        """DELETE /v1/classifiers/{id}."""
        return self._json("DELETE", f"/v1/classifiers/{classifier_id}")

    def run_classifier(
        self,
        classifier_id: str,
        document_id: str,
        *,
        page_range: str | None = None,
        query_model: str | None = None,
        version: int | None = None,
        input_mode: str | None = None,
    ) -> JSON:
        """POST /v1/classifiers/{id}/run: classify with a saved classifier."""
        body = _drop_none(
            document_id=document_id,
            page_range=page_range,
            query_model=query_model,
            version=version,
            input_mode=input_mode,
        )
        return self._json("POST", f"/v1/classifiers/{classifier_id}/run", json=body)

    def add_example(self, classifier_id: str, document_id: str, label: str) -> JSON:
        """POST /v1/classifiers/{id}/examples: label a document as an example."""
        body = {"document_id": document_id, "label": label}
        return self._json("POST", f"/v1/classifiers/{classifier_id}/examples", json=body)

    def examples(self, classifier_id: str, limit: int = 200, offset: int = 0) -> JSON:
        """GET /v1/classifiers/{id}/examples: the examples and the accuracy estimate."""
        path = f"/v1/classifiers/{classifier_id}/examples"
        return self._json("GET", path, params=self._page(limit, offset))

    def delete_example(self, classifier_id: str, example_id: str) -> bool:
        """True once deleted (the reply body, if any, carries nothing more)."""
        self._request("DELETE", f"/v1/classifiers/{classifier_id}/examples/{example_id}")
        return True

    # Evaluations
    def create_evaluation(
        self,
        items: list[EvaluationItem],
        *,
        name: str | None = None,
        classifier_id: str | None = None,
        schema: list[SchemaItem] | None = None,
        query_model: str | None = None,
        input_mode: str | None = None,
    ) -> JSON:
        """POST /v1/evaluations: start a run in the background."""
        body = _evaluation_body(items, classifier_id, schema, query_model, input_mode)
        return self._json("POST", "/v1/evaluations", json=_drop_none(name=name) | body)

    def estimate_evaluation(
        self,
        items: list[EvaluationItem],
        *,
        classifier_id: str | None = None,
        schema: list[SchemaItem] | None = None,
        query_model: str | None = None,
        input_mode: str | None = None,
    ) -> JSON:
        """POST /v1/evaluations/estimate: what the same run would cost; starts nothing."""
        body = _evaluation_body(items, classifier_id, schema, query_model, input_mode)
        return self._json("POST", "/v1/evaluations/estimate", json=body)

    def list_evaluations(self, limit: int = 50, offset: int = 0) -> JSON:
        """GET /v1/evaluations."""
        return self._json("GET", "/v1/evaluations", params=self._page(limit, offset))

    def evaluation(self, evaluation_id: str) -> JSON:
        """GET /v1/evaluations/{id}: progress, then metrics and items."""
        return self._json("GET", f"/v1/evaluations/{evaluation_id}")

    # Human review
    def reviews(
        self,
        status: str = "pending",
        limit: int = 20,
        offset: int = 0,
        classifier_id: str | None = None,
        label: str | None = None,
    ) -> JSON:
        """GET /v1/reviews: results by review status, oldest first, and the pending count."""
        params = self._page(limit, offset, status=status, classifier_id=classifier_id, label=label)
        return self._json("GET", "/v1/reviews", params=params)

    def review(self, request_id: str, label: str, segment: int | None = None) -> JSON:
        """POST /v1/reviews/{request_id}: confirm or correct a result."""
        body = _drop_none(label=label, segment=segment)
        return self._json("POST", f"/v1/reviews/{request_id}", json=body)


def documents_of(upload_reply: JSON) -> list[JSON]:
    """The documents an upload made: one for a file, several for a zip."""
    if "documents" in upload_reply:
        return list(upload_reply["documents"])
    return [upload_reply]
