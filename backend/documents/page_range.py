"""`page_range` strings (SPEC §2): "1-3", "1,3,5", "2-", "1-2,5"; 1-based, clipped to the document."""

import re

from backend.errors import InvalidRequest

_PART = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$")
MAX_SPEC_CHARS = 200


def parse_page_range(spec: str | None, num_pages: int) -> list[int]:
    """The sorted, distinct pages a range selects. A range running past the end stops at the last
    page; a malformed range, or one with no page inside the document, is invalid_request."""
    if num_pages < 1:
        raise InvalidRequest("The document has no pages.")
    if spec is None or spec.strip() == "":
        return list(range(1, num_pages + 1))
    if len(spec) > MAX_SPEC_CHARS:
        raise InvalidRequest(f"page_range is longer than {MAX_SPEC_CHARS} characters.")
    pages: set[int] = set()
    for part in spec.split(","):
        match = _PART.match(part)
        if not match:
            raise InvalidRequest(
                f"Malformed page_range '{spec}': use forms like '1-3', '1,3,5', '2-' or '1-2,5'."
            )
        start = int(match.group(1))
        if match.group(2):
            end = int(match.group(3)) if match.group(3) else num_pages
        else:
            end = start
        if start < 1 or end < start:
            raise InvalidRequest(f"Malformed page_range '{spec}': pages are 1-based and ascending.")
        pages.update(range(start, min(end, num_pages) + 1))
    if not pages:
        raise InvalidRequest(
            f"page_range '{spec}' selects no page of this {num_pages}-page document."
        )
    return sorted(pages)


def format_pages(pages: list[int]) -> str:
    """Compact form of a page list: [1, 2, 3, 5] -> "1-3,5"."""
    parts: list[str] = []
    for page in sorted(set(pages)):
        if parts and page == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{page}"
        else:
            parts.append(str(page))
    return ",".join(parts)
