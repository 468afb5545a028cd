"""Streamlit glue shared by every page: the sidebar, the cached client, error display, flashes."""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import pandas as pd
import streamlit as st

from frontend.api_client import JSON, ApiError, DocSiftClient, DocSiftError

T = TypeVar("T")

DEFAULT_API_URL = "http://127.0.0.1:8000"
SIDEBAR_URL = "sidebar_api_url"
SIDEBAR_KEY = "sidebar_api_key"
FLASH_KEY = "ui_flash"

FlashKind = Literal["success", "info", "warning", "error"]


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_client(base_url: str, api_key: str) -> DocSiftClient:
    """One HTTP client (and connection pool) per URL and key, shared by all sessions."""
    return DocSiftClient(base_url, api_key)


def render_sidebar() -> None:
    """API URL and key inputs; defaults come from DOCSIFT_API_URL and DOCSIFT_API_KEY."""
    with st.sidebar:
        st.text_input(
            "API URL",
            value=os.environ.get("DOCSIFT_API_URL", DEFAULT_API_URL),
            key=SIDEBAR_URL,
        )
        st.text_input(
            "API key",
            value=os.environ.get("DOCSIFT_API_KEY", ""),
            type="password",
            key=SIDEBAR_KEY,
            help="Sent as `x-api-key`. Create one with `docsift accounts create`.",
        )


def current_client() -> DocSiftClient | None:
    """The client for the sidebar's URL and key, or None while either is blank."""
    url = str(st.session_state.get(SIDEBAR_URL, "")).strip()
    key = str(st.session_state.get(SIDEBAR_KEY, "")).strip()
    if not url or not key:
        return None
    return cached_client(url, key)


def require_client() -> DocSiftClient:
    """The client, or stop the page with a hint when no URL or key is set."""
    client = current_client()
    if client is None:
        st.info("Enter the API URL and an API key in the sidebar to start.")
        st.stop()
    return client


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run an API call; show a readable error (never a traceback) and return None if it fails."""
    try:
        return fn(*args, **kwargs)
    except DocSiftError as exc:
        st.error(exc.user_message())
        return None


def call_or_stop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like call(), but stop the page when the data it needs cannot be loaded."""
    result = call(fn, *args, **kwargs)
    if result is None:
        st.stop()
    return result


def optional_items(fn: Callable[[], JSON], what: str) -> list[JSON]:
    """A list a page can do without: empty when the server lacks the route (an older API).

    Any other failure (bad key, server down) stops the page after showing why.
    """
    try:
        return list(fn().get("items", []))
    except ApiError as exc:
        if exc.status == 404:
            st.caption(f"This API server offers no {what}.")
            return []
        st.error(exc.user_message())
    except DocSiftError as exc:
        st.error(exc.user_message())
    st.stop()


def flash(message: str, kind: FlashKind = "success") -> None:
    """Keep a message to show after the next st.rerun()."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def show_flashes() -> None:
    """Show and forget the messages kept by flash()."""
    for kind, message in st.session_state.pop(FLASH_KEY, []):
        getattr(st, kind)(message)


def fmt_pct(value: float | None) -> str:
    """0.931 as 93.1%."""
    return "-" if value is None else f"{value:.1%}"


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number with fixed decimals."""
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    """Seconds with two decimals."""
    return "-" if value is None else f"{value:.2f} s"


def model_choices(client: DocSiftClient) -> tuple[list[str], str | None]:
    """Model names from GET /v1/models and the server's default (empty list if unavailable)."""
    reply = call(client.models)
    if reply is None:
        return [], None
    # A model the server cannot use (e.g. no OPENAI_API_KEY) is not offered: it could only fail.
    names = [str(m["name"]) for m in reply.get("models", []) if m.get("available", True)]
    return names, reply.get("default_model")


TIME_COLUMNS = {
    "added",
    "created",
    "updated",
    "when",
    "delivered",
    "started",
    "finished",
    "uploaded",
}


def fmt_time(value: Any) -> str | None:
    """An API timestamp ("2026-11-23T10:00:00.123456Z") as "2026-11-23 10:00:00" UTC, no microseconds."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a frame whose time columns (`*_at`, created, when...) read to the second."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in frame.columns:
        if str(column).endswith("_at") or str(column) in TIME_COLUMNS:
            frame[column] = frame[column].map(fmt_time)
    return frame


@st.cache_data(show_spinner=False, ttl=300, max_entries=16)
def _server_limits(_client: DocSiftClient, base_url: str, api_key: str) -> JSON | None:
    try:
        return _client.limits()
    except DocSiftError:
        return None  # an older server: Streamlit's own limit applies


def upload_limit_bytes(client: DocSiftClient) -> int | None:
    """The server's upload limit in bytes (GET /v1/limits), or None when it does not say."""
    limits = _server_limits(client, client.base_url, client.api_key)
    return int(limits["max_upload_bytes"]) if limits else None


def upload_limit_mb(client: DocSiftClient) -> int | None:
    """The server's limit as the whole megabytes st.file_uploader's max_upload_size takes."""
    limit = upload_limit_bytes(client)
    return max(1, math.floor(limit / 2**20)) if limit else None


def upload_within_limit(client: DocSiftClient, label: str, *, types: list[str], key: str) -> Any:
    """One file picker capped at the server's upload limit: the file, or None (none picked, or
    too large: then a message says so)."""
    upload = st.file_uploader(label, type=types, key=key, max_upload_size=upload_limit_mb(client))
    if upload is not None and not refuse_too_large(client, [upload]):
        return None
    return upload


def refuse_too_large(client: DocSiftClient, files: Iterable[Any]) -> list[Any]:
    """The files within the server's limit; the others get a message and are left out."""
    limit = upload_limit_bytes(client)
    kept = []
    for upload in files:
        if limit is not None and upload.size > limit:
            st.error(
                f"{upload.name} is {upload.size / 2**20:.1f} MB: the server accepts at most "
                f"{limit / 2**20:g} MB per file."
            )
        else:
            kept.append(upload)
    return kept


THUMB_DPI = 24  # a Letter page becomes 204x264 pixels: enough to recognise a document


@st.cache_data(show_spinner=False, max_entries=512)
def page_png(
    _client: DocSiftClient, base_url: str, api_key: str, document_id: str, page: int, dpi: int = 72
) -> bytes:
    """A page preview; URL and key are part of the cache key so accounts never share images."""
    return _client.page_image(document_id, page, dpi=dpi)


def page_image(client: DocSiftClient, document_id: str, page: int = 1, dpi: int = 72) -> bytes:
    """A cached page preview (raises DocSiftError)."""
    return page_png(client, client.base_url, client.api_key, document_id, page, dpi)


def thumbnail_uri(client: DocSiftClient, document_id: str | None, page: int = 1) -> str | None:
    """A data: URI of a small preview for st.column_config.ImageColumn, or None if there is none
    (deleted, not processed, or no pages)."""
    if not document_id:
        return None
    try:
        png = page_image(client, document_id, page, THUMB_DPI)
    except DocSiftError:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode()


THUMB_COLUMN = st.column_config.ImageColumn("preview", width="small")
