"""LLM classification through LiteLLM: OpenAI's models and any operator-configured server.

One classification is one call per label group (one group up to the top-logprobs window, see
confidence.py), all sharing one deadline. Each call asks for a single-token code with logprobs;
a model that returns no logprobs is remembered and scored by sampling from then on.
"""

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, LabelSpec, ModelInfo
from backend.backends.llm import client, confidence
from backend.backends.llm.budget import fit_pages
from backend.backends.llm.images import ImageMarkers, PageImage, fit_images, supports_vision
from backend.backends.llm.images import credits_per_image_page as image_rate
from backend.backends.llm.label_codes import assign_codes, available_codes, encoder_for
from backend.backends.llm.prompts import LabelPrompt, render_classify
from backend.config import ModelConfig, Settings

log = logging.getLogger(__name__)

OPENAI_MODELS = {
    "gpt-4o-mini": "OpenAI GPT-4o mini: fast and cheap",
    "gpt-4o": "OpenAI GPT-4o",
}
EXAMPLE_TOKENS = 600  # one few-shot example at most
SAMPLES = 5  # answers counted by the sampling fallback

Check = Callable[[client.Completion], None]
T = TypeVar("T")


@dataclass
class _Run:
    """One classification's calls: the model, the prompt parts, one deadline, summed usage."""

    config: ModelConfig
    options: client.CallOptions
    pages: list[tuple[int, str]]
    instructions: str | None
    examples: list[tuple[str, str]]  # (label, text), already cut to the budget
    deadline_at: float
    # Images in the pages' and examples' text stand as markers, made parts per call.
    markers: ImageMarkers = field(default_factory=ImageMarkers)
    image_tokens_per_call: int = 0
    image_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    calls: int = 0
    methods: set[str] = field(default_factory=set)

    def add(self, completion: client.Completion) -> None:
        self.calls += 1
        self.image_tokens += self.image_tokens_per_call
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        if completion.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + completion.cost_usd


