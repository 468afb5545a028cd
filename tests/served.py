"""Serve an ASGI app over real HTTP on 127.0.0.1 from a background thread, for the tests that
need a socket (the fake OpenAI server, webhook receivers, the CLI, the console, MCP clients)."""

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app: Any, *, port: int | None = None, **config: Any) -> Served:
    """Start `app` and return once it accepts connections (uvicorn.Config options in `config`)."""
    port = port or free_port()
    config.setdefault("log_level", "warning")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{type(app).__name__} on port {port} did not start")
        time.sleep(0.02)
    return Served(server, thread, port)
