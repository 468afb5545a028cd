"""HTML as readable text: inscriptis lays out blocks and tables as a browser would in text mode
(scripts, styles and tags gone); nothing a page references (images, style sheets, frames) is ever
fetched. Used for HTML uploads and for e-mails' HTML bodies.

MuPDF's HTML renderer was tried for rendered pages and dropped: on real e-mail receipts and
saved banking pages (fixed widths, nested tables) it clipped most of the text.
"""

import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from backend.documents.sniff import decode_text

_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_images=False, display_links=False)
_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_WIDE_GAP = re.compile(r"[ \t\u00a0]{3,}")


def html_text(markup: str | bytes) -> str:
    """The readable text of an HTML document, table columns kept apart, padding squeezed."""
    if isinstance(markup, bytes):
        markup = _decode(markup)
    try:
        text = get_text(markup, _CONFIG)
    except Exception:  # inscriptis (lxml) gave up on the markup: keep what its tags enclose
        text = re.sub(r"<[^>]*>", " ", markup)
    return squeeze(text)


def squeeze(text: str) -> str:
    """Layout padding out: wide gaps become two spaces, lines are stripped, and runs of blank
    lines become one."""
    lines = [_WIDE_GAP.sub("  ", line).strip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _decode(data: bytes) -> str:
    declared = _CHARSET.search(data[:4096])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    return decode_text(data)
