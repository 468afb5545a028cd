"""The only module that imports LiteLLM: one async chat call for one next-token answer.

LiteLLM is imported on first use (it takes seconds), so the service starts fast. Retries are
ours (tenacity), not LiteLLM's or the OpenAI SDK's: rate limits, 5xx, timeouts, connection
errors and junk answers are retried with exponential backoff and jitter, honouring `Retry-After`
(or OpenAI's `retry-after-ms`). Every attempt and every wait fits inside one deadline shared by
all the calls of a classification: a wait that would end past it is not taken. Then the caller
gets a ModelError (502). Client errors (400, 401, 404...) are not retried: asking again cannot
help.
"""

import asyncio
import contextlib
import contextvars
import importlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from backend import observability
from backend.errors import ModelError

log = logging.getLogger(__name__)

# A provider asking for a longer pause than this is treated as asking for this long.
MAX_RETRY_AFTER = 60.0

# tenacity sleeps through this, so tests can record the waits instead of timing them.
sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass
class Completion:
    """What one call returned that DocSift uses."""

    text: str
    top_logprobs: list[tuple[str, float]] | None  # alternatives for the first answer token
    samples: list[str] = field(default_factory=list)  # every choice's text (n > 1: sampling)
    # Every answer token with its top alternatives (structured answers read several tokens).
    tokens: list[tuple[str, list[tuple[str, float]]]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class JunkAnswer(Exception):
    """The model answered, but not with anything DocSift can read."""


class CredentialError(Exception):
    """The provider refused the credential (or none was configured): asking again cannot help."""


class DeadlineExceeded(TimeoutError):
    """The classification's total time limit ran out."""


_litellm: Any = None


# Imported lazily by LiteLLM's first call (seconds on a busy machine): loaded with it instead.
_FIRST_CALL_MODULES = ("openai.resources", "litellm.proxy._types")


def litellm() -> Any:
    """The litellm module, imported and configured on first use."""
    global _litellm
    if _litellm is None:
        module = importlib.import_module("litellm")
        # LiteLLM's default HTTP transport is aiohttp: with 200 calls in flight an httpx pool
        # spends most of its time scanning its connections (bench.server: 2-5x the throughput).
        # DISABLE_AIOHTTP_TRANSPORT=True selects httpx (what respx can intercept).
        module.suppress_debug_info = True
        module.telemetry = False
        # LiteLLM logs every call at INFO (through rich when installed): ~5% of a request's CPU.
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
        observability.adopt_library_loggers()  # its warnings in DocSift's format, not its own
        for name in _FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:  # another LiteLLM version: only the first call gets slower
                log.debug("could not preload %s", name)
        _park_success_logging()
        _litellm = module
    return _litellm


# LiteLLM logs each call's success in a task it starts as the call returns: its standard logging
# payload, cost bookkeeping and callbacks, ~0.3 ms of the event loop's time, which then ran
# during the charge's database round trip, before the answer (bench.overhead, PostgreSQL: the
# charge 1.2-1.3 -> 0.8-1.0 ms without it). Inside `deferred_logging()` that work is parked and
# handed to LiteLLM's logging worker as the block exits: LiteLLM's proxy defers its own logging
# past the response the same way (`defer_async_logging`). Nothing is dropped, only run later.
_PARKED: contextvars.ContextVar["_Parked | None"] = contextvars.ContextVar(
    "docsift_parked_logging", default=None
)
# LiteLLM's own enqueue, kept when `_park_success_logging` puts `park_or_enqueue` in its place.
_enqueue: Callable[[Any], None] | None = None


class _Parked(list):
    """Logging coroutines parked by one `deferred_logging` block, each with its context."""

    closed = False


def _park_success_logging() -> None:
    global _enqueue
    try:
        worker_module = importlib.import_module("litellm.litellm_core_utils.logging_worker")
    except ImportError:  # another LiteLLM version: its logging just runs when it always did
        return
    worker = getattr(worker_module, "GLOBAL_LOGGING_WORKER", None)
    enqueue = getattr(worker, "ensure_initialized_and_enqueue", None)
    if enqueue is None or _enqueue is not None:
        return

    def park_or_enqueue(async_coroutine: Any) -> None:
        parked = _PARKED.get()
        if parked is None or parked.closed:
            enqueue(async_coroutine)
        else:
            parked.append((contextvars.copy_context(), async_coroutine))

    _enqueue = enqueue
    worker.ensure_initialized_and_enqueue = park_or_enqueue


@contextlib.contextmanager
def deferred_logging() -> Iterator[None]:
    """LiteLLM's success and failure logging for the calls made inside the block, run after it
    (each in the context it was started in)."""
    parked = _Parked()
    token = _PARKED.set(parked)
    try:
        yield
    finally:
        _PARKED.reset(token)
        parked.closed = True  # a logging task that starts after this enqueues at once
        for context, coroutine in parked:  # parked only where `_enqueue` was kept
            context.run(_enqueue, coroutine)  # type: ignore[arg-type]


async def close() -> None:
    """Close LiteLLM's cached HTTP clients (aiohttp sessions) while the event loop still runs,
    and forget them: a later app in this process (tests, a restarted lifespan) builds new ones."""
    if _litellm is None:
        return
    if hasattr(_litellm, "close_litellm_async_clients"):
        await _litellm.close_litellm_async_clients()
    cache = getattr(_litellm, "in_memory_llm_clients_cache", None)
    if cache is not None and hasattr(cache, "flush_cache"):
        cache.flush_cache()


def is_credential_error(error: BaseException) -> bool:
    """401/403 from the provider, or the SDK refusing to call without a key (LiteLLM reports a
    missing OPENAI_API_KEY as a connection error, which would otherwise be retried)."""
    lib = litellm()
    if isinstance(error, (CredentialError, lib.AuthenticationError, lib.PermissionDeniedError)):
        return True
    text = str(error).lower()
    return "missing credentials" in text or "api_key client option must be set" in text


# LiteLLM's `acompletion` prepares each call with `loop.run_in_executor(None, completion)`: a
# thread hop for what is, with an OpenAI-compatible provider, ~1 ms of pure Python. Under load the
# hop is worse than its CPU: the worker thread waits for the GIL behind every request the event
# loop is running, so all of a burst's model calls go out only after the whole burst has been
# read (bench.overhead: the model's 1 s answer took 1.8 s at 200 clients). While this flag is set
# (only around the call, and only for the one job it prepares), the loop's default executor runs
# that job at once in the loop's thread; every other job still goes to a thread.
_PREPARE_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "docsift_prepare_inline", default=False
)
# Providers whose call preparation does no blocking I/O (static keys, no token refresh).
INLINE_PROVIDERS = frozenset({"openai", "hosted_vllm", "ollama", "ollama_chat", "llamafile"})


