"""The server's limits, so a client (the console's uploader) can check a file before sending it."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from backend.deps import CurrentAccount, RequireKey, SettingsDep

router = APIRouter(tags=["models"])


class LimitsOut(BaseModel):
    max_upload_bytes: int = Field(description="Largest file (or zip) POST /v1/documents accepts")
    max_pages: int = Field(description="Most pages a document may have")
    max_zip_entries: int = Field(description="Most files a zip may hold")
    max_zip_uncompressed_bytes: int


@router.get("/limits", dependencies=[RequireKey()])
async def get_limits(_account: CurrentAccount, settings: SettingsDep) -> LimitsOut:
    """Show the upload and document limits this server enforces."""
    return LimitsOut(
        max_upload_bytes=settings.max_upload_bytes,
        max_pages=settings.max_pages,
        max_zip_entries=settings.max_zip_entries,
        max_zip_uncompressed_bytes=int(settings.max_zip_uncompressed_mb * 1024 * 1024),
    )
