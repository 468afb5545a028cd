"""LiteLLM's success logging for a call made inside `deferred_logging()` runs after the block,
not during it (so not during the charge that follows the call), and is never dropped."""

import asyncio

import pytest

from backend.backends.llm import client
from tests.fake_openai import FakeOpenAI

MODEL = "deferred-logging-test"


@pytest.fixture
async def logged(monkeypatch):
    """The model names LiteLLM's success callbacks saw, through a callback of LiteLLM's own.

    LiteLLM's logging worker outlives a test's event loop and carries what is pending onto the
    next one: only this module's model counts, and the worker is stopped on this test's loop
    (where its calls started it) at the end."""
    lib = client.litellm()
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    seen: list[str] = []

    class Recorder(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
            if kwargs.get("model") == MODEL:
                seen.append(MODEL)

    # Copies of LiteLLM's callback lists (it files `callbacks` into the others on each call),
    # given back after the test, so no recorder outlives its test.
    for name in ("callbacks", "success_callback", "_async_success_callback"):
        monkeypatch.setattr(lib, name, list(getattr(lib, name)))
    lib.callbacks.append(Recorder())
    yield seen
    await GLOBAL_LOGGING_WORKER.stop(discard_pending=True)


async def _call(server: FakeOpenAI) -> client.Completion:
    options = client.CallOptions(model=f"openai/{MODEL}", api_base=server.base_url, api_key="k")
    return await client.complete(
        options, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=5
    )


async def _settle(seen: list[str], count: int) -> None:
    for _ in range(200):  # LiteLLM's worker runs the handler a few loop turns later
        if len(seen) >= count:
            return
        await asyncio.sleep(0.01)


async def test_logging_waits_for_the_block_then_runs(logged):
    server = FakeOpenAI().start()
    try:
        with client.deferred_logging():
            answer = await _call(server)
            await asyncio.sleep(0.3)  # what would be the charge: LiteLLM's handler stays parked
            assert logged == []
        await _settle(logged, 1)
    finally:
        server.stop()
    assert answer.text == "A"
    assert logged == [MODEL]


async def test_outside_the_block_logging_runs_as_litellm_runs_it(logged):
    server = FakeOpenAI().start()
    try:
        await _call(server)
        await _settle(logged, 1)
    finally:
        server.stop()
    assert logged == [MODEL]


async def test_a_handler_that_starts_after_the_block_is_not_parked(logged):
    """The block ended before LiteLLM's logging task got to run (nothing awaited in between):
    the handler goes straight to LiteLLM's worker instead of into the closed block."""
    server = FakeOpenAI().start()
    try:
        with client.deferred_logging():
            await _call(server)
        await _settle(logged, 1)
    finally:
        server.stop()
    assert logged == [MODEL]
