"""Models this server offers."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.backends.base import ModelInfo
from backend.deps import BackendsDep, CurrentAccount, RequireKey, SettingsDep

router = APIRouter(tags=["models"])


class ModelOut(BaseModel):
    name: str
    backend: str
    credits_per_page: int
    confidence_method: str = Field(
        description="How this model's next answer will be scored: logprobs, verbalized (a JSON "
        "distribution), sampling, or the local model's own (README, Confidence)"
    )
    trainable: bool
    description: str
    available: bool = Field(description="False when this server cannot use the model")
    unavailable_reason: str | None = Field(
        default=None, description="Why not, e.g. a missing credential"
    )
    supports_multi_label: bool
    debias_methods: list[str]
    debias_costs: dict[str, str] = Field(
        description="What each debias method costs beyond a plain classification"
    )
    supports_vision: bool = Field(
        default=False, description="Takes page images (input_mode image, text+image, auto)"
    )
    credits_per_image_page: int | None = Field(
        default=None, description="Credits for a page sent as an image (vision models only)"
    )
    default_input_mode: str = Field(
        default="text",
        description="The input_mode used when neither the request nor the classifier version "
        "sets one (DOCSIFT_MODELS input_mode)",
    )


class ModelsOut(BaseModel):
    models: list[ModelOut]
    default_model: str


def _current(backends: BackendsDep) -> list[ModelInfo]:
    """Each backend's models as they are now (a confidence method can change at run time);
    the registry refuses a name served twice, so each name appears once."""
    seen: dict[str, ModelInfo] = {}
    for backend in backends.backends:
        for info in backend.models():
            seen.setdefault(info.name, info)
    return list(seen.values())


@router.get("/models", dependencies=[RequireKey()])
async def list_models(
    _account: CurrentAccount, backends: BackendsDep, settings: SettingsDep
) -> ModelsOut:
    """List the models this server offers: credits per page, confidence method, whether each is
    usable here, its modes and what debiasing costs."""
    return ModelsOut(
        models=[
            ModelOut(
                name=m.name,
                backend=m.backend,
                credits_per_page=m.credits_per_page,
                confidence_method=m.confidence_method,
                trainable=m.trainable,
                description=m.description,
                available=m.available,
                unavailable_reason=m.unavailable_reason,
                supports_multi_label=m.supports_multi_label,
                debias_methods=list(m.debias_methods),
                debias_costs=m.debias_costs,
                supports_vision=m.supports_vision,
                credits_per_image_page=m.image_page_credits if m.supports_vision else None,
                default_input_mode=m.default_input_mode,
            )
            for m in _current(backends)
        ],
        default_model=settings.resolved_default_model,
    )