class LoopExecutor(ThreadPoolExecutor):
    """The event loop's default executor (`install_loop_executor`): a thread pool that runs one
    job inline when `_PREPARE_INLINE` asks for it."""

    def __init__(self) -> None:
        super().__init__(min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="docsift-loop")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if not _PREPARE_INLINE.get():
            return super().submit(fn, *args, **kwargs)
        _PREPARE_INLINE.set(False)  # one job: nothing else this call starts runs inline
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # delivered to the awaiting caller, as a thread would
            future.set_exception(error)
        return future


def install_loop_executor() -> None:
    """Make `LoopExecutor` the running loop's default executor (at start-up, in the lifespan)."""
    asyncio.get_running_loop().set_default_executor(LoopExecutor())


def _inline_preparation(model: str) -> bool:
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return provider in INLINE_PROVIDERS


def _retryable(error: BaseException) -> bool:
    if isinstance(error, DeadlineExceeded) or is_credential_error(error):
        return False
    if isinstance(error, (JunkAnswer, TimeoutError)):
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
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


def _header(error: BaseException, name: str) -> str | None:
    for headers in (
        getattr(error, "litellm_response_headers", None),
        getattr(error, "headers", None),
        getattr(getattr(error, "response", None), "headers", None),
    ):
        if headers and headers.get(name) is not None:
            return headers.get(name)
    return None


def retry_after(error: BaseException | None) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms, Retry-After seconds or date)."""
    if error is None:
        return None
    try:
        if (ms := _header(error, "retry-after-ms")) is not None:
            return min(max(float(ms) / 1000, 0.0), MAX_RETRY_AFTER)
    except ValueError:
        pass
    value = _header(error, "retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _wait(base: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        hinted = retry_after(state.outcome.exception() if state.outcome else None)
        if hinted is not None:
            return hinted
        return base * (2 ** (state.attempt_number - 1)) * (0.5 + random.random())  # noqa: S311

    return wait


def _cost(response: Any) -> float | None:
    """The call's price in dollars; None for models without one."""
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # LiteLLM priced it already (None: a model it has no price for)
        cost = hidden["response_cost"]
        return None if cost is None else float(cost)
    try:  # a LiteLLM that does not price responses itself
        return float(litellm().completion_cost(completion_response=response))
    except Exception:  # unknown models have no price
        return None


def _parse(response: Any) -> Completion:
    try:
        choices = response.choices
        first = choices[0]
        text = first.message.content or ""
        top = None
        logprobs = getattr(first, "logprobs", None)
        content = getattr(logprobs, "content", None) if logprobs is not None else None
        tokens = None
        if content:
            tokens = [
                (
                    item.token,
                    [(alt.token, float(alt.logprob)) for alt in item.top_logprobs or []]
                    or [(item.token, float(item.logprob))],  # the answered token alone
                )
                for item in content
            ]
            top = tokens[0][1]
        samples = [c.message.content or "" for c in choices]
        usage = getattr(response, "usage", None)
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise JunkAnswer(f"unreadable completion: {error}") from None
    cost = _cost(response)
    return Completion(
        text=text,
        top_logprobs=top,
        samples=samples,
        tokens=tokens,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
    )


