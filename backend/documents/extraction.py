"""Documents as pages: validation (corrupt, encrypted, page and pixel limits), PyMuPDF's text
layer, the pages that need OCR, previews.

Everything here is synchronous and CPU-bound. The service calls it in a thread: PyMuPDF holds the
GIL, but a page's text takes milliseconds (at most ~50 ms on docs-v1), so the event loop keeps
turning between calls. OCR, seconds a page, is not done here but handed out as `OcrJob`s.
"""

import html
import logging
import re
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field

import pymupdf

from backend.documents import ocr as _ocr
from backend.documents.images import check_image, image_to_pdf
from backend.documents.ocr import capped_dpi
from backend.documents.sniff import FileKind, decode_text
from backend.errors import PayloadTooLarge, UnsupportedFile

log = logging.getLogger(__name__)

TEXT_PAGE_CHARS = 3000
# Rendering caps (ocr.MAX_PIXELS for OCR): a preview needs far less than OCR.
OCR_MAX_PIXELS = _ocr.MAX_PIXELS
PREVIEW_MAX_PIXELS = 6_000_000
_TEXT_PREVIEW_CSS = "* {font-family: sans-serif; font-size: 10px; white-space: pre-wrap;}"
# What a font without a Unicode map yields: its glyph codes as control characters, U+FFFD or
# private-use code points. Such a text layer exists but says nothing, like a scan's.
_UNREADABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ue000-\uf8ff]")
UNREADABLE_SHARE = 0.2  # of a page's characters, above which the page is read by OCR


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_image_pixels: int


@dataclass
class PageText:
    page: int  # 1-based
    text: str
    ocr: bool = False
    width: float | None = None
    height: float | None = None
    ocr_pending: bool = False  # no text layer, OCR left for a text request (ocr=on_demand)

    @property
    def chars(self) -> int:
        return count_chars(self.text)


@dataclass(frozen=True)
class OcrJob:
    page: int  # 1-based
    pdf: bytes  # a one-page PDF: workers get only what they read
    dpi: int


@dataclass
class TextLayer:
    pages: list[PageText]
    ocr_jobs: list[OcrJob] = field(default_factory=list)


def count_chars(text: str) -> int:
    """Characters of a page's text, surrounding whitespace left out."""
    return len(text.strip())


def readable_chars(text: str) -> int:
    """Characters of a page's text that say something (not glyph codes of an unmapped font)."""
    stripped = text.strip()
    return len(stripped) - len(_UNREADABLE.findall(stripped))


def needs_ocr(text: str, min_text_chars: int) -> bool:
    """A page has too little text, or a text layer mostly of unmapped glyph codes."""
    readable = readable_chars(text)
    return readable < min_text_chars or readable < (1 - UNREADABLE_SHARE) * count_chars(text)


@contextmanager
def open_pdf(data: bytes, kind: FileKind, limits: Limits) -> Iterator[pymupdf.Document]:
    """The upload as a PDF (images converted in memory), refused when corrupt, encrypted or
    over a limit."""
    if kind.kind == "image":
        check_image(data, max_pixels=limits.max_image_pixels, max_pages=limits.max_pages)
        data = image_to_pdf(data, kind)
    elif kind.kind != "pdf":
        raise UnsupportedFile(f"A {kind.kind} file has no PDF pages.")
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as error:
        raise UnsupportedFile(f"The PDF is corrupt or unreadable: {error}.") from None
    with doc:
        if doc.needs_pass:
            raise UnsupportedFile("The PDF is encrypted with a password.")
        if doc.page_count == 0:
            raise UnsupportedFile("The PDF has no pages (it may be corrupt or truncated).")
        if doc.page_count > limits.max_pages:
            raise PayloadTooLarge(
                f"The document has {doc.page_count} pages; the limit is {limits.max_pages}."
            )
        yield doc


def count_pages(data: bytes, kind: FileKind, limits: Limits) -> int:
    """Validate the document and count its pages (no text read)."""
    if kind.kind == "text":
        return len(_text_pages(data, limits))
    with open_pdf(data, kind, limits) as doc:
        return doc.page_count


def read_text_layer(
    data: bytes, kind: FileKind, limits: Limits, *, min_text_chars: int, ocr_dpi: int | None
) -> TextLayer:
    """Every page's text layer, and an OCR job for each page with fewer than `min_text_chars`
    readable characters or an unreadable text layer (none when `ocr_dpi` is None: OCR off or
    unavailable)."""
    if kind.kind == "text":
        return TextLayer([PageText(i + 1, t) for i, t in enumerate(_text_pages(data, limits))])
    layer = TextLayer([])
    with open_pdf(data, kind, limits) as doc:
        for index in range(doc.page_count):
            page = _load_page(doc, index)
            try:
                text = page.get_text()
            except Exception:  # a broken content stream: OCR may still read the page
                text = ""
            layer.pages.append(PageText(index + 1, text, False, page.rect.width, page.rect.height))
            if ocr_dpi is not None and needs_ocr(text, min_text_chars):
                _check_page_images(page, limits)
                dpi = capped_dpi(page.rect, ocr_dpi, OCR_MAX_PIXELS)
                layer.ocr_jobs.append(OcrJob(index + 1, _single_page_pdf(doc, index), dpi))
    return layer


