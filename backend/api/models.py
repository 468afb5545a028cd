"""Models this server offers."""

from fastapi import APIRouter
from pydantic import BaseModel

from backend.deps import BackendsDep, CurrentAccount, RequireKey, SettingsDep

router = APIRouter(tags=["models"])


class ModelOut(BaseModel):
    name: str
    backend: str
    credits_per_page: int
    confidence_method: str
    trainable: bool
    description: str


class ModelsOut(BaseModel):
    models: list[ModelOut]
    default_model: str


@router.get("/models", dependencies=[RequireKey()])
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
            )
            for m in backends.models()
        ],
        default_model=settings.resolved_default_model,
    )
