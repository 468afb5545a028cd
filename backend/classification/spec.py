"""What decides a classification's result, resolved once and carried whole.

`/v1/classify`, classifier runs, batches, split and evaluations all build one `RunSpec` (labels,
model, page range, instructions, examples, calibration, modes) and hand it down unchanged, so a
new mode is one field here rather than a keyword argument threaded through every caller.

`Modes` are the request-level switches (multi-label, input mode, debiasing). They are validated
data: stored as JSON on classifier versions, batches, evaluations and results, and overridable
per request (`ModeFields`: a field left out inherits the classifier version's value).

The input mode alone has a default that depends on the model (DOCSIFT_MODELS `input_mode`), so
it is resolved in one place, `with_model_default`: the request's, else the classifier version's
(an explicit `text` included), else the model's default, else text. A version keeps an input
mode it chose even when that is `text` (`Modes.stored`); a run's rows (results, batches,
evaluations) hold the mode resolved for it, read back with `Modes.frozen`.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.backends.base import LabelledText, LabelSpec, ModelInfo
from backend.backends.llm.confidence import round_distribution
from backend.classifiers.examples import most_similar
from backend.errors import InvalidRequest
from backend.evaluation.metrics import apply_temperature

if TYPE_CHECKING:
    from backend.state import AppState

InputMode = Literal["text", "image", "text+image", "auto"]
Debias = Literal["none", "permutations", "contextual"]


class Modes(BaseModel):
    """How a model is asked, beyond the labels: the same for every document of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    multi_label: bool = Field(
        default=False,
        description="An independent probability per label; `classifications` lists every label "
        "over its threshold",
    )
    input_mode: InputMode = Field(
        default="text", description="What the model reads: the pages' text, their images, or both"
    )
    debias: Debias = Field(
        default="none", description="Correct a model's preference for some label codes"
    )
    permutations: int = Field(
        default=3, ge=2, le=8, description="Label orders averaged by `debias: permutations`"
    )

    def stored(self) -> dict[str, object] | None:
        """The JSON kept on rows: what differs from the defaults, plus an input mode that was
        chosen (an explicit text must outrank a model whose default is image); None when
        nothing is. Rows written before kept no explicit text: they read as not chosen."""
        data = self.model_dump(exclude_defaults=True)
        if "input_mode" in self.model_fields_set:
            data["input_mode"] = self.input_mode
        return data or None

    @classmethod
    def from_stored(cls, data: dict[str, object] | None) -> "Modes":
        """A classifier version's modes: an input mode it did not store is not chosen (the
        model's default applies, see `with_model_default`)."""
        return cls.model_validate(data or {})

    @classmethod
    def frozen(cls, data: dict[str, object] | None) -> "Modes":
        """A run's modes (result, batch, evaluation), resolved before they were stored: a
        missing input mode is text, as it always meant, and is not resolved again."""
        return cls.model_validate({"input_mode": "text", **(data or {})})


DEFAULT_MODES = Modes()


class ModeFields(BaseModel):
    """The request fields that override `Modes` (None: the classifier version's, else default)."""

    multi_label: bool | None = Field(
        default=None,
        strict=True,
        description="Score every label independently and return `classifications`, all labels "
        "over their threshold (default false)",
    )
    input_mode: InputMode | None = Field(
        default=None,
        description="text, image, text+image, or auto (default: the classifier version's, else "
        "the model's default input mode from GET /v1/models, else text)",
    )
    debias: Debias | None = Field(
        default=None, description="none (default), permutations, or contextual"
    )
    permutations: int | None = Field(
        default=None,
        strict=True,
        ge=2,
        le=8,
        description="Label orders for `debias: permutations` (default 3)",
    )

    def modes_over(self, base: Modes = DEFAULT_MODES) -> Modes:
        """`base` with the fields this request sets."""
        chosen = {name: getattr(self, name) for name in ModeFields.model_fields}
        return base.model_copy(update={k: v for k, v in chosen.items() if v is not None})

    @classmethod
    def exactly(cls, modes: Modes) -> "ModeFields":
        """Overrides that reproduce `modes` whatever the base (for settings frozen on a row)."""
        return cls.model_validate(modes.model_dump())


