"""The loop's default executor: LiteLLM's per-call preparation runs in the loop's thread (no
thread hop, no wait for the GIL behind a burst), every other job still in a worker thread."""

import asyncio
import threading

import pytest

from backend.backends.llm import client
from tests.fake_openai import FakeOpenAI


def where_it_ran() -> int:
    return threading.get_ident()


async def test_jobs_run_in_threads_unless_the_call_asks_for_one_inline():
    client.install_loop_executor()
    loop, here = asyncio.get_running_loop(), threading.get_ident()
    assert await loop.run_in_executor(None, where_it_ran) != here
    assert await asyncio.to_thread(where_it_ran) != here

    token = client._PREPARE_INLINE.set(True)
    try:
        first = await loop.run_in_executor(None, where_it_ran)
        second = await loop.run_in_executor(None, where_it_ran)
    finally:
        client._PREPARE_INLINE.reset(token)
    assert first == here  # the one job the flag was set for
    assert second != here  # anything else the call starts goes to a thread
    assert client._PREPARE_INLINE.get() is False


async def test_an_inline_job_raises_to_its_caller():
    client.install_loop_executor()

    def broken() -> None:
        raise ValueError("no")

    token = client._PREPARE_INLINE.set(True)
    try:
        with pytest.raises(ValueError, match="no"):
            await asyncio.get_running_loop().run_in_executor(None, broken)
    finally:
        client._PREPARE_INLINE.reset(token)


@pytest.mark.parametrize(
    ("model", "inline"),
    [
        ("gpt-4o-mini", True),
        ("openai/my-vllm", True),
        ("hosted_vllm/qwen", True),
        ("azure/gpt-4o", False),  # may fetch an Entra ID token
        ("bedrock/claude", False),  # may refresh AWS credentials
        ("vertex_ai/gemini", False),
    ],
)
def test_only_providers_without_blocking_preparation_run_inline(model, inline):
    assert client._inline_preparation(model) is inline


async def test_a_real_litellm_call_is_prepared_in_the_loop_thread(monkeypatch):
    """Through LiteLLM against an OpenAI-compatible server: its executor job (the call's
    preparation) runs where the event loop runs, and the answer is read as before."""
    client.install_loop_executor()
    here, seen = threading.get_ident(), []
    submit = client.LoopExecutor.submit

    def spying(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        def run():  # noqa: ANN202
            seen.append(threading.get_ident())
            return fn(*args, **kwargs)

        return submit(self, run)

    monkeypatch.setattr(client.LoopExecutor, "submit", spying)
    server = FakeOpenAI().start()
    try:
        options = client.CallOptions(model="openai/fake", api_base=server.base_url, api_key="k")
        answer = await client.complete(
            options, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=5
        )
    finally:
        server.stop()
    assert answer.text == "A"
    assert seen and seen[0] == here
