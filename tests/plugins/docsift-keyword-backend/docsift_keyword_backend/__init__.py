"""A complete DocSift backend plugin in 30 lines: labels scored by words shared with the text."""

import math
import re

from backend.backends.base import Backend, ClassifyRequest, ClassifyResult, ModelInfo

WORD = re.compile(r"[a-z0-9]+")


class KeywordBackend(Backend):
    name = "keyword"

    def __init__(self, settings) -> None:  # noqa: ANN001 - DocSift passes its Settings
        self.settings = settings

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name="keyword-v1",
                backend=self.name,
                credits_per_page=2,
                confidence_method="keyword_softmax",
                description="Example plugin",
            )
        ]

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        words = set(WORD.findall(" ".join(request.pages).lower()))
        overlap = {
            spec.label: len(words & set(WORD.findall(f"{spec.label} {spec.description}".lower())))
            for spec in request.labels
        }
        exp = {label: math.exp(hits) for label, hits in overlap.items()}
        total = sum(exp.values())
        return ClassifyResult(
            scores={k: v / total for k, v in exp.items()}, confidence_method="keyword_softmax"
        )
