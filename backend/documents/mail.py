"""E-mails (`.eml` MIME through Python's `email` package, Outlook `.msg` through extract-msg) as
a readable body and a list of attachments.

The body is what a person reads first: From, To, Cc, Date, Subject, the attachments' names, then
the text (the plain-text alternative, else the HTML one as text). Every attached or inline part
is an attachment, except the body's own alternatives and inline images smaller than
`min_inline_image_bytes` (logos, signatures, tracking pixels).
"""

import io
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import extract_msg
from extract_msg.enums import AttachmentType

from backend.documents.webtext import html_text, squeeze
from backend.errors import UnsupportedFile

log = logging.getLogger(__name__)

_URL = re.compile(r"https?://\S+")
URL_SHARE = 0.3
_EXTENSIONS = {
    "application/pdf": ".pdf",
    "message/rfc822": ".eml",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/tiff": ".tif",
}


@dataclass
class Attachment:
    filename: str
    data: bytes
    content_type: str


@dataclass
class ParsedMail:
    headers: dict[str, str]  # From, To, Cc, Date, Subject (those present)
    body: str
    attachments: list[Attachment] = field(default_factory=list)

    def text(self) -> str:
        """The readable first page(s): headers, attachment names, then the body."""
        lines = [f"{name}: {value}" for name, value in self.headers.items() if value]
        if self.attachments:
            lines.append("Attachments: " + ", ".join(a.filename for a in self.attachments))
        return "\n".join(lines) + "\n\n" + self.body.strip()


def parse(data: bytes, fmt: str, *, min_inline_image_bytes: int) -> ParsedMail:
    """Parse an `eml` or `msg` upload; UnsupportedFile when it cannot be read."""
    try:
        if fmt == "msg":
            return _parse_msg(data, min_inline_image_bytes)
        return _parse_eml(data, min_inline_image_bytes)
    except UnsupportedFile:
        raise
    except Exception as error:
        raise UnsupportedFile(f"The e-mail cannot be read: {error}.") from None


def readable_body(plain: str, html: str) -> str:
    """The plain-text alternative, unless it is mostly web addresses (marketing mail whose
    plain part lists its links) or empty: then the HTML one as text."""
    if not plain:
        return html
    in_links = sum(len(url) for url in _URL.findall(plain))
    return html if html and in_links > URL_SHARE * len(plain) else plain


# --- MIME (.eml) -------------------------------------------------------------------------------


def _parse_eml(data: bytes, min_inline: int) -> ParsedMail:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    headers = {name: _header(message, name) for name in ("From", "To", "Cc", "Date", "Subject")}
    plain_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    body = readable_body(
        _part_text(plain_part) if plain_part is not None else "",
        _part_text(html_part) if html_part is not None else "",
    )
    attachments: list[Attachment] = []
    for part in _leaves(message):
        if part is plain_part or part is html_part or _is_body_alternative(part):
            continue
        attachment = _mime_attachment(part, len(attachments) + 1)
        if attachment is None:
            continue
        if _small_inline_image(part, attachment, min_inline):
            continue
        attachments.append(attachment)
    return ParsedMail(headers, body, attachments)


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, "") or "").strip()
    except Exception:  # a malformed header the default policy cannot fold
        return ""


def _leaves(part: EmailMessage) -> list[EmailMessage]:
    """The non-multipart parts, in order; an attached e-mail (message/rfc822) is one leaf, not
    opened here (it becomes a child document of its own)."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        leaves: list[EmailMessage] = []
        for sub in part.iter_parts():
            leaves.extend(_leaves(sub))  # type: ignore[arg-type]
        return leaves
    return [part]


def _is_body_alternative(part: EmailMessage) -> bool:
    """A text/plain or text/html part with no name and not marked as an attachment: the body
    (or its other alternative), not a document of its own."""
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_filename() is None
        and part.get_content_disposition() != "attachment"
    )


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except Exception:
        raw = part.get_payload(decode=True) or b""
        content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if not isinstance(content, str):
        return ""
    return html_text(content) if part.get_content_type() == "text/html" else squeeze(content)


def _mime_attachment(part: EmailMessage, number: int) -> Attachment | None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else None
        if message is None:
            return None
        data = message.as_bytes(policy=policy.default.clone(linesep="\r\n"))
        subject = str(message.get("Subject", "") or "").strip()
        name = part.get_filename() or f"{subject or f'message-{number}'}.eml"
        return Attachment(name, data, content_type)
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    name = part.get_filename() or f"attachment-{number}{_EXTENSIONS.get(content_type, '.bin')}"
    return Attachment(name, payload, content_type)


def _small_inline_image(part: EmailMessage, attachment: Attachment, min_inline: int) -> bool:
    inline = part.get_content_disposition() != "attachment"
    return (
        attachment.content_type.startswith("image/")
        and inline
        and len(attachment.data) < min_inline
    )


# --- Outlook (.msg) ----------------------------------------------------------------------------


def _parse_msg(data: bytes, min_inline: int) -> ParsedMail:
    message = extract_msg.openMsg(data, delayAttachments=False)
    try:
        headers = {
            "From": str(message.sender or ""),
            "To": str(message.to or ""),
            "Cc": str(message.cc or ""),
            "Date": str(message.date or ""),
            "Subject": str(message.subject or ""),
        }
        body = readable_body(
            squeeze(message.body or ""), html_text(message.htmlBody) if message.htmlBody else ""
        )
        attachments: list[Attachment] = []
        for number, item in enumerate(message.attachments, start=1):
            attachment = _msg_attachment(item, number)
            if attachment is None:
                continue
            inline = bool(getattr(item, "hidden", False) or getattr(item, "contentId", None))
            is_image = attachment.content_type.startswith("image/")
            if is_image and inline and len(attachment.data) < min_inline:
                continue
            attachments.append(attachment)
        return ParsedMail(headers, body, attachments)
    finally:
        message.close()


def _msg_attachment(item: object, number: int) -> Attachment | None:
    kind = getattr(item, "type", None)
    name = (
        getattr(item, "longFilename", None)
        or getattr(item, "shortFilename", None)
        or getattr(item, "name", None)
    )
    content = getattr(item, "data", None)
    if kind == AttachmentType.MSG and content is not None:
        # An Outlook message attached to another: exported whole, it becomes a child e-mail.
        subject = str(getattr(content, "subject", "") or "").strip()
        buffer = io.BytesIO(content.exportBytes())
        return Attachment(name or f"{subject or f'message-{number}'}.msg", buffer.getvalue(), "")
    if not isinstance(content, bytes):
        return None  # a link to a web resource or an OLE object without data
    mimetype = str(getattr(item, "mimetype", "") or "")
    return Attachment(
        name or f"attachment-{number}{_EXTENSIONS.get(mimetype, '.bin')}", content, mimetype
    )
