"""Turn every failure into the contract's error body: ours, FastAPI's and the unexpected."""

import logging
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import ApiError, ErrorBody

log = logging.getLogger("docsift.errors")

_HTTP_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_file",
    429: "rate_limited",
}


def _body(code: str, message: str) -> dict:
    return ErrorBody(error=code, message=message).model_dump()


_SOURCES = {"body", "query", "path", "header", "cookie"}


def _field_name(loc: tuple) -> str:
    """`items[0].document_id` from pydantic's ("body", "items", 0, "document_id")."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part not in _SOURCES or name:
            name += f".{part}" if name else str(part)
    return name


def describe_error(error: Mapping[str, Any], loc: tuple | None = None) -> str:
    """One validation problem in words that name the field, never a regex or a parser's text."""
    kind = error.get("type", "")
    field = _field_name(tuple(error.get("loc", ())) if loc is None else loc)
    if kind == "json_invalid":
        return f"{field} is not valid JSON." if field else "The request body is not valid JSON."
    if kind == "missing":
        return f"{field} is required." if field else "A required value is missing."
    if kind == "string_pattern_mismatch":
        return f"{field} has an invalid format: {str(error.get('input'))[:100]!r}."
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def _describe_validation(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return describe_error({"type": "json_invalid"}, loc=())
    return "; ".join(describe_error(e) for e in errors[:5]) or "Invalid request."


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the API documents for this path (Starlette names only the first route's)."""
    paths = app.openapi().get("paths", {})
    if path in paths:  # a fixed path (/v1/evaluations/estimate) is not also /{evaluation_id}
        return sorted(m.upper() for m in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods.update(m.upper() for m in operations)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_body("invalid_request", _describe_validation(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(
            exc.status_code, "internal_error" if exc.status_code >= 500 else "invalid_request"
        )
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(_request.app, _request.url.path))
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=headers)

    # The database refusing a connection (PostgreSQL's max_connections, a restart) or a pool
    # with no connection free in time is a capacity problem the client can retry, not a 500.
    @app.exception_handler(OperationalError)
    @app.exception_handler(sqlite3.OperationalError)  # the SQLite fast path's own driver
    @app.exception_handler(psycopg.OperationalError)  # the PostgreSQL one's (its PoolTimeout too)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            _body(
                "service_unavailable",
                "The database is unavailable or at its connection limit; retry shortly.",
            ),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            _body("internal_error", "An internal error occurred; it has been logged."),
            status_code=500,
        )
