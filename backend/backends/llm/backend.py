"""LLM classification through LiteLLM: OpenAI's models and any operator-configured server."""

import asyncio
import os
from dataclasses import dataclass

from backend.backends.base import (
    Backend,
    ClassifyRequest,
    ClassifyResult,
    LabelSpec,
    ModelInfo,
)
from backend.backends.llm import client, confidence
from backend.backends.llm.budget import count_tokens, fit_pages
from backend.backends.llm.label_codes import assign_codes, encoder_for
from backend.backends.llm.prompts import LabelPrompt, render_classify
from backend.config import ModelConfig, Settings

OPENAI_MODELS = {
    "gpt-4o-mini": "OpenAI GPT-4o mini: fast and cheap",
    "gpt-4o": "OpenAI GPT-4o",
}
# Codes per call: every code must fit in the top-k window alongside its variants (" A", "a").
MAX_GROUP = 20
EXAMPLE_TOKENS = 600  # per few-shot example
SAMPLES = 5  # fallback sampling for models without logprobs


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    def add(self, completion: client.Completion) -> None:
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

    async def startup(self) -> None:
        # `import litellm` takes seconds: start it in a thread now, off the event loop, and let
        # only the first LLM request wait for it (health checks and `local` never do).
        self._ready = asyncio.get_running_loop().run_in_executor(None, client.litellm)

    async def _litellm_ready(self) -> None:
        ready = getattr(self, "_ready", None)
        if ready is None:
            await asyncio.to_thread(client.litellm)
        else:
            await asyncio.shield(ready)

    def credits_for(self, name: str) -> int:
        return self.settings.credits_per_page.get(name, self.configs[name].credits_per_page)

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=name,
                backend=self.name,
                credits_per_page=self.credits_for(name),
                confidence_method="logprobs" if config.supports_logprobs else "sampling",
                description=OPENAI_MODELS.get(name, f"{config.litellm_model} via LiteLLM"),
            )
            for name, config in self.configs.items()
        ]

    def _options(self, config: ModelConfig) -> client.CallOptions:
        s = self.settings
        return client.CallOptions(
            model=config.litellm_model,
            api_base=config.api_base,
            api_key=config.api_key,
            timeout=s.model_timeout_seconds,
            max_retries=s.model_max_retries,
            backoff=s.model_backoff_seconds,
            deadline=s.model_total_timeout_seconds,
        )

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        config = self.configs[request.model]
        await self._litellm_ready()
        usage = _Usage()
        pages = list(
            zip(
                request.page_numbers or range(1, len(request.pages) + 1),
                request.pages,
                strict=False,
            )
        )
        # Tokenizing is CPU work: keep it off the event loop.
        fitted = await asyncio.to_thread(fit_pages, pages, self.settings.max_prompt_tokens)
        examples = await asyncio.to_thread(_fit_examples, request)
        scores, method = await self._score(config, request.labels, fitted, request, examples, usage)
        return ClassifyResult(
            scores=scores,
            confidence_method=method,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        )

    async def _score(
        self,
        config: ModelConfig,
        labels: list[LabelSpec],
        pages: list[tuple[int, str]],
        request: ClassifyRequest,
        examples: list[tuple[str, str]],
        usage: _Usage,
    ) -> tuple[dict[str, float], str]:
        if len(labels) <= MAX_GROUP:
            return await self._score_group(config, labels, pages, request, examples, usage)
        # Hierarchical: P(label) = P(its group) * P(label | group); see confidence.combine_groups.
        count = -(-len(labels) // MAX_GROUP)  # balanced groups: 21 labels -> 11 + 10, not 20 + 1
        groups = [labels[i::count] for i in range(count)]
        results = await asyncio.gather(
            *[self._score_group(config, g, pages, request, examples, usage) for g in groups]
        )
        within = [scores for scores, _ in results]
        leaders = [
            max(g, key=lambda s, w=w: w[s.label]) for g, w in zip(groups, within, strict=True)
        ]
        final, method = await self._score(config, leaders, pages, request, examples, usage)
        combined = confidence.combine_groups(within, [final[leader.label] for leader in leaders])
        return combined, f"{method}_grouped" if not method.endswith("_grouped") else method

    async def _score_group(
        self,
        config: ModelConfig,
        labels: list[LabelSpec],
        pages: list[tuple[int, str]],
        request: ClassifyRequest,
        examples: list[tuple[str, str]],
        usage: _Usage,
    ) -> tuple[dict[str, float], str]:
        codes = assign_codes(len(labels), encoder_for(config.litellm_model, config.tokenizer))
        code_of = {spec.label: code for spec, code in zip(labels, codes, strict=True)}
        system, user = render_classify(
            self.settings.prompts_dir,
            labels=[LabelPrompt(code_of[s.label], s.label, s.description) for s in labels],
            pages=pages,
            instructions=request.instructions,
            examples=[(code_of[label], text) for label, text in examples if label in code_of],
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        options = self._options(config)
        by_code: dict[str, float] | None = None
        method = "logprobs"
        if config.supports_logprobs:

            def check(completion: client.Completion) -> None:
                if completion.top_logprobs is None:
                    return  # no logprobs at all: handled by the fallback below
                try:
                    confidence.code_probabilities(completion.top_logprobs, codes)
                except confidence.NoCodeInAnswer as error:
                    raise client.JunkAnswer(str(error)) from None

            completion = await client.complete(
                options,
                messages,
                logprobs=True,
                top_logprobs=self.settings.top_logprobs,
                check=check,
            )
            usage.add(completion)
            if completion.top_logprobs is not None:
                by_code = confidence.code_probabilities(completion.top_logprobs, codes)
        if by_code is None:
            # The provider gives no logprobs: n samples at temperature 1, counted.
            method = "sampling"

            def check_samples(completion: client.Completion) -> None:
                try:
                    confidence.from_counts(completion.samples, codes)
                except confidence.NoCodeInAnswer as error:
                    raise client.JunkAnswer(str(error)) from None

            completion = await client.complete(
                options,
                messages,
                logprobs=False,
                top_logprobs=0,
                n=SAMPLES,
                temperature=1.0,
                check=check_samples,
            )
            usage.add(completion)
            by_code = confidence.from_counts(completion.samples, codes)
        return {label: by_code[code] for label, code in code_of.items()}, method


def _fit_examples(request: ClassifyRequest) -> list[tuple[str, str]]:
    """Few-shot examples (already chosen by the caller) cut to a token budget each."""
    fitted = []
    for example in request.examples:
        text = example.text
        if count_tokens(text) > EXAMPLE_TOKENS:
            text = fit_pages([(1, text)], EXAMPLE_TOKENS)[0][1]
        fitted.append((example.label, text))
    return fitted
