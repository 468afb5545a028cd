"""A backend whose answers come from a function: for tests and demos, never registered by default.

Like pydantic-ai's FunctionModel: the test decides the answer, and every call is recorded so the
test can assert what DocSift asked.
"""

from collections.abc import Callable

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, ModelInfo

AnswerFn = Callable[[ClassifyRequest], ClassifyResult | dict[str, float]]


def first_label_wins(request: ClassifyRequest) -> dict[str, float]:
    """Default answer: 0.7 on the first label, the rest shared equally."""
    n = len(request.labels)
    rest = 0.3 / (n - 1) if n > 1 else 0.0
    return {s.label: (0.7 if i == 0 else rest) for i, s in enumerate(request.labels)}


class FunctionBackend(Backend):
    name = "function"

    def __init__(
        self,
        answer: AnswerFn = first_label_wins,
        *,
        model_names: tuple[str, ...] = ("fake",),
        credits_per_page: int = 1,
    ) -> None:
        self.answer = answer
        self.model_names = model_names
        self.credits_per_page = credits_per_page
        self.calls: list[ClassifyRequest] = []

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=name,
                backend=self.name,
                credits_per_page=self.credits_per_page,
                confidence_method="function",
                description="Answers from a test function",
                # The test decides the answer, so every mode can be exercised through it.
                supports_multi_label=True,
                supports_vision=True,
                debias_methods=("permutations", "contextual"),
            )
            for name in self.model_names
        ]

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        self.calls.append(request)
        answer = self.answer(request)
        if isinstance(answer, ClassifyResult):
            return answer
        return ClassifyResult(scores=answer, confidence_method="function")
