"""Domain errors that carry their HTTP status and the contract's error code (SPEC §2 Errors)."""

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    success: bool = False
    error: str
    message: str


class ApiError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return ErrorBody(error=self.code, message=self.message).model_dump()


class InvalidRequest(ApiError):
    status_code = 400
    code = "invalid_request"


class DocumentNotProcessed(ApiError):
    status_code = 400
    code = "document_not_processed"


class UnsupportedFile(ApiError):
    status_code = 400
    code = "unsupported_file"


class InvalidApiKey(ApiError):
    status_code = 403
    code = "invalid_api_key"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class InsufficientCredits(ApiError):
    status_code = 402
    code = "insufficient_credits"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ModelError(ApiError):
    status_code = 502
    code = "model_error"


class InternalError(ApiError):
    status_code = 500
    code = "internal_error"


# Every status a route may answer with, for the OpenAPI schema (schemathesis checks it).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid request, unsupported file or document not processed",
        402: "Insufficient credits",
        403: "Missing, invalid or revoked API key",
        404: "Not found (also for another account's objects)",
        409: "Conflict",
        413: "Payload too large",
        422: "Validation error",
        429: "Rate limited",
        500: "Internal error",
        502: "Model provider failed",
    }.items()
}
