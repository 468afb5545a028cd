"""Page images for vision models: each page rendered once, kept beside the document.

A page is rendered to fit `PAGE_BOX` (see backend/backends/llm/images.py for why that box) and
stored as `<account>/derived/<document>/page-<n>.png`; later requests, whatever the model or the
detail they send it at, read the stored file.
"""

import pymupdf
from anyio import to_thread

from backend.backends.llm.images import MAX_PAGE_DPI, PAGE_BOX
from backend.documents import extraction
from backend.documents.sniff import FileKind
from backend.models import Document
from backend.state import AppState


def fitted_size(width_pt: float, height_pt: float) -> tuple[int, int]:
    """Pixels of a page of this size (points) rendered into PAGE_BOX at most MAX_PAGE_DPI."""
    return _size(width_pt, height_pt, _dpi(width_pt, height_pt))


def _dpi(width_pt: float, height_pt: float) -> float:
    short, long = sorted((max(width_pt, 1.0), max(height_pt, 1.0)))
    box_short, box_long = PAGE_BOX
    return min(MAX_PAGE_DPI, box_short * 72 / short, box_long * 72 / long)


def _size(width_pt: float, height_pt: float, dpi: float) -> tuple[int, int]:
    """The pixmap size MuPDF renders (its own rounding of the scaled page)."""
    scale = dpi / 72
    box = (pymupdf.Rect(0, 0, width_pt, height_pt) * pymupdf.Matrix(scale, scale)).irect
    return box.width, box.height


def image_path(document: Document, page: int) -> str:
    return f"{document.account_id}/derived/{document.id}/page-{page}.png"


def render(data: bytes, kind: FileKind, limits: extraction.Limits, pages: list[int]) -> list[bytes]:
    """PNGs of the 1-based `pages`, each fitted to PAGE_BOX."""
    if kind.kind == "text":  # typeset as the preview does, on a Letter page
        dpi = _dpi(612, 792)
        return [extraction.render_page(data, kind, limits, n, dpi) for n in pages]
    rendered = []
    with extraction.open_pdf(data, kind, limits) as doc:
        for n in pages:
            page = doc.load_page(n - 1)
            extraction._check_page_images(page, limits)
            scale = _dpi(page.rect.width, page.rect.height) / 72
            try:
                pixmap = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False)
            except Exception as error:  # a broken content stream
                from backend.errors import UnsupportedFile

                raise UnsupportedFile(f"Page {n} cannot be rendered: {error}.") from None
            rendered.append(pixmap.tobytes("png"))
    return rendered


async def page_images(state: AppState, document: Document, pages: list[int]) -> dict[int, bytes]:
    """The pages' images: stored ones read, missing ones rendered (in a thread) and stored."""
    from backend.documents.service import kind_of, limits, read_file, store

    files = store(state)
    found: dict[int, bytes] = {}
    missing = []
    for n in pages:
        try:
            found[n] = await to_thread.run_sync(files.read, image_path(document, n))
        except FileNotFoundError:
            missing.append(n)
    if missing:
        data = await read_file(state, document)
        pngs = await to_thread.run_sync(
            render, data, kind_of(document), limits(state.settings), missing
        )
        for n, png in zip(missing, pngs, strict=True):
            # FileStore.save writes `<account>/<name>` atomically; the name carries the prefix.
            await to_thread.run_sync(
                files.save, document.account_id, f"derived/{document.id}/page-{n}.png", png
            )
            found[n] = png
    return {n: found[n] for n in pages}
