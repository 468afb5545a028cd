"""The one interface every classification backend implements (SPEC §6).

A backend turns the text of some pages plus a label schema into a probability for every label.
`classify`, `split` and evaluations only ever talk to this interface, so they never know whether
an LLM, the embedded `local` model or a third party's plugin answered.

Third parties register a factory under the entry-point group `docsift.backends`:

    [project.entry-points."docsift.backends"]
    acme = "acme_docsift:AcmeBackend"

The factory is called with the Settings instance and returns a Backend.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LabelSpec:
    label: str
    description: str


@dataclass(frozen=True)
class LabelledText:
    """A labelled example's text (few-shot context for LLMs, training data for `local`)."""

    label: str
    text: str
    # The example's first page as a PNG, when the run sends images (input_mode image).
    image: bytes | None = None


@dataclass
class ClassifyRequest:
    model: str
    labels: list[LabelSpec]
    # Text of the selected pages, in order (page numbers in `page_numbers`).
    pages: list[str]
    page_numbers: list[int] = field(default_factory=list)
    instructions: str | None = None
    examples: list[LabelledText] = field(default_factory=list)
    # Identifies the labelled set a trainable backend may fit once and cache
    # (classifier id, version and a fingerprint of the examples); None for inline schemas.
    training_key: str | None = None
    # Modes (see backend/classification/spec.py); DocSift sends a mode only to a backend whose
    # ModelInfo says it supports it.
    # multi_label: `scores` hold an independent probability per label (not summing to 1).
    multi_label: bool = False
    input_mode: str = "text"  # text | image | text+image | auto
    # PNGs of the pages (by page number) to send as images: every page in image and text+image
    # modes, the pages without a text layer in auto; those pages' text is sent only in
    # text+image mode.
    images: dict[int, bytes] = field(default_factory=dict)
    debias: str = "none"  # none | permutations | contextual
    permutations: int = 3


@dataclass
class ClassifyResult:
    # Every label of the request, each in [0, 1], summing to 1 (multi_label: each independent).
    scores: dict[str, float]
    confidence_method: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return max(self.scores, key=lambda k: self.scores[k])


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    credits_per_page: int
    confidence_method: str
    description: str = ""
    trainable: bool = False
    # What the model can do beyond single-label text classification; a request for anything
    # else is refused with 400 before any work.
    supports_multi_label: bool = False
    supports_vision: bool = False
    debias_methods: tuple[str, ...] = ()
    # False when the server cannot use the model (e.g. no credential): listed, but refused.
    available: bool = True
    unavailable_reason: str | None = None
    # What each debias method costs beyond a plain classification, in words (for /v1/models).
    debias_costs: dict[str, str] = field(default_factory=dict)
    # Credits for a page sent as an image (None: credits_per_page).
    credits_per_image_page: int | None = None
    # The input mode used when neither the request nor the classifier version chooses one
    # (DOCSIFT_MODELS `input_mode`; image and text+image only on a model with supports_vision).
    default_input_mode: str = "text"

    @property
    def image_page_credits(self) -> int:
        return (
            self.credits_per_page
            if self.credits_per_image_page is None
            else (self.credits_per_image_page)
        )


class Backend(ABC):
    """A source of models. One instance per process, created in the app's lifespan."""

    name: str = "backend"

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """Models this backend serves, as listed by GET /v1/models."""

    @abstractmethod
    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        """Score every label of the request. Raise errors.ModelError when the model fails."""

    async def startup(self) -> None:  # noqa: B027 - optional hook
        """Warm caches or clients; called once when the app starts."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release clients; called once when the app stops."""
