"""LLM classification through LiteLLM: OpenAI's models and any operator-configured server.

One classification is one call per label group (one group up to the top-logprobs window, see
confidence.py), all sharing one deadline; `debias: permutations` multiplies the calls by k and
`contextual` adds the model's content-free prior, measured once per schema. How a call is scored
(README "Confidence"):
- logprobs: a single-token code, its first token's logprobs (multi-label: a JSON yes/no per code,
  each value token's logprobs);
- verbalized: a JSON object code -> probability, when the model answers without logprobs (or is
  configured so). A model that answered without logprobs is asked for JSON directly until
  `logprobs_reprobe_seconds` have passed, then asked for logprobs again: never stuck by one answer;
- sampling: five code answers counted, only when the model cannot produce the JSON either.
"""

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, LabelSpec, ModelInfo
from backend.backends.llm import client, confidence
from backend.backends.llm.budget import fit_pages, fits_untouched
from backend.backends.llm.images import ImageMarkers, PageImage, fit_images
from backend.backends.llm.images import credits_per_image_page as image_rate
from backend.backends.llm.label_codes import assign_codes, available_codes, encoder_for
from backend.backends.llm.prompts import LabelPrompt, render_classify
from backend.config import ModelConfig, Settings
from backend.errors import InvalidRequest, ModelError

log = logging.getLogger(__name__)