@dataclass(frozen=True)
class CallOptions:
    model: str  # a LiteLLM model string, e.g. "gpt-4o-mini" or "openai/gemma3"
    api_base: str | None = None
    api_key: str | None = None
    supports_system_message: bool = True
    timeout: float = 30.0  # one attempt
    max_retries: int = 3
    backoff: float = 0.5  # first pause between attempts; doubles each time
    deadline: float = 60.0  # every attempt and pause, when no shared deadline is given


async def complete(
    options: CallOptions,
    messages: list[dict[str, str]],
    *,
    logprobs: bool,
    top_logprobs: int,
    max_tokens: int = 1,
    n: int = 1,
    temperature: float = 0.0,
    check: Callable[[Completion], None] | None = None,
    deadline_at: float | None = None,
    response_format: dict[str, Any] | None = None,
) -> Completion:
    """One answer (or n samples), retried as the module docstring says.

    `check` may raise JunkAnswer to have an unreadable answer retried. `deadline_at` is a
    time.monotonic() instant shared by several calls; by default the options' own deadline.
    """
    params: dict[str, Any] = {
        "model": options.model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": options.timeout,
        "max_retries": 0,  # the OpenAI SDK's own retries: off, tenacity does it
        "num_retries": 0,
    }
    if logprobs:
        params.update(logprobs=True, top_logprobs=top_logprobs)
    if n > 1:
        params["n"] = n
    if response_format is not None:
        params["response_format"] = response_format
    if options.api_base:
        params["api_base"] = options.api_base
    if options.api_key:
        params["api_key"] = options.api_key
    if not options.supports_system_message:
        params["supports_system_message"] = False
    end = deadline_at if deadline_at is not None else time.monotonic() + options.deadline

    async def attempt() -> Completion:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded
        try:
            # LiteLLM's timeout covers the HTTP exchange; this also covers a stalled body or
            # anything else that would ignore it.
            async with asyncio.timeout(min(remaining, options.timeout + 1)):
                # asyncio.timeout runs the call in this task, so the flag reaches LiteLLM.
                inline = _PREPARE_INLINE.set(_inline_preparation(options.model))
                try:
                    response = await litellm().acompletion(**params)
                finally:
                    _PREPARE_INLINE.reset(inline)
        except TimeoutError:
            if time.monotonic() >= end:
                raise DeadlineExceeded from None
            raise
        completion = _parse(response)
        if check is not None:
            check(completion)
        return completion

    def out_of_time(state: RetryCallState) -> bool:
        # Waits are computed before this check, so a pause that would end past the deadline
        # (e.g. a long Retry-After) stops the retries at once instead of sleeping in vain.
        return time.monotonic() + (state.upcoming_sleep or 0.0) >= end

    attempts = 0
    try:
        async for try_ in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(options.max_retries + 1) | out_of_time,
            wait=_wait(options.backoff),
            sleep=lambda seconds: sleep(seconds),
            reraise=True,
            before_sleep=lambda s: log.warning(
                "model %s failed (attempt %d), retrying in %.2f s: %s",
                options.model,
                s.attempt_number,
                s.upcoming_sleep,
                _safe_reason(s.outcome.exception() if s.outcome else None),
            ),
        ):
            with try_:
                attempts = try_.retry_state.attempt_number
                return await attempt()
    except Exception as error:  # every provider failure ends as the contract's model_error
        raise ModelError(_describe(error, options, attempts)) from error
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _safe_reason(error: BaseException | None) -> str:
    """What failed, for a log line: the error's type and HTTP status, never its message (a
    provider's error may quote the prompt, i.e. document text)."""
    if error is None:
        return ""
    status = getattr(error, "status_code", None)
    return type(error).__name__ + (f" (HTTP {status})" if status else "")


def credential_hint(model: str) -> str:
    """Where a model's credential comes from, for messages (never the credential itself)."""
    bare = model.rsplit("/", 1)[-1]
    if "/" not in model and bare.startswith(("gpt-", "o1", "o3", "o4")):
        return "OPENAI_API_KEY"
    return "the model's api_key in DOCSIFT_MODELS"


def _describe(error: BaseException, options: CallOptions, attempts: int) -> str:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if is_credential_error(error):
        status = getattr(error, "status_code", None)
        refused = f"refused the credential ({status})" if status else "has no credential"
        return (
            f"Model '{options.model}': the provider {refused} ({tries}, not retried); check "
            f"{credential_hint(options.model)} on the DocSift server."
        )
    if isinstance(error, TimeoutError):
        return f"Model '{options.model}' did not answer within the time limit ({tries})."
    if isinstance(error, JunkAnswer):
        return f"Model '{options.model}' did not answer with a label code ({tries}): {error}"
    status = getattr(error, "status_code", None)
    http = f"; HTTP {status}" if status else ""
    # Not the provider's message: it may quote the prompt (document text).
    return f"Model provider failed ({type(error).__name__}, {tries}{http})."