def with_model_default(modes: Modes, info: ModelInfo) -> Modes:
    """`modes` with the input mode resolved for the model: the one chosen (by the request, else
    the classifier version), else the model's default (text unless configured). The one place
    this order lives: every path that builds a RunSpec calls it."""
    if "input_mode" in modes.model_fields_set or info.default_input_mode == modes.input_mode:
        return modes
    return modes.model_copy(update={"input_mode": info.default_input_mode})


def check_modes(modes: Modes, info: ModelInfo) -> None:
    """Refuse (400) a mode the model cannot serve, or a model this server cannot use, before any
    work or charge."""
    if not info.available:
        raise InvalidRequest(f"Model '{info.name}' is unavailable: {info.unavailable_reason}.")
    if modes.multi_label and not info.supports_multi_label:
        raise InvalidRequest(f"Model '{info.name}' does not support multi_label.")
    if modes.input_mode in ("image", "text+image") and not info.supports_vision:
        raise InvalidRequest(
            f"Model '{info.name}' reads text only: input_mode '{modes.input_mode}' needs a model "
            "that takes images."
        )
    if modes.debias != "none" and modes.debias not in info.debias_methods:
        raise InvalidRequest(f"Model '{info.name}' does not support debias '{modes.debias}'.")


@dataclass(frozen=True)
class ExampleDoc:
    """A labelled example with the document it came from (never its own few-shot example)."""

    document_id: str
    example: LabelledText


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides the result of classifying one document (or a split's pages)."""

    labels: list[LabelSpec]
    model: str
    info: ModelInfo
    page_range: str | None = None
    instructions: str | None = None
    modes: Modes = DEFAULT_MODES
    # The classifier's examples whose label the version still has.
    examples: Sequence[ExampleDoc] = ()
    examples_hash: str | None = None
    classifier_id: str | None = None
    classifier_version: int | None = None
    # The classifier version's enabled calibration for this model.
    temperature: float | None = None
    # Results under this top confidence await human review (backend/reviews); None: not reviewed.
    review_threshold: float | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def estimated_page_credits(self) -> int:
        """Credits a page is expected to cost: the image rate when every page goes as an image
        (`auto` knows only per page, when the text layer is read: the text rate)."""
        if self.modes.input_mode in ("image", "text+image"):
            return self.info.image_page_credits
        return self.info.credits_per_page

    @property
    def training_key(self) -> str | None:
        """What a trainable backend caches its fitted model under: "classifier:version:hash"."""
        if not self.info.trainable or not self.examples or self.classifier_id is None:
            return None
        return f"{self.classifier_id}:{self.classifier_version}:{self.examples_hash}"

    def examples_for(self, text: str, *, document_id: str | None = None) -> list[LabelledText]:
        """Training data for a trainable model (all of it); for an LLM, the few examples most
        similar to `text`, never the document's own."""
        if self.info.trainable:
            return [e.example for e in self.examples]
        candidates = [e.example for e in self.examples if e.document_id != document_id]
        return most_similar(text, candidates) if candidates else []

    def calibrated(self, scores: dict[str, float]) -> dict[str, float]:
        """The scores with the version's enabled temperature applied (a distribution only)."""
        if self.temperature is None or self.modes.multi_label:
            return scores
        return round_distribution(apply_temperature(scores, self.temperature))


def inline_spec(
    state: "AppState",
    *,
    labels: list[LabelSpec],
    model: str | None,
    page_range: str | None = None,
    instructions: str | None = None,
    modes: Modes = DEFAULT_MODES,
) -> RunSpec:
    """A spec for an inline schema: the model resolved (400 for an unknown one), its default
    input mode applied and the modes checked against it, before any work or charge."""
    model = model or state.settings.resolved_default_model
    _, info = state.backends.resolve(model)
    modes = with_model_default(modes, info)
    check_modes(modes, info)
    return RunSpec(
        labels=labels,
        model=model,
        info=info,
        page_range=page_range,
        instructions=instructions,
        modes=modes,
        review_threshold=state.settings.review_threshold,
    )
