"""What an upload is, judged by its bytes (never by its name or declared content type)."""

import codecs
import io
import re
import zipfile
from dataclasses import dataclass

import olefile

from backend.documents.zipfiles import listed_entries


@dataclass(frozen=True)
class FileKind:
    # pdf | image | text | zip | office (converted by LibreOffice) | email | html
    kind: str
    content_type: str
    pymupdf_type: str | None = None  # filetype hint for pymupdf.open
    format: str = ""  # the short name people know it by: docx, eml, heic, ...


PDF = FileKind("pdf", "application/pdf", "pdf", "pdf")
PNG = FileKind("image", "image/png", "png", "png")
JPEG = FileKind("image", "image/jpeg", "jpeg", "jpeg")
TIFF = FileKind("image", "image/tiff", "tiff", "tiff")
WEBP = FileKind("image", "image/webp", "webp", "webp")
HEIC = FileKind("image", "image/heic", None, "heic")  # read through pillow-heif
ZIP = FileKind("zip", "application/zip", None, "zip")
TEXT = FileKind("text", "text/plain", "txt", "txt")
HTML = FileKind("html", "text/html", None, "html")
EML = FileKind("email", "message/rfc822", None, "eml")
MSG = FileKind("email", "application/vnd.ms-outlook", None, "msg")
_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
DOCX = FileKind("office", _OOXML + "wordprocessingml.document", None, "docx")
XLSX = FileKind("office", _OOXML + "spreadsheetml.sheet", None, "xlsx")
PPTX = FileKind("office", _OOXML + "presentationml.presentation", None, "pptx")
ODT = FileKind("office", _ODF + "text", None, "odt")
ODS = FileKind("office", _ODF + "spreadsheet", None, "ods")
ODP = FileKind("office", _ODF + "presentation", None, "odp")
RTF = FileKind("office", "application/rtf", None, "rtf")
DOC = FileKind("office", "application/msword", None, "doc")
XLS = FileKind("office", "application/vnd.ms-excel", None, "xls")
PPT = FileKind("office", "application/vnd.ms-powerpoint", None, "ppt")
# Refused with a clear reason rather than taken for something else: an OOXML file encrypted
# with a password is an OLE2 file holding `EncryptedPackage`; other zips with a content-types
# part (XPS, Visio) or an ODF mimetype (drawings, EPUB) are containers DocSift does not convert.
ENCRYPTED_OFFICE = FileKind("office", "application/x-encrypted-office", None, "encrypted")
OTHER_CONTAINER = FileKind("office", "application/x-unsupported-container", None, "container")

KINDS_BY_CONTENT_TYPE = {
    k.content_type: k
    for k in (
        PDF, PNG, JPEG, TIFF, WEBP, HEIC, ZIP, TEXT, HTML, EML, MSG,
        DOCX, XLSX, PPTX, ODT, ODS, ODP, RTF, DOC, XLS, PPT,
    )
}  # fmt: skip
MAX_PROBED_ENTRIES = 100_000
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_OOXML_MAIN_PARTS = {
    "word/document.xml": DOCX,
    "xl/workbook.xml": XLSX,
    "ppt/presentation.xml": PPTX,
}
_ODF_TYPES = {_ODF + "text": ODT, _ODF + "spreadsheet": ODS, _ODF + "presentation": ODP}
# Header fields of RFC 822/5322 messages; an upload is an e-mail when its first lines are header
# fields and at least two of these are among them.
_MAIL_FIELDS = {
    "from", "to", "cc", "subject", "date", "message-id", "mime-version", "received",
    "return-path", "reply-to", "delivered-to", "content-type", "x-mailer", "sender",
}  # fmt: skip
_HEADER_LINE = re.compile(rb"^([!-9;-~]+):[ \t]?.*$")
_HTML_START = re.compile(r"<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])")
_HTML_TAG = re.compile(r"<(div|table|p|br|span|td|tr|a|img|font|center|b|h[1-6])[\s/>]")


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
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return HEIC
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_container(data)
    if head.startswith(_OLE2):
        return _ole2_file(data)
    if head.startswith(b"{\\rtf"):
        return RTF
    # Some PDFs carry junk before the header; MuPDF reads them, so do we (checked after zip:
    # a zip whose first entry is a stored PDF also has "%PDF-" near its start).
    if b"%PDF-" in data[:1024]:
        return PDF
    if _looks_like_text(data):
        if _looks_like_mail(data):
            return EML
        if _looks_like_html(data):
            return HTML
        return TEXT
    return None