def merge_ocr(layer: TextLayer, texts: list[str | None]) -> list[PageText]:
    """The pages with each OCR job's text (None: OCR failed there, the text layer stays)."""
    for job, text in zip(layer.ocr_jobs, texts, strict=True):
        page = layer.pages[job.page - 1]
        if text is None:
            continue
        page.ocr = True
        # Full-page OCR reads the text layer too; keep the text layer if OCR found less.
        if readable_chars(text) >= readable_chars(page.text):
            page.text = text
    return layer.pages


def extract(
    data: bytes,
    kind: FileKind,
    limits: Limits,
    *,
    min_text_chars: int,
    ocr: bool,
    ocr_dpi: int,
    ocr_language: str,
    pool: Executor | None = None,
) -> list[PageText]:
    """Every page's text, OCR included, synchronously: for scripts and benchmarks (the service
    uses its async twin, which never blocks the event loop)."""
    tessdata = _ocr.tessdata_for(ocr_language) if ocr else None
    layer = read_text_layer(
        data, kind, limits, min_text_chars=min_text_chars, ocr_dpi=ocr_dpi if tessdata else None
    )
    texts: list[str | None] = []
    if pool is not None:
        futures = [
            pool.submit(_ocr.ocr_page, job.pdf, job.dpi, ocr_language, tessdata)
            for job in layer.ocr_jobs
        ]
    for index, job in enumerate(layer.ocr_jobs):
        try:
            if pool is not None:
                texts.append(futures[index].result())
            else:
                texts.append(_ocr.ocr_page_inline(job.pdf, job.dpi, ocr_language, str(tessdata)))
        except Exception as error:
            log.warning("OCR failed on page %d: %s", job.page, error)
            texts.append(None)
    return merge_ocr(layer, texts)


def _load_page(doc: pymupdf.Document, index: int) -> pymupdf.Page:
    try:
        return doc.load_page(index)
    except Exception as error:
        raise UnsupportedFile(f"Page {index + 1} of the PDF is corrupt: {error}.") from None


def _single_page_pdf(doc: pymupdf.Document, index: int) -> bytes:
    with pymupdf.open() as out:
        out.insert_pdf(doc, from_page=index, to_page=index)
        return out.tobytes(garbage=1)


def _check_page_images(page: pymupdf.Page, limits: Limits) -> None:
    """Refuse a page whose embedded image is a pixel bomb: rendering decodes it whole."""
    for image in page.get_images(full=True):
        width, height = image[2], image[3]
        if width * height > limits.max_image_pixels:
            raise PayloadTooLarge(
                f"Page {page.number + 1} holds a {width}x{height} pixel image; "
                f"the limit is {limits.max_image_pixels:,} pixels."
            )


def _text_pages(data: bytes, limits: Limits) -> list[str]:
    return text_pages(decode_text(data), limits)


def text_pages(text: str, limits: Limits) -> list[str]:
    """Text cut into pages of ~TEXT_PAGE_CHARS characters, within the page limit."""
    pages = split_text(text)
    if len(pages) > limits.max_pages:
        raise PayloadTooLarge(
            f"The text makes {len(pages)} pages of ~{TEXT_PAGE_CHARS} characters; "
            f"the limit is {limits.max_pages}."
        )
    return pages


def split_text(text: str, size: int = TEXT_PAGE_CHARS) -> list[str]:
    """Plain text cut into pages of at most `size` characters, at line ends where possible."""
    text = text.replace("\x00", "")
    pages: list[str] = []
    current: list[str] = []
    length = 0
    for line in text.splitlines(keepends=True):
        # A line longer than a page (minified data) is cut into page-sized pieces.
        for start in range(0, len(line), size):
            piece = line[start : start + size]
            if length + len(piece) > size and current:
                pages.append("".join(current))
                current, length = [], 0
            current.append(piece)
            length += len(piece)
    if current or not pages:
        pages.append("".join(current))
    return pages


def render_page(data: bytes, kind: FileKind, limits: Limits, page: int, dpi: int) -> bytes:
    """A PNG preview of a 1-based page; a text document's page is typeset first."""
    if kind.kind == "text":
        text = _text_pages(data, limits)[page - 1]
        with pymupdf.open() as doc:
            pdf_page = doc.new_page(width=612, height=792)
            # Shrinks the font until the whole page of text fits the box.
            pdf_page.insert_htmlbox(
                pymupdf.Rect(36, 36, 576, 756), html.escape(text), css=_TEXT_PREVIEW_CSS
            )
            return _png(pdf_page, dpi)
    with open_pdf(data, kind, limits) as doc:
        pdf_page = _load_page(doc, page - 1)
        _check_page_images(pdf_page, limits)
        return _png(pdf_page, dpi)


def _png(page: pymupdf.Page, dpi: int) -> bytes:
    try:
        pixmap = page.get_pixmap(dpi=capped_dpi(page.rect, dpi, PREVIEW_MAX_PIXELS))
        return pixmap.tobytes("png")
    except Exception as error:  # a broken content stream
        raise UnsupportedFile(f"Page {page.number + 1} cannot be rendered: {error}.") from None


def pdf_of_pages(data: bytes, kind: FileKind, limits: Limits, first: int, last: int) -> bytes:
    """A new PDF holding pages first..last (1-based) of the document."""
    with open_pdf(data, kind, limits) as source, pymupdf.open() as out:
        out.insert_pdf(source, from_page=first - 1, to_page=last - 1)
        return out.tobytes()
