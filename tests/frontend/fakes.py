"""API replies shaped as /tmp/api_shapes.md describes, for the console's mocked backend."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

BASE_URL = "http://docsift.test"
API_KEY = "dsk_test_console_key"
NOW = "2026-11-23T10:00:00Z"

SCHEMA = [
    {"label": "invoice", "description": "A request for payment"},
    {"label": "contract", "description": "A binding agreement"},
    {"label": "other", "description": "Anything else"},
]


def page(items: list[dict[str, Any]], total: int | None = None, **extra: Any) -> dict[str, Any]:
    """A paginated list body."""
    return {
        "items": items,
        "total": len(items) if total is None else total,
        "limit": 50,
        "offset": 0,
        **extra,
    }


def error(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": code, "message": message}


def models() -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "local",
                "backend": "local",
                "credits_per_page": 1,
                "confidence_method": "classifier",
                "trainable": True,
                "description": "Embedded model",
            },
            {
                "name": "gpt-4o-mini",
                "backend": "litellm",
                "credits_per_page": 1,
                "confidence_method": "logprobs",
                "trainable": False,
                "description": "OpenAI",
            },
        ],
        "default_model": "local",
    }


def classifier(
    classifier_id: str = "clf-1",
    name: str = "mailroom",
    version: int = 1,
    schema: list[dict[str, str]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "classifier_id": classifier_id,
        "name": name,
        "description": "Routes the mail",
        "version": version,
        "classification_schema": schema or SCHEMA,
        "query_model": None,
        "page_range": None,
        "instructions": None,
        "created_at": NOW,
        "updated_at": NOW,
        "num_examples": 0,
        **fields,
    }


def version(number: int, schema: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    return {
        "version": number,
        "classification_schema": schema,
        "query_model": None,
        "page_range": None,
        "instructions": None,
        "created_at": NOW,
        **fields,
    }


def document(document_id: str = "doc-1", filename: str = "invoice.pdf", **fields: Any) -> dict:
    return {
        "document_id": document_id,
        "filename": filename,
        "num_pages": 2,
        "status": "processed",
        "error": None,
        "created_at": NOW,
        "content_type": "application/pdf",
        "size_bytes": 1234,
        **fields,
    }


def classify_result(document_id: str = "doc-1", **fields: Any) -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "document_id": document_id,
        "classifier_id": None,
        "classification": "invoice",
        "confidence_scores": {"invoice": 0.8125, "contract": 0.125, "other": 0.0625},
        "request_status": "completed",
        "credits_used": 2,
        "num_pages": 2,
        "duration": 1.25,
        "model": "local",
        "classifier_version": None,
        "confidence_method": "classifier",
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "pages_used": [1, 2],
        "created_at": NOW,
        **fields,
    }


def account(**fields: Any) -> dict[str, Any]:
    return {
        "account_id": "acct-1",
        "name": "demo",
        "balance": 987,
        "reserved": 4,
        "available": 983,
        "usage": {
            "total_credits": 13,
            "total_classifications": 7,
            "total_pages": 13,
            "by_model": [
                {"model": "local", "credits": 9, "classifications": 5, "pages": 9},
                {"model": "gpt-4o-mini", "credits": 4, "classifications": 2, "pages": 4},
            ],
            "by_day": [
                {"day": "2026-11-22", "credits": 5, "classifications": 3, "pages": 5},
                {"day": "2026-11-23", "credits": 8, "classifications": 4, "pages": 8},
            ],
        },
        **fields,
    }


def ledger_entry(number: int, amount: int = -1, kind: str = "debit") -> dict[str, Any]:
    return {
        "id": f"led-{number}",
        "amount": amount,
        "kind": kind,
        "request_id": f"req-{number}",
        "model": "local",
        "pages": 1,
        "note": None,
        "created_at": NOW,
    }


def api_key_row(key_id: str, name: str, revoked: bool = False) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "name": name,
        "display_prefix": f"dsk_{key_id}",
        "created_at": NOW,
        "last_used_at": None,
        "revoked_at": NOW if revoked else None,
    }


def metrics(accuracy: float, macro_f1: float, f1_invoice: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_label": {
            "invoice": {"precision": 1.0, "recall": 0.5, "f1": f1_invoice, "support": 2},
            "other": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
        },
        "confusion_matrix": {"labels": ["invoice", "other"], "matrix": [[1, 1], [0, 1]]},
        "ece": 0.12,
        "brier": 0.2,
        "reliability": [
            {"bin_lower": 0.5, "bin_upper": 0.6, "count": 1, "accuracy": 0.0, "confidence": 0.55},
            {"bin_lower": 0.9, "bin_upper": 1.0, "count": 2, "accuracy": 1.0, "confidence": 0.95},
        ],
        "coverage": [{"threshold": 0.5, "coverage": 1.0, "accuracy": accuracy}],
        "credits": 3,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_p50": 0.4,
        "latency_p95": 0.9,
    }


def evaluation(
    evaluation_id: str = "ev-1",
    status: str = "completed",
    done: int = 3,
    total: int = 3,
    run_metrics: dict[str, Any] | None = None,
    name: str = "baseline",
) -> dict[str, Any]:
    return {
        "evaluation_id": evaluation_id,
        "name": name,
        "status": status,
        "done": done,
        "total": total,
        "model": "local",
        "labels": ["invoice", "other"],
        "metrics": run_metrics,
        "items": [
            {
                "document_id": "doc-1",
                "expected_label": "invoice",
                "predicted_label": "invoice",
                "confidence_scores": {"invoice": 0.95, "other": 0.05},
                "status": "completed",
                "error": None,
                "duration": 0.4,
            }
        ],
    }


def evaluation_row(evaluation_id: str, name: str, accuracy: float | None, status: str) -> dict:
    return {
        "evaluation_id": evaluation_id,
        "name": name,
        "status": status,
        "done": 3,
        "total": 3,
        "model": "local",
        "classifier_id": None,
        "created_at": NOW,
        "accuracy": accuracy,
    }


def png_bytes() -> bytes:
    """A tiny real PNG (the page preview route serves image/png)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 10), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def calls_to(router: Any, method: str, path: str) -> list[Any]:
    """The requests the console sent to one endpoint of a respx router."""
    return [
        call.request
        for call in router.calls
        if call.request.method == method and call.request.url.path == path
    ]


def limits(max_upload_mb: int = 20) -> dict[str, Any]:
    return {
        "max_upload_bytes": max_upload_mb * 2**20,
        "max_pages": 500,
        "max_zip_entries": 200,
        "max_zip_uncompressed_bytes": 200 * 2**20,
    }


def webhook_config(url: str | None = None) -> dict[str, Any]:
    return {
        "url": url,
        "secret": "whsec_test" if url else None,
        "signature_header": "DocSift-Signature",
    }


def estimate(credits: int = 6, available: int = 983) -> dict[str, Any]:
    return {
        "credits_estimate": credits,
        "pages": credits,
        "model": "local",
        "input_mode": "text",
        "available": available,
        "enough": credits <= available,
    }
