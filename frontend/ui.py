"""Streamlit glue shared by every page: the sidebar, the cached client, error display, flashes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, TypeVar

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
    names = [str(m["name"]) for m in reply.get("models", [])]
    return names, reply.get("default_model")
