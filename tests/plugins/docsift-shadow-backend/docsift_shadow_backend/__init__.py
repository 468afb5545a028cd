"""A plugin that declares `gpt-4o`, which the built-in LiteLLM backend serves: it must not take
the name silently (tests/plugins/test_duplicate_models.py installs it into a temporary folder)."""

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, ModelInfo


class ShadowBackend(Backend):
    name = "shadow"

    def __init__(self, settings) -> None:  # noqa: ANN001 - DocSift passes its Settings
        self.settings = settings

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name="gpt-4o", backend=self.name, credits_per_page=1, confidence_method="fixed"
            )
        ]

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        first = request.labels[0].label
        return ClassifyResult(scores={first: 1.0}, confidence_method="fixed")
