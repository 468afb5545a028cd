"""`create_documents: true`: each segment becomes a processed document of its own.

Its pages (text, OCR flag, size) are copied from the parent, so it can be classified or routed
at once with no re-extraction. Its file is the parent's pages cut out with PyMuPDF (PDFs and
images), or its pages' text (text files); a segment that is the whole parent shares its file.
"""

import hashlib
from dataclasses import dataclass

import pymupdf
from anyio import to_thread
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.documents import service as documents
from backend.documents.extraction import open_pdf
from backend.documents.page_range import format_pages
from backend.documents.sniff import PDF, TEXT, FileKind
from backend.errors import ApiError
from backend.models import Document, Page, new_id, utcnow
from backend.state import AppState


@dataclass
class _File:
    storage_path: str
    content_type: str
    kind: str
    size: int
    sha256: str


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive page numbers as (first, last) runs: [1, 2, 5] -> [(1, 2), (5, 5)]."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def _cut_pdf(data: bytes, parent: Document, state: AppState, numbers: list[int]) -> bytes:
    """A PDF of the parent's pages `numbers` (1-based), in order."""
    kind = documents.kind_of(parent)
    with open_pdf(data, kind, documents.limits(state.settings)) as source, pymupdf.open() as out:
        for first, last in _runs(numbers):
            out.insert_pdf(source, from_page=first - 1, to_page=last - 1)
        return out.tobytes(garbage=3, deflate=True)


class SegmentWriter:
    """Writes segment documents of one parent; remembers the files it wrote so a failed
    request can remove them."""

    def __init__(self, session: AsyncSession, state: AppState, parent: Document) -> None:
        self.session, self.state, self.parent = session, state, parent
        self.written: list[str] = []
        self._data: bytes | None = None

    async def _parent_bytes(self) -> bytes | None:
        if self._data is None and self.parent.storage_path:
            try:
                self._data = await documents.read_file(self.state, self.parent)
            except ApiError:  # no readable file: segments keep their text only
                return None
        return self._data

    async def _file_for(self, child_id: str, pages: list[Page]) -> _File | None:
        numbers = [p.page_number for p in pages]
        try:
            parent_kind: FileKind | None = documents.kind_of(self.parent)
        except ApiError:  # no file of its own (itself a segment without one)
            parent_kind = None
        if numbers == list(range(1, self.parent.num_pages + 1)):
            parent = self.parent  # the whole document: share its file (its rendition if any)
            if parent.rendition_path and parent_kind is not None:
                return _File(
                    parent.rendition_path,
                    parent_kind.content_type,
                    parent_kind.kind,
                    parent.size_bytes,
                    parent.sha256,
                )
            return _File(
                parent.storage_path,
                parent.content_type,
                parent.kind,
                parent.size_bytes,
                parent.sha256,
            )
        if parent_kind is not None and parent_kind.kind == "text":
            data, kind = "\n\n".join(p.text for p in pages).encode(), TEXT
        else:
            source = await self._parent_bytes()
            if source is None:
                return None
            try:
                data = await to_thread.run_sync(_cut_pdf, source, self.parent, self.state, numbers)
            except ApiError:
                return None
            kind = PDF
        store = documents.store(self.state)
        path = await to_thread.run_sync(store.save, self.parent.account_id, child_id, data)
        self.written.append(path)
        return _File(
            path, kind.content_type, kind.kind, len(data), hashlib.sha256(data).hexdigest()
        )

    async def write(self, pages: list[Page]) -> str:
        """A processed document holding these pages of the parent; returns its id."""
        child_id = new_id()
        file = await self._file_for(child_id, pages)
        parent = self.parent
        child = Document(
            id=child_id,
            account_id=parent.account_id,
            filename=f"{parent.filename} (pages {format_pages([p.page_number for p in pages])})",
            content_type=file.content_type if file else parent.content_type,
            kind=file.kind if file else parent.kind,
            size_bytes=file.size if file else 0,
            sha256=file.sha256 if file else parent.sha256,
            storage_path=file.storage_path if file else "",
            num_pages=len(pages),
            status="processed",
            processed_at=utcnow(),
            parent_document_id=parent.id,
        )
        self.session.add(child)
        await self.session.flush()
        for number, page in enumerate(pages, start=1):
            self.session.add(
                Page(
                    document_id=child.id,
                    page_number=number,
                    text=page.text,
                    chars=page.chars,
                    ocr=page.ocr,
                    width=page.width,
                    height=page.height,
                )
            )
        await self.session.flush()
        return child.id

    async def discard(self) -> None:
        """Remove the files written so far (the request failed)."""
        store = documents.store(self.state)
        for path in self.written:
            await to_thread.run_sync(store.delete, path)
        self.written.clear()
