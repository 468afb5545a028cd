"""Models this server offers."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.deps import BackendsDep, CurrentAccount, SettingsDep

router = APIRouter(tags=["models"])


class ModelOut(BaseModel):
    name: str
    backend: str
    credits_per_page: int
    confidence_method: str
    trainable: bool
    description: str
    supports_vision: bool = Field(
        default=False, description="Takes page images (input_mode image, text+image, auto)"
    )
    credits_per_image_page: int | None = Field(
        default=None, description="Credits for a page sent as an image (vision models only)"
    )


class ModelsOut(BaseModel):
    models: list[ModelOut]
    default_model: str


@router.get("/models")
async def list_models(
    _account: CurrentAccount, backends: BackendsDep, settings: SettingsDep
) -> ModelsOut:
    """List the models this server offers, with credits per page and confidence method."""
    return ModelsOut(
        models=[
            ModelOut(
                name=m.name,
                backend=m.backend,
                credits_per_page=m.credits_per_page,
                confidence_method=m.confidence_method,
                trainable=m.trainable,
                description=m.description,
                supports_vision=m.supports_vision,
                credits_per_image_page=m.image_page_credits if m.supports_vision else None,
            )
            for m in backends.models()
        ],
        default_model=settings.resolved_default_model,
    )
