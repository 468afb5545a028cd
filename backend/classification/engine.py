"""Score pages against labels with whichever backend serves the model (no database, no billing)."""

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from backend.backends.base import (
    ClassifyRequest,
    ClassifyResult,
    LabelledText,
    LabelSpec,
    ModelInfo,
)
from backend.backends.llm.confidence import round_distribution
from backend.errors import ApiError, ModelError
from backend.observability import record_model_call
from backend.state import AppState

log = logging.getLogger(__name__)


async def classify_pages(
    state: AppState,
    *,
    model: str,
    labels: list[LabelSpec],
    pages: list[tuple[int, str]],
    instructions: str | None = None,
    examples: Sequence[LabelledText] = (),
    training_key: str | None = None,
) -> tuple[ClassifyResult, ModelInfo]:
    """A distribution over exactly `labels` for the pages' text, from the model's backend."""
    backend, info = state.backends.resolve(model)
    request = ClassifyRequest(
        model=model,
        labels=labels,
        pages=[text for _, text in pages],
        page_numbers=[number for number, _ in pages],
        instructions=instructions,
        examples=list(examples),
        training_key=training_key,
    )
    started = time.perf_counter()
    # The hard ceiling for every backend; the LiteLLM one also plans its retries within it.
    limit = state.settings.model_total_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            result = await backend.classify(request)
    except ApiError:
        record_model_call(model, "error", time.perf_counter() - started)
        raise
    except TimeoutError:
        record_model_call(model, "timeout", time.perf_counter() - started)
        raise ModelError(f"Model '{model}' did not answer within {limit:g} s.") from None
    except Exception as error:  # a plugin's bug is the model's failure, not a 500
        record_model_call(model, "error", time.perf_counter() - started)
        log.exception("backend for model %s failed", model)
        # Only the type: a plugin's message may hold anything (URLs, keys, document text).
        raise ModelError(f"Model '{model}' failed ({type(error).__name__}).") from error
    record_model_call(model, "ok", time.perf_counter() - started)
    result.scores = _checked(result.scores, labels, model)
    return result, info


def _checked(scores: dict[str, float], labels: list[LabelSpec], model: str) -> dict[str, float]:
    expected = [s.label for s in labels]
    if set(scores) != set(expected):
        raise ModelError(f"Model '{model}' scored other labels than the schema's.")
    values = [scores[label] for label in expected]
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ModelError(f"Model '{model}' returned invalid scores.")
    return round_distribution({label: scores[label] for label in expected})