OPENAI_MODELS = {
    "gpt-4o-mini": "OpenAI GPT-4o mini: fast and cheap",
    "gpt-4o": "OpenAI GPT-4o",
}
EXAMPLE_TOKENS = 600  # one few-shot example at most
SAMPLES = 5  # answers counted by the sampling fallback
# Content-free inputs whose answers estimate the model's prior (Zhao et al. 2021 use these three).
CONTENT_FREE = ("N/A", "", "[MASK]")
PRIOR_CACHE = 1000  # priors kept (schemas x models x methods); the least recently used go first
WEAKEST_FIRST = ("sampling", "verbalized", "logprobs")
DEBIAS_COSTS = {
    "permutations": "k model calls per label group instead of 1 (k = permutations, default 3, "
    "at most the number of labels), so k times the tokens; credits per page unchanged",
    "contextual": "3 model calls on content-free inputs once per schema and model in this server "
    "process (their tokens are counted in the request that measures them), then none",
}

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
    multi_label: bool = False
    debias: str = "none"
    permutations: int = 3

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
        # Models seen answering without logprobs -> when to ask them for logprobs again.
        self.logprobs_refused: dict[str, float] = {}
        # Content-free priors for `debias: contextual`, by model, method and prompt fingerprint.
        self.priors: dict[str, asyncio.Future[dict[str, float]]] = {}
        # Models whose server refused a JSON schema (response_format): JSON asked in words only.
        self.no_structured_output: set[str] = set()
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
        return config.takes_images

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

    def unavailable_reason(self, config: ModelConfig) -> str | None:
        """Why the server cannot use a model (OpenAI's without a key), or None."""
        if config.name in OPENAI_MODELS and not (
            config.api_key or os.environ.get("OPENAI_API_KEY")
        ):
            return "OPENAI_API_KEY is not set on this server"
        return None

    def models(self) -> list[ModelInfo]:
        infos = []
        for name, config in self.configs.items():
            reason = self.unavailable_reason(config)
            infos.append(
                ModelInfo(
                    name=name,
                    backend=self.name,
                    credits_per_page=self.credits_for(name),
                    confidence_method=self.method_for(config),
                    description=OPENAI_MODELS.get(name, f"{config.litellm_model} via LiteLLM"),
                    supports_multi_label=True,
                    debias_methods=("permutations", "contextual"),
                    available=reason is None,
                    unavailable_reason=reason,
                    debias_costs=dict(DEBIAS_COSTS),
                    supports_vision=self.vision(config),
                    credits_per_image_page=self.image_credits_for(name),
                    default_input_mode=config.input_mode,
                )
            )
        return infos

    def method_for(self, config: ModelConfig) -> str:
        """How the model's next answer is scored: configured, or logprobs unless the model was
        seen refusing them less than `logprobs_reprobe_seconds` ago."""
        if config.confidence_method != "auto":
            return config.confidence_method
        if not config.supports_logprobs:
            return "verbalized"
        until = self.logprobs_refused.get(config.name)
        if until is not None and time.monotonic() < until:
            return "verbalized"
        return "logprobs"

    def _refused_logprobs(self, config: ModelConfig) -> None:
        log.warning("model %s answered without logprobs: asking for JSON instead", config.name)
        self.logprobs_refused[config.name] = (
            time.monotonic() + self.settings.logprobs_reprobe_seconds
        )

    def group_size(self, config: ModelConfig) -> int:
        """Labels per call: as many codes as the top-logprobs window (and the tokenizer) allow."""
        codes = available_codes(encoder_for(config.litellm_model, config.tokenizer))
        return max(2, min(self.settings.top_logprobs, len(codes)))

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        config = self.configs[request.model]
        if reason := self.unavailable_reason(config):
            raise InvalidRequest(f"Model '{config.name}' is unavailable: {reason}.")
        s = self.settings
        deadline_at = time.monotonic() + s.model_total_timeout_seconds
        await self._litellm_ready()
        numbers = request.page_numbers or list(range(1, len(request.pages) + 1))
        texts = dict(zip(numbers, request.pages, strict=False))
        markers = ImageMarkers()
        # Each step below runs in a thread only when it has work: a hop costs more than the
        # step on the usual request (text only, a page or two, no examples), and under load it
        # waits for the GIL behind the whole event loop.
        images = (
            await asyncio.to_thread(_fit_request_images, request, config, s.max_image_tokens)
            if request.images
            else {}
        )
        # A page sent as an image keeps its text only in text+image mode.
        with_text = [
            (n, texts[n])
            for n in numbers
            if n not in request.images or request.input_mode == "text+image"
        ]
        # Tokenizing is CPU work: off the event loop, unless no cut can be needed.
        if fits_untouched([text for _, text in with_text], s.max_prompt_tokens):
            fitted = dict(with_text)
        else:
            fitted = dict(await asyncio.to_thread(fit_pages, with_text, s.max_prompt_tokens))
        pages = []
        for n in numbers:
            parts = [fitted[n]] if n in fitted else []
            if n in images:
                parts.append(markers.mark(f"page {n}", images[n]))
            if parts:  # a page image past the budget is left out, not sent empty
                pages.append((n, "\n".join(parts)))
        examples: list[tuple[str, str]] = []
        if request.examples:
            examples = await asyncio.to_thread(fit_examples, request, s.max_prompt_tokens // 2)
            if request.input_mode == "image":
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
            multi_label=request.multi_label,
            debias=request.debias,
            permutations=request.permutations,
            markers=markers,
            image_tokens_per_call=sum(i.tokens for i in markers.images.values()),
        )
        size = self.group_size(config)
        if request.multi_label:
            chunks = [request.labels[i : i + size] for i in range(0, len(request.labels), size)]
            parts = await _all([self._debiased(run, chunk) for chunk in chunks])
            scores = {label: p for part in parts for label, p in part.items()}
        else:
            scores = await self._score(run, request.labels)
        method = next((m for m in WEAKEST_FIRST if m in run.methods), "logprobs")
        if len(request.labels) > size and not request.multi_label:
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
            return await self._debiased(run, labels)
        # Hierarchical: P(label) = P(its group) * P(label | group); see confidence.combine_groups.
        count = -(-len(labels) // size)  # balanced groups: 21 labels -> 11 + 10, not 20 + 1
        groups = [labels[i::count] for i in range(count)]
        within = await _all([self._debiased(run, g) for g in groups])
        leaders = [
            max(g, key=lambda s, w=w: w[s.label]) for g, w in zip(groups, within, strict=True)
        ]
        final = await self._score(run, leaders)
        return confidence.combine_groups(within, [final[leader.label] for leader in leaders])

    async def _debiased(self, run: _Run, labels: list[LabelSpec]) -> dict[str, float]:
        """One group's scores, corrected as the request's `debias` says."""
        if run.debias == "permutations":
            # k cyclic rotations, evenly spread: every label is asked under k different codes
            # and positions, so a preferred position is shared out instead of won.
            n = len(labels)
            k = min(run.permutations, n)
            shifts = sorted({round(j * n / k) % n for j in range(k)})
            answers = await _all([self._ask(run, labels, shift) for shift in shifts])
            return confidence.average([scores for scores, _ in answers])
        scores, method = await self._ask(run, labels)
        if run.debias == "contextual":
            prior = await self._prior(run, labels, method)
            if run.multi_label:
                return {
                    label: confidence.divide_prior_binary(p, prior[label])
                    for label, p in scores.items()
                }
            return confidence.divide_prior(scores, prior)
        return scores

    async def _prior(self, run: _Run, labels: list[LabelSpec], method: str) -> dict[str, float]:
        """The model's mean scores on content-free documents for this prompt: measured once per
        model, method and schema (concurrent requests share one measurement), then cached."""
        key = hashlib.sha256(
            json.dumps(
                [
                    run.config.name,
                    method,
                    run.multi_label,
                    run.instructions,
                    [(s.label, s.description) for s in labels],
                ]
            ).encode()
        ).hexdigest()
        future = self.priors.pop(key, None)
        if future is None:
            future = asyncio.ensure_future(self._measure_prior(run, labels, method))
            while len(self.priors) >= PRIOR_CACHE:  # least recently used first
                self.priors.pop(next(iter(self.priors)))
        self.priors[key] = future
        try:
            return await asyncio.shield(future)
        except BaseException:
            if future.done() and self.priors.get(key) is future:
                del self.priors[key]  # a failed measurement is tried again by the next request
            raise

    async def _measure_prior(
        self, run: _Run, labels: list[LabelSpec], method: str
    ) -> dict[str, float]:
        # Few-shot examples are left out: they are chosen per document, the prior is per schema.
        copies = [replace(run, pages=[(1, text)], examples=[], calls=0) for text in CONTENT_FREE]
        for copy in copies:
            copy.prompt_tokens = copy.completion_tokens = 0
            copy.cost_usd = None
        answers = await _all([self._ask(copy, labels, method=method) for copy in copies])
        for copy in copies:  # the request that measures the prior pays for its calls
            run.calls += copy.calls
            run.prompt_tokens += copy.prompt_tokens
            run.completion_tokens += copy.completion_tokens
            if copy.cost_usd is not None:
                run.cost_usd = (run.cost_usd or 0.0) + copy.cost_usd
        return confidence.average([scores for scores, _ in answers])

    async def _ask(
        self, run: _Run, labels: list[LabelSpec], shift: int = 0, method: str | None = None
    ) -> tuple[dict[str, float], str]:
        """One call's scores by label, and the method that produced them. Label i gets code
        (i + shift) mod n, and the prompt lists the labels in code order."""
        config = run.config
        n = len(labels)
        codes = assign_codes(n, encoder_for(config.litellm_model, config.tokenizer))
        listing = [labels[(j - shift) % n] for j in range(n)]  # listing[j] has codes[j]
        code_of = {spec.label: code for spec, code in zip(listing, codes, strict=True)}
        method = method or self.method_for(config)
        by_code = None
        if method == "logprobs":
            by_code = await self._from_logprobs(run, listing, codes)
            if by_code is None:
                self._refused_logprobs(config)
                method = "verbalized"
        if method == "verbalized":
            try:
                by_code = await self._from_verbalized(run, listing, codes)
            except ModelError as error:
                # A model that cannot write the JSON either: sampling is the last resort.
                if (
                    run.multi_label
                    or config.confidence_method == "verbalized"
                    or not isinstance(error.__cause__, client.JunkAnswer)
                ):
                    raise
                log.warning("model %s wrote no readable JSON: sampling instead", config.name)
                method = "sampling"
        if method == "sampling" and by_code is None:
            if run.multi_label:  # counting yes/no samples is too coarse: ask for JSON instead
                method = "verbalized"
                by_code = await self._from_verbalized(run, listing, codes)
            else:
                by_code = await self._from_samples(run, listing, codes)
        assert by_code is not None
        run.methods.add(method)
        return {label: by_code[code] for label, code in code_of.items()}, method

    def _messages(
        self, run: _Run, listing: list[LabelSpec], codes: list[str], answer: str
    ) -> list[dict[str, Any]]:
        code_of = {spec.label: code for spec, code in zip(listing, codes, strict=True)}
        system, user = render_classify(
            self.settings.prompts_dir,
            labels=[LabelPrompt(code_of[s.label], s.label, s.description) for s in listing],
            pages=run.pages,
            instructions=run.instructions,
            examples=[(code_of[label], text) for label, text in run.examples if label in code_of],
            answer=answer,
        )
        content = run.markers.to_parts(user)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": content},
        ]
        if isinstance(content, list) and not run.config.supports_system_message:
            # LiteLLM folds a system prompt into a text user turn only: fold it into the parts.
            messages = [{"role": "user", "content": [{"type": "text", "text": system}, *content]}]
        return messages

    async def _from_logprobs(
        self, run: _Run, listing: list[LabelSpec], codes: list[str]
    ) -> dict[str, float] | None:
        """Code probabilities from the answer's logprobs; None if the model gave none (or its
        provider refused the parameter)."""
        multi = run.multi_label
        messages = self._messages(run, listing, codes, "multi_label" if multi else "code")

        def check(completion: client.Completion) -> None:
            if completion.top_logprobs is None:
                return  # no logprobs at all: the caller asks for JSON instead
            try:
                read(completion)
            except confidence.NoCodeInAnswer as error:
                raise client.JunkAnswer(str(error)) from None

        def read(completion: client.Completion) -> dict[str, float]:
            if multi:
                return confidence.multi_label_probabilities(completion.tokens or [], codes)
            return confidence.code_probabilities(completion.top_logprobs or [], codes)

        try:
            completion = await self._complete(
                run,
                messages,
                logprobs=True,
                top_logprobs=5 if multi else self.settings.top_logprobs,
                max_tokens=json_tokens(len(codes)) if multi else 1,
                response_format=self._format(run, "label_yes_no", codes),
                check=check,
                deadline_at=run.deadline_at,
            )
        except ModelError as error:
            if _refuses_logprobs(error.__cause__):
                return None
            raise
        run.add(completion)
        if completion.top_logprobs is None:
            return None
        return read(completion)

    async def _complete(
        self, run: _Run, messages: list[dict[str, Any]], **kwargs: Any
    ) -> client.Completion:
        """client.complete; a model whose server refuses the JSON schema (e.g. llama-cpp-python
        takes only {"type": "json_object"}: 422 for "json_schema") is asked again without one,
        and never sent one again by this process."""
        try:
            return await client.complete(run.options, messages, **kwargs)
        except ModelError as error:
            status = getattr(error.__cause__, "status_code", None)
            if (
                kwargs.get("response_format") is None
                or status not in (400, 422)
                or _refuses_logprobs(error.__cause__)
            ):
                raise
            log.warning("model %s refused a JSON schema: asking without one", run.config.name)
            self.no_structured_output.add(run.config.name)
            return await client.complete(
                run.options, messages, **{**kwargs, "response_format": None}
            )

    def _format(self, run: _Run, name: str, codes: list[str]) -> dict[str, Any] | None:
        """A JSON schema for a JSON answer (structured output), when the model takes one."""
        if not run.config.structured_output or run.config.name in self.no_structured_output:
            return None
        if name == "label_yes_no" and not run.multi_label:
            return None
        value: dict[str, Any] = (
            {"type": "string", "enum": ["yes", "no"]}
            if name == "label_yes_no"
            else {"type": "number"}
        )
        schema = {
            "type": "object",
            "properties": {code: value for code in codes},
            "required": codes,
            "additionalProperties": False,
        }
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "strict": True, "schema": schema},
        }

    async def _from_verbalized(
        self, run: _Run, listing: list[LabelSpec], codes: list[str]
    ) -> dict[str, float]:
        """Method "verbalized": one call, a JSON object code -> probability, parsed strictly
        (confidence.from_verbalized); junk is retried like any unreadable answer."""
        multi = run.multi_label
        answer = "multi_label_distribution" if multi else "distribution"
        parse = confidence.from_verbalized_independent if multi else confidence.from_verbalized
        messages = self._messages(run, listing, codes, answer)

        def check(completion: client.Completion) -> None:
            try:
                parse(completion.text, codes)
            except confidence.NoCodeInAnswer as error:
                raise client.JunkAnswer(str(error)) from None

        completion = await self._complete(
            run,
            messages,
            logprobs=False,
            top_logprobs=0,
            max_tokens=json_tokens(len(codes)),
            response_format=self._format(
                run, "label_probabilities" if multi else "label_distribution", codes
            ),
            check=check,
            deadline_at=run.deadline_at,
        )
        run.add(completion)
        return parse(completion.text, codes)

    async def _from_samples(
        self, run: _Run, listing: list[LabelSpec], codes: list[str]
    ) -> dict[str, float]:
        """The last resort: SAMPLES answers at temperature 1, counted (confidence.from_counts)."""
        messages = self._messages(run, listing, codes, "code")

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


def json_tokens(codes: int) -> int:
    """max_tokens for a JSON answer over `codes` codes ({"A": 0.25, ...}: about 7 per code)."""
    return 16 + 10 * codes


def _refuses_logprobs(error: BaseException | None) -> bool:
    """A provider that rejects the logprobs parameter itself (400 naming it, e.g. Vertex)."""
    return (
        error is not None
        and getattr(error, "status_code", None) == 400
        and "logprob" in str(error).lower()
    )


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