class LiteLLMBackend(Backend):
    name = "litellm"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.configs: dict[str, ModelConfig] = {}
        base = os.environ.get("OPENAI_BASE_URL") or None
        for name in OPENAI_MODELS:
            self.configs[name] = ModelConfig(name=name, litellm_model=name, api_base=base)
        for config in settings.models:
            self.configs[config.name] = config
        # Models seen answering without logprobs: sampled directly, without a wasted call.
        self.no_logprobs: set[str] = set()
        self._ready: asyncio.Future[object] | None = None

    async def startup(self) -> None:
        # `import litellm` takes seconds: start it in a thread now, off the event loop, and let
        # only the first LLM request wait for it (health checks and `local` never do).
        self._ready = asyncio.get_running_loop().run_in_executor(None, client.litellm)

    async def shutdown(self) -> None:
        await client.close()

    async def _litellm_ready(self) -> None:
        if self._ready is None:
            await asyncio.to_thread(client.litellm)
        else:
            await asyncio.shield(self._ready)

    def credits_for(self, name: str) -> int:
        return self.settings.credits_per_page.get(name, self.configs[name].credits_per_page)

    def vision(self, config: ModelConfig) -> bool:
        """DOCSIFT_MODELS' `supports_vision` when set, else LiteLLM's model data."""
        if config.supports_vision is not None:
            return config.supports_vision
        return supports_vision(config.litellm_model)

    def image_credits_for(self, name: str) -> int | None:
        config = self.configs[name]
        if not self.vision(config):
            return None
        if name in self.settings.credits_per_image_page:
            return self.settings.credits_per_image_page[name]
        if config.credits_per_image_page is not None:
            return config.credits_per_image_page
        return image_rate(
            config.litellm_model, self.credits_for(name), self.settings.max_prompt_tokens
        )

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=name,
                backend=self.name,
                credits_per_page=self.credits_for(name),
                confidence_method="logprobs" if config.supports_logprobs else "sampling",
                description=OPENAI_MODELS.get(name, f"{config.litellm_model} via LiteLLM"),
                supports_vision=self.vision(config),
                credits_per_image_page=self.image_credits_for(name),
            )
            for name, config in self.configs.items()
        ]

    def group_size(self, config: ModelConfig) -> int:
        """Labels per call: as many codes as the top-logprobs window (and the tokenizer) allow."""
        codes = available_codes(encoder_for(config.litellm_model, config.tokenizer))
        return max(2, min(self.settings.top_logprobs, len(codes)))

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        config = self.configs[request.model]
        s = self.settings
        deadline_at = time.monotonic() + s.model_total_timeout_seconds
        await self._litellm_ready()
        numbers = request.page_numbers or list(range(1, len(request.pages) + 1))
        texts = dict(zip(numbers, request.pages, strict=False))
        markers = ImageMarkers()
        images = await asyncio.to_thread(_fit_request_images, request, config, s.max_image_tokens)
        # A page sent as an image keeps its text only in text+image mode.
        with_text = [
            (n, texts[n])
            for n in numbers
            if n not in request.images or request.input_mode == "text+image"
        ]
        # Tokenizing is CPU work: keep it off the event loop.
        fitted = dict(await asyncio.to_thread(fit_pages, with_text, s.max_prompt_tokens))
        pages = []
        for n in numbers:
            parts = [fitted[n]] if n in fitted else []
            if n in images:
                parts.append(markers.mark(f"page {n}", images[n]))
            if parts:  # a page image past the budget is left out, not sent empty
                pages.append((n, "\n".join(parts)))
        examples = await asyncio.to_thread(fit_examples, request, s.max_prompt_tokens // 2)
        used = sum(i.tokens for i in images.values())
        examples = await asyncio.to_thread(
            _example_images, request, examples, config, s.max_image_tokens - used, markers
        )
        run = _Run(
            config=config,
            options=client.CallOptions(
                model=config.litellm_model,
                api_base=config.api_base,
                api_key=config.api_key,
                supports_system_message=config.supports_system_message,
                timeout=s.model_timeout_seconds,
                max_retries=s.model_max_retries,
                backoff=s.model_backoff_seconds,
                deadline=s.model_total_timeout_seconds,
            ),
            pages=pages,
            instructions=request.instructions,
            examples=examples,
            deadline_at=deadline_at,
            markers=markers,
            image_tokens_per_call=sum(i.tokens for i in markers.images.values()),
        )
        scores = await self._score(run, request.labels)
        method = "sampling" if "sampling" in run.methods else "logprobs"
        if len(request.labels) > self.group_size(config):
            method += "_grouped"
        return ClassifyResult(
            scores=scores,
            confidence_method=method,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cost_usd=run.cost_usd,
            details={
                "model_calls": run.calls,
                "image_tokens": run.image_tokens,
                "image_pages": sorted(images),
            },
        )

    async def _score(self, run: _Run, labels: list[LabelSpec]) -> dict[str, float]:
        size = self.group_size(run.config)
        if len(labels) <= size:
            return await self._score_group(run, labels)
        # Hierarchical: P(label) = P(its group) * P(label | group); see confidence.combine_groups.
        count = -(-len(labels) // size)  # balanced groups: 21 labels -> 11 + 10, not 20 + 1
        groups = [labels[i::count] for i in range(count)]
        within = await _all([self._score_group(run, g) for g in groups])
        leaders = [
            max(g, key=lambda s, w=w: w[s.label]) for g, w in zip(groups, within, strict=True)
        ]
        final = await self._score(run, leaders)
        return confidence.combine_groups(within, [final[leader.label] for leader in leaders])

    async def _score_group(self, run: _Run, labels: list[LabelSpec]) -> dict[str, float]:
        config = run.config
        codes = assign_codes(len(labels), encoder_for(config.litellm_model, config.tokenizer))
        code_of = {spec.label: code for spec, code in zip(labels, codes, strict=True)}
        system, user = render_classify(
            self.settings.prompts_dir,
            labels=[LabelPrompt(code_of[s.label], s.label, s.description) for s in labels],
            pages=run.pages,
            instructions=run.instructions,
            examples=[(code_of[label], text) for label, text in run.examples if label in code_of],
        )
        content = run.markers.to_parts(user)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": content},
        ]
        if isinstance(content, list) and not config.supports_system_message:
            # LiteLLM folds a system prompt into a text user turn only: fold it into the parts.
            messages = [{"role": "user", "content": [{"type": "text", "text": system}, *content]}]
        by_code = None
        if config.supports_logprobs and config.name not in self.no_logprobs:
            by_code = await self._from_logprobs(run, messages, codes)
            if by_code is None:
                log.warning("model %s returned no logprobs: sampling instead", config.name)
                self.no_logprobs.add(config.name)
        if by_code is None:
            by_code = await self._from_samples(run, messages, codes)
            run.methods.add("sampling")
        else:
            run.methods.add("logprobs")
        return {label: by_code[code] for label, code in code_of.items()}

    async def _from_logprobs(
        self, run: _Run, messages: list[dict[str, Any]], codes: list[str]
    ) -> dict[str, float] | None:
        """Code probabilities from the first token's top logprobs; None if the model gave none."""

        def check(completion: client.Completion) -> None:
            if completion.top_logprobs is None:
                return  # no logprobs at all: the caller falls back to sampling
            try:
                confidence.code_probabilities(completion.top_logprobs, codes)
            except confidence.NoCodeInAnswer as error:
                raise client.JunkAnswer(str(error)) from None

        completion = await client.complete(
            run.options,
            messages,
            logprobs=True,
            top_logprobs=self.settings.top_logprobs,
            check=check,
            deadline_at=run.deadline_at,
        )
        run.add(completion)
        if completion.top_logprobs is None:
            return None
        return confidence.code_probabilities(completion.top_logprobs, codes)

    async def _from_samples(
        self, run: _Run, messages: list[dict[str, Any]], codes: list[str]
    ) -> dict[str, float]:
        """The fallback: SAMPLES answers at temperature 1, counted (confidence.from_counts)."""

        def check(completion: client.Completion) -> None:
            try:
                confidence.from_counts(completion.samples, codes)
            except confidence.NoCodeInAnswer as error:
                raise client.JunkAnswer(str(error)) from None

        async def sample(n: int, check: Check | None = None) -> client.Completion:
            completion = await client.complete(
                run.options,
                messages,
                logprobs=False,
                top_logprobs=0,
                n=n,
                temperature=1.0,
                check=check,
                deadline_at=run.deadline_at,
            )
            run.add(completion)
            return completion

        first = await sample(SAMPLES, check)
        answers = list(first.samples)
        missing = SAMPLES - len(answers)
        if missing > 0:
            # Many OpenAI-compatible servers ignore `n` and answer once: ask again, one by one.
            # The first answer was valid, so a failed extra one only means fewer samples.
            more = await asyncio.gather(
                *[sample(1) for _ in range(missing)], return_exceptions=True
            )
            answers += [t for c in more if isinstance(c, client.Completion) for t in c.samples]
        return confidence.from_counts(answers, codes)


async def _all(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every call's result; the first failure cancels the others (no orphaned model calls)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def fit_examples(request: ClassifyRequest, budget: int) -> list[tuple[str, str]]:
    """Few-shot examples (already chosen by the caller) cut to `budget` tokens in all, shared
    fairly, and EXAMPLE_TOKENS each."""
    fitted = fit_pages(
        [(i, e.text) for i, e in enumerate(request.examples)], budget, cap=EXAMPLE_TOKENS
    )
    return [(e.label, text) for e, (_, text) in zip(request.examples, fitted, strict=True)]


def _fit_request_images(
    request: ClassifyRequest, config: ModelConfig, budget: int
) -> dict[int, PageImage]:
    """The request's page images that fit the image budget, with their detail and tokens."""
    if not request.images:
        return {}
    numbers = request.page_numbers or list(range(1, len(request.pages) + 1))
    wanted = [PageImage(n, request.images[n]) for n in numbers if n in request.images]
    kept = fit_images(config.litellm_model, wanted, budget, preferred=config.image_detail)
    return {image.page: image for image in kept}


def _example_images(
    request: ClassifyRequest,
    examples: list[tuple[str, str]],
    config: ModelConfig,
    budget: int,
    markers: ImageMarkers,
) -> list[tuple[str, str]]:
    """In image mode, each example whose first-page image fits what is left of the image budget
    goes as that image (the others keep their text)."""
    if request.input_mode != "image":
        return examples
    out = []
    for index, ((label, text), source) in enumerate(zip(examples, request.examples, strict=True)):
        if source.image is not None:
            (image,) = fit_images(
                config.litellm_model,
                [PageImage(index, source.image)],
                budget,
                preferred=config.image_detail,
            ) or [None]
            if image is not None and image.tokens <= budget:
                budget -= image.tokens
                out.append((label, markers.mark(f"example {index}", image)))
                continue
        out.append((label, text))
    return out
