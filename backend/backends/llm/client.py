"""The only module that imports LiteLLM: one async chat call for one next-token answer.

LiteLLM is imported on first use (it takes seconds), so the service starts fast. Retries are
ours (tenacity), not LiteLLM's or the OpenAI SDK's: rate limits, 5xx, timeouts, connection
errors and junk answers are retried with exponential backoff, honouring `Retry-After`, all within
a total deadline; then the caller gets a ModelError (502).
"""

import asyncio
import importlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from backend.errors import ModelError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0


@dataclass
class Completion:
    """What one call returned that DocSift uses."""

    text: str
    top_logprobs: list[tuple[str, float]] | None  # alternatives for the first answer token
    samples: list[str] = field(default_factory=list)  # n > 1 (fallback sampling)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class JunkAnswer(Exception):
    """The model answered, but not with anything DocSift can read."""


_litellm: Any = None


def litellm() -> Any:
    global _litellm
    if _litellm is None:
        module = importlib.import_module("litellm")
        module.disable_aiohttp_transport = True  # httpx transport: respx-visible, one client stack
        module.suppress_debug_info = True
        module.telemetry = False
        _litellm = module
    return _litellm


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (JunkAnswer, asyncio.TimeoutError)):
        return True
    lib = litellm()
    retry_types = (
        lib.RateLimitError,
        lib.InternalServerError,
        lib.ServiceUnavailableError,
        lib.Timeout,
        lib.APIConnectionError,
        lib.BadGatewayError,
    )
    if isinstance(error, retry_types):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def _retry_after(error: BaseException | None) -> float | None:
    """Seconds the provider asked us to wait, from whichever place LiteLLM kept its headers."""
    value = None
    for headers in (
        getattr(error, "litellm_response_headers", None),
        getattr(error, "headers", None),
        getattr(getattr(error, "response", None), "headers", None),
    ):
        if headers:
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is not None:
                break
    try:
        return min(float(value), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


def _wait(base: float) -> Any:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = _retry_after(error)
        if hinted is not None:
            return hinted
        return base * (2 ** (state.attempt_number - 1)) * (0.5 + random.random())  # noqa: S311

    return wait


def _parse(response: Any) -> Completion:
    try:
        choices = response.choices
        first = choices[0]
        text = first.message.content or ""
        top = None
        logprobs = getattr(first, "logprobs", None)
        content = getattr(logprobs, "content", None) if logprobs is not None else None
        if content:
            top = [(alt.token, float(alt.logprob)) for alt in content[0].top_logprobs or []]
            if not top:
                top = [(content[0].token, float(content[0].logprob))]
        samples = [c.message.content or "" for c in choices]
        usage = getattr(response, "usage", None)
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise JunkAnswer(f"unreadable completion: {error}") from None
    cost = None
    try:
        cost = float(litellm().completion_cost(completion_response=response))
    except Exception:  # unknown models have no price: cost stays None
        cost = None
    return Completion(
        text=text,
        top_logprobs=top,
        samples=samples,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
    )


@dataclass(frozen=True)
class CallOptions:
    model: str  # a LiteLLM model string, e.g. "gpt-4o-mini" or "openai/gemma3"
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 30.0
    max_retries: int = 3
    backoff: float = 0.5
    deadline: float = 60.0


async def complete(
    options: CallOptions,
    messages: list[dict[str, str]],
    *,
    logprobs: bool,
    top_logprobs: int,
    max_tokens: int = 1,
    n: int = 1,
    temperature: float = 0.0,
    check: Any = None,
) -> Completion:
    """One answer (or n samples), retried as the module docstring says; `check` may raise
    JunkAnswer to have an unreadable answer retried."""
    params: dict[str, Any] = {
        "model": options.model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": options.timeout,
        "max_retries": 0,
        "num_retries": 0,
    }
    if logprobs:
        params.update(logprobs=True, top_logprobs=top_logprobs)
    if n > 1:
        params["n"] = n
    if options.api_base:
        params["api_base"] = options.api_base
    if options.api_key:
        params["api_key"] = options.api_key
    started = time.monotonic()
    last_error: BaseException | None = None

    async def attempt() -> Completion:
        remaining = options.deadline - (time.monotonic() - started)
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(min(remaining, options.timeout + 1)):
            response = await litellm().acompletion(**params)
        completion = _parse(response)
        if check is not None:
            check(completion)
        return completion

    try:
        async for try_ in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(options.max_retries + 1) | stop_after_delay(options.deadline),
            wait=_wait(options.backoff),
            reraise=True,
            before_sleep=lambda s: log.warning(
                "model call failed (attempt %d): %s", s.attempt_number, s.outcome.exception()
            ),
        ):
            with try_:
                if time.monotonic() - started > options.deadline:
                    raise TimeoutError
                return await attempt()
    except Exception as error:  # every provider failure ends as the contract's model_error
        last_error = error
    raise ModelError(_describe(last_error, options)) from last_error


def _describe(error: BaseException | None, options: CallOptions) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"Model '{options.model}' did not answer within the time limit."
    if isinstance(error, JunkAnswer):
        return f"Model '{options.model}' did not answer with a label code: {error}"
    name = type(error).__name__ if error else "error"
    message = str(error).splitlines()[0][:300] if error else ""
    return f"Model provider failed after retries ({name}): {message}"
