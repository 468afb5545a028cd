"""Text out of documents: PyMuPDF's text layer, Tesseract OCR (through PyMuPDF) where a page has none.

Everything here is synchronous and CPU-bound; the service runs it off the event loop. OCR, the slow
step (seconds a page), runs once per page, pages in parallel in a process pool, and its text is
stored, so a classification never runs it again.
"""

import io
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

import pymupdf
from PIL import Image

from backend.documents.sniff import FileKind, decode_text
from backend.errors import PayloadTooLarge, UnsupportedFile

log = logging.getLogger(__name__)

TEXT_PAGE_CHARS = 3000
# Raise Pillow's own bomb guard to our limit so the clear error below is the one users see.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_image_pixels: int


@dataclass
class PageText:
    page: int  # 1-based
    text: str
    ocr: bool
    width: float | None = None
    height: float | None = None


def _image_frames(data: bytes, limits: Limits) -> int:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
    except Exception as error:  # Pillow raises many types for broken images
        raise UnsupportedFile(f"The image cannot be read: {error}.") from None
    if width * height > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; the limit is {limits.max_image_pixels:,} pixels."
        )
    return frames


def _as_png(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "PNG")
            return buffer.getvalue()
    except Exception as error:
        raise UnsupportedFile(f"The image cannot be read: {error}.") from None


def open_pdf(data: bytes, kind: FileKind, limits: Limits) -> pymupdf.Document:
    """The upload as a PDF document (images converted), validated against the limits."""
    if kind.kind == "image":
        frames = _image_frames(data, limits)
        if frames > limits.max_pages:
            raise PayloadTooLarge(f"The image has {frames} pages; the limit is {limits.max_pages}.")
        if kind.pymupdf_type == "webp":  # MuPDF has no WebP decoder: re-encode with Pillow
            data, kind = _as_png(data), FileKind("image", "image/png", "png")
        try:
            with pymupdf.open(stream=data, filetype=kind.pymupdf_type) as image_doc:
                pdf_bytes = image_doc.convert_to_pdf()
        except Exception as error:
            raise UnsupportedFile(f"The image cannot be read: {error}.") from None
        return pymupdf.open(stream=pdf_bytes, filetype="pdf")
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as error:
        raise UnsupportedFile(f"The PDF is corrupt or unreadable: {error}.") from None
    if doc.needs_pass:
        doc.close()
        raise UnsupportedFile("The PDF is encrypted with a password.")
    if doc.page_count == 0:
        doc.close()
        raise UnsupportedFile("The PDF has no pages.")
    if doc.page_count > limits.max_pages:
        count = doc.page_count
        doc.close()
        raise PayloadTooLarge(f"The document has {count} pages; the limit is {limits.max_pages}.")
    return doc


def count_pages(data: bytes, kind: FileKind, limits: Limits) -> int:
    if kind.kind == "text":
        return len(split_text(decode_text(data)))
    with open_pdf(data, kind, limits) as doc:
        return doc.page_count


def split_text(text: str, size: int = TEXT_PAGE_CHARS) -> list[str]:
    """Plain text cut into pages of about `size` characters, at line ends."""
    pages: list[str] = []
    current: list[str] = []
    length = 0
    for line in text.splitlines(keepends=True):
        if length + len(line) > size and current:
            pages.append("".join(current))
            current, length = [], 0
        current.append(line)
        length += len(line)
    if current or not pages:
        pages.append("".join(current))
    return pages


def ocr_page(pdf_bytes: bytes, index: int, dpi: int, language: str) -> str:
    """OCR one page (runs in a worker process)."""
    with pymupdf.open(stream=pdf_bytes, filetype="pdf") as doc:
        page = doc[index]
        textpage = page.get_textpage_ocr(dpi=dpi, full=True, language=language)
        return page.get_text(textpage=textpage)


def extract(
    data: bytes,
    kind: FileKind,
    limits: Limits,
    *,
    min_text_chars: int,
    ocr: bool,
    ocr_dpi: int,
    ocr_language: str,
    pool: Executor | None,
) -> list[PageText]:
    """Every page's text, OCR'd where the text layer has fewer than `min_text_chars` characters."""
    if kind.kind == "text":
        return [PageText(i + 1, t, False) for i, t in enumerate(split_text(decode_text(data)))]
    with open_pdf(data, kind, limits) as doc:
        pages: list[PageText] = []
        needs_ocr: list[int] = []
        for index, page in enumerate(doc):
            try:
                text = page.get_text()
            except Exception:  # a broken content stream: leave it to OCR
                text = ""
            pages.append(PageText(index + 1, text, False, page.rect.width, page.rect.height))
            if len(text.strip()) < min_text_chars:
                needs_ocr.append(index)
        if not (ocr and needs_ocr):
            return pages
        pdf_bytes = data if kind.kind == "pdf" else doc.tobytes()
    if pool is None:
        texts = [ocr_page(pdf_bytes, i, ocr_dpi, ocr_language) for i in needs_ocr]
    else:
        futures = [pool.submit(ocr_page, pdf_bytes, i, ocr_dpi, ocr_language) for i in needs_ocr]
        texts = [f.result() for f in futures]
    for index, text in zip(needs_ocr, texts, strict=True):
        if len(text.strip()) > len(pages[index].text.strip()):
            pages[index].text = text
        pages[index].ocr = True
    return pages


def render_page(data: bytes, kind: FileKind, limits: Limits, page: int, dpi: int) -> bytes:
    """A PNG preview of a 1-based page."""
    if kind.kind == "text":
        text = split_text(decode_text(data))[page - 1]
        with pymupdf.open() as doc:
            pdf_page = doc.new_page(width=612, height=792)
            pdf_page.insert_textbox(pymupdf.Rect(36, 36, 576, 756), text, fontsize=9)
            return pdf_page.get_pixmap(dpi=dpi).tobytes("png")
    with open_pdf(data, kind, limits) as doc:
        return doc[page - 1].get_pixmap(dpi=dpi).tobytes("png")


def pdf_of_pages(data: bytes, kind: FileKind, limits: Limits, first: int, last: int) -> bytes:
    """A new PDF holding pages first..last (1-based) of the document."""
    with open_pdf(data, kind, limits) as source, pymupdf.open() as out:
        out.insert_pdf(source, from_page=first - 1, to_page=last - 1)
        return out.tobytes()
