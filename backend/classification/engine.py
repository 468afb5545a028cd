"""Score pages against labels with whichever backend serves the model (no database, no billing)."""

import asyncio
import logging
import math
import time

from backend.backends.base import ClassifyRequest, ClassifyResult, LabelSpec
from backend.backends.llm.confidence import round_distribution
from backend.classification.spec import RunSpec
from backend.errors import ApiError, ModelError
from backend.observability import record_model_call
from backend.state import AppState

log = logging.getLogger(__name__)


async def classify_pages(
    state: AppState,
    spec: RunSpec,
    pages: list[tuple[int, str]],
    *,
    document_id: str | None = None,
    images: dict[int, bytes] | None = None,
) -> ClassifyResult:
    """Scores over exactly the spec's labels for the pages' text, from the model's backend.

    Few-shot examples are chosen here, by the text being classified (`document_id`'s own
    example is never one of them)."""
    backend, _ = state.backends.resolve(spec.model)
    texts = [text for _, text in pages]
    modes = spec.modes
    request = ClassifyRequest(
        model=spec.model,
        labels=spec.labels,
        pages=texts,
        page_numbers=[number for number, _ in pages],
        instructions=spec.instructions,
        examples=spec.examples_for("\n".join(texts), document_id=document_id)
        if spec.examples
        else [],
        training_key=spec.training_key,
        multi_label=modes.multi_label,
        input_mode=modes.input_mode,
        images=images or {},
        debias=modes.debias,
        permutations=modes.permutations,
    )
    model = spec.model
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
        # Not log.exception: the traceback's message may hold document or prompt text.
        log.error("backend for model %s failed: %s", model, type(error).__name__)
        # Only the type: a plugin's message may hold anything (URLs, keys, document text).
        raise ModelError(f"Model '{model}' failed ({type(error).__name__}).") from error
    record_model_call(model, "ok", time.perf_counter() - started)
    result.scores = checked_scores(result.scores, spec.labels, model, multi_label=modes.multi_label)
    return result


def checked_scores(
    scores: dict[str, float], labels: list[LabelSpec], model: str, *, multi_label: bool = False
) -> dict[str, float]:
    """The backend's scores in schema order: a rounded distribution, or (multi-label) one
    probability per label, each in [0, 1]. Anything else is the model's failure (502)."""
    expected = [s.label for s in labels]
    if set(scores) != set(expected):
        raise ModelError(f"Model '{model}' scored other labels than the schema's.")
    values = [scores[label] for label in expected]
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ModelError(f"Model '{model}' returned invalid scores.")
    if multi_label:
        if any(v > 1 for v in values):
            raise ModelError(f"Model '{model}' returned a probability above 1.")
        return {label: round(scores[label], 4) for label in expected}
    if sum(values) <= 0:
        raise ModelError(f"Model '{model}' returned invalid scores.")
    return round_distribution({label: scores[label] for label in expected})