def _zip_container(data: bytes) -> FileKind:
    """A zip, unless it is an Office file: OOXML holds `[Content_Types].xml`, OpenDocument holds
    `mimetype` as its first entry. Those are converted whole, never unpacked as an archive."""
    listed = listed_entries(data)
    if listed is not None and listed > MAX_PROBED_ENTRIES:
        return ZIP  # no Office file has that many parts; the zip reader refuses it unparsed
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            if "[Content_Types].xml" in names:
                for part, kind in _OOXML_MAIN_PARTS.items():
                    if part in names:
                        return kind
                return OTHER_CONTAINER
            if infos and infos[0].filename == "mimetype" and infos[0].file_size < 200:
                mimetype = archive.read(infos[0]).decode("ascii", "replace").strip()
                return _ODF_TYPES.get(mimetype, OTHER_CONTAINER)
    except Exception:  # a broken directory: still tell a truncated Office file from a zip
        name = _first_local_name(data)
        if name == b"[Content_Types].xml" or name.startswith(b"word/"):
            return DOCX
        if name.startswith(b"xl/"):
            return XLSX
        if name.startswith(b"ppt/"):
            return PPTX
        if name == b"mimetype":
            return _ODF_TYPES.get(data[38:80].split(b"PK")[0].decode("ascii", "replace"), ODT)
    return ZIP


def _first_local_name(data: bytes) -> bytes:
    if len(data) < 30:
        return b""
    length = int.from_bytes(data[26:28], "little")
    return data[30 : 30 + length]


def _ole2_file(data: bytes) -> FileKind | None:
    """Legacy Office files and Outlook messages share the OLE2 compound format; their streams
    tell them apart."""
    try:
        with olefile.OleFileIO(data) as ole:
            streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=True)}
    except Exception:
        return None
    top = {name.split("/", 1)[0] for name in streams}
    if "EncryptedPackage" in top:
        return ENCRYPTED_OFFICE
    if "__properties_version1.0" in top or any(n.startswith("__substg1.0_") for n in top):
        return MSG
    if "WordDocument" in top:
        return DOC
    if "Workbook" in top or "Book" in top:
        return XLS
    if "PowerPoint Document" in top:
        return PPT
    return None


def _looks_like_mail(data: bytes) -> bool:
    """The upload starts with RFC 822 header fields (continuation lines allowed), ended by a
    blank line, two or more of them fields every e-mail has."""
    known = 0
    for number, line in enumerate(data[:16384].splitlines()):
        if not line.strip():
            return number > 0 and known >= 2
        if line[:1] in (b" ", b"\t") and number > 0:
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        known += match.group(1).decode("ascii").lower() in _MAIL_FIELDS
    return known >= 2


def _looks_like_html(data: bytes) -> bool:
    """Markup: an HTML document's opening tags, or a fragment (an e-mail body) that starts with
    a tag and uses several HTML ones."""
    sample = decode_text(data[:8192]).lstrip("\ufeff \t\r\n").lower()
    if sample.startswith("<?xml"):
        sample = sample[sample.find("?>") + 2 :].lstrip()
    while sample.startswith("<!--"):  # comments ("saved from url=...") before the doctype
        end = sample.find("-->")
        sample = sample[end + 3 :].lstrip() if end >= 0 else ""
    if not sample.startswith("<"):
        return False
    return bool(_HTML_START.search(sample[:4096])) or len(_HTML_TAG.findall(sample)) >= 3


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
