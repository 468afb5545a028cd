"""What an upload is, judged by its bytes (never by its name or declared content type)."""

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class FileKind:
    kind: str  # pdf | image | text | zip
    content_type: str
    pymupdf_type: str | None = None  # filetype hint for pymupdf.open


PDF = FileKind("pdf", "application/pdf", "pdf")
PNG = FileKind("image", "image/png", "png")
JPEG = FileKind("image", "image/jpeg", "jpeg")
TIFF = FileKind("image", "image/tiff", "tiff")
WEBP = FileKind("image", "image/webp", "webp")
ZIP = FileKind("zip", "application/zip")
TEXT = FileKind("text", "text/plain", "txt")

KINDS_BY_CONTENT_TYPE = {k.content_type: k for k in (PDF, PNG, JPEG, TIFF, WEBP, ZIP, TEXT)}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def sniff(data: bytes) -> FileKind | None:
    """The kind of file `data` is, or None when DocSift does not take it."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    # Some PDFs carry junk before the header; MuPDF reads them, so do we (checked after zip:
    # a zip whose first entry is a stored PDF also has "%PDF-" near its start).
    if b"%PDF-" in data[:1024]:
        return PDF
    if _looks_like_text(data):
        return TEXT
    return None


def _looks_like_text(data: bytes) -> bool:
    """Mostly printable characters once decoded (UTF-8, UTF-16 with a BOM, or a legacy 8-bit code)."""
    sample = data[:8192]
    if not sample.strip():
        return False
    if sample.startswith(_UTF16_BOMS):
        text = sample[: len(sample) // 2 * 2].decode("utf-16", errors="replace")
    elif b"\x00" in sample:
        return False
    else:
        try:
            text = sample.decode("utf-8")
        except UnicodeDecodeError as error:
            # A multi-byte character cut at the sample's end is still UTF-8; otherwise cp1252-ish.
            cut_at_end = error.start >= len(sample) - 4
            text = (
                sample[: error.start].decode() if cut_at_end else sample.decode("cp1252", "replace")
            )
    printable = sum(ch.isprintable() or ch in "\n\r\t\f" for ch in text)
    return printable / max(len(text), 1) > 0.95


def decode_text(data: bytes) -> str:
    """Text of a plain-text upload: UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252."""
    if data.startswith(_UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
