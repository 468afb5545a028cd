"""Request ids, structured JSON logs and Prometheus metrics.

Every response carries `x-request-id` (the caller's, if it sent a sane one), and every log line
written while serving it carries the same id, so one request can be followed through the logs.
"""

import contextvars
import functools
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
# Seconds the current request has waited on models so far: one mutable cell per request, so
# model calls made in tasks the request spawns (which copy the context) still add to it.
model_seconds_var: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "model_seconds", default=None
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "docsift_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "docsift_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
MODEL_CALLS = Counter(
    "docsift_model_calls_total",
    "Classifications sent to a model",
    ["model", "outcome"],
    registry=REGISTRY,
)
MODEL_LATENCY = Histogram(
    "docsift_model_call_seconds", "Model call latency", ["model"], registry=REGISTRY
)
OVERHEAD = Histogram(
    "docsift_overhead_seconds",
    "DocSift's own time per request: from receiving it to starting the response, minus the time "
    "spent waiting on model calls",
    ["method", "route"],
    buckets=(0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=REGISTRY,
)
TOKENS = Counter("docsift_tokens_total", "Model tokens", ["model", "kind"], registry=REGISTRY)
CREDITS = Counter("docsift_credits_charged_total", "Credits charged", ["model"], registry=REGISTRY)


@functools.lru_cache(maxsize=4096)
def _series(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, kept: prometheus_client takes a lock and builds the key on each
    call, eight times a classification (label sets are few: routes, statuses, models)."""
    return metric.labels(*values)


def record_model_call(model: str, outcome: str, seconds: float) -> None:
    _series(MODEL_CALLS, model, outcome).inc()
    _series(MODEL_LATENCY, model).observe(seconds)
    if (waited := model_seconds_var.get()) is not None:
        waited[0] += seconds


def record_usage(model: str, *, prompt_tokens: int, completion_tokens: int, credits: int) -> None:
    _series(TOKENS, model, "prompt").inc(prompt_tokens)
    _series(TOKENS, model, "completion").inc(completion_tokens)
    _series(CREDITS, model).inc(credits)


class RequestContextMiddleware:
    """Assigns the request id, times the request, counts it (pure ASGI: no per-request task).

    Every response also says how long DocSift itself took, the time spent waiting on models
    left out: `x-docsift-overhead-ms` and `Server-Timing: docsift;dur=..., model;dur=...`
    (the same figure goes to the `docsift_overhead_seconds` histogram)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        waited = [0.0]
        waited_token = model_seconds_var.set(waited)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                model = waited[0]
                own = max(time.perf_counter() - started - model, 0.0)
                _series(OVERHEAD, scope.get("method", "GET"), _route_template(scope)).observe(own)
                timing = f"docsift;dur={own * 1000:.2f}"
                if model:
                    timing += f", model;dur={model * 1000:.2f}"
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-docsift-overhead-ms", f"{own * 1000:.2f}".encode()),
                    (b"server-timing", timing.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path = _route_template(scope)
            method = scope.get("method", "GET")
            _series(HTTP_REQUESTS, method, path, str(status)).inc()
            _series(HTTP_LATENCY, method, path).observe(elapsed)
            logging.getLogger("docsift.access").info(
                "%s %s %s",
                method,
                scope.get("path"),
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 1), "route": path},
            )
            model_seconds_var.reset(waited_token)
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    """The matched route's template ("/v1/documents/{document_id}"), so metrics stay low-cardinality."""
    # FastAPI >= 0.160 includes routers lazily and keeps the full template in its own context.
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path", None) or getattr(scope.get("route"), "path", None)
    return template or "unmatched"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    _EXTRA = (
        "status",
        "duration_ms",
        "route",
        "model",
        "account_id",
        "document_id",
        "documents",
        "files",
        "bytes",
    )

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key in self._EXTRA:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


# Libraries whose records go through DocSift's handler (and format), at these levels at most.
# Their own handlers (MCP installs a Rich one on the root logger, uvicorn its own) are removed.
THIRD_PARTY_LEVELS = {
    "alembic": logging.INFO,
    "procrastinate": logging.WARNING,  # INFO is a line per job (every 10 s for recovery)
    "mcp": logging.WARNING,
    "uvicorn": logging.INFO,
    "uvicorn.error": logging.INFO,
    "uvicorn.access": logging.WARNING,  # DocSift logs every request itself, with its id
    "httpx": logging.WARNING,
    # LiteLLM logs every call at INFO (~5% of a request's CPU); it is imported lazily, after
    # configure_logging, and installs its own plain-text handler then: adopt_library_loggers.
    "LiteLLM": logging.WARNING,
    "LiteLLM Router": logging.WARNING,
    "LiteLLM Proxy": logging.WARNING,
}


class _DocSiftHandler(logging.StreamHandler):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def _foreign(handler: logging.Handler) -> bool:
    """A console handler someone else installed (Rich, basicConfig, uvicorn), not a capture."""
    if isinstance(handler, _DocSiftHandler) or type(handler).__name__ == "RichHandler":
        return True
    stream = getattr(handler, "stream", None)
    return type(handler) is logging.StreamHandler and stream in (sys.stderr, sys.stdout)


def configure_logging(*, json_logs: bool, level: str) -> None:
    """One handler, on the root logger, for DocSift and every library: one format per line
    (JSON in production). DocSift logs at `level`; libraries at WARNING, or less if asked."""
    handler = _DocSiftHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    wanted = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not _foreign(h)] + [handler]
    root.setLevel(max(logging.WARNING, wanted))
    for name in ("docsift", "backend"):  # loggers named "docsift.*" or by module
        own = logging.getLogger(name)
        own.handlers.clear()
        own.setLevel(wanted)
        own.propagate = True
    _adopt(wanted)


def _adopt(wanted: int) -> None:
    for name, most in THIRD_PARTY_LEVELS.items():
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(max(most, wanted))


def adopt_library_loggers() -> None:
    """Hand libraries imported after configure_logging (LiteLLM installs a plain-text handler
    and stops propagation on import) back to the one root handler, so every line keeps the
    format. Without configure_logging (a script) the libraries keep their own handlers."""
    root = logging.getLogger()
    if any(isinstance(h, _DocSiftHandler) for h in root.handlers):
        _adopt(logging.getLogger("docsift").level or root.level)
