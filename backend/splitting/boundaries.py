"""Where one document ends and the next begins, from per-page labels and page signals.

A new segment starts at a page when
1. its label differs from the previous page's, or
2. it says it is a first page ("Page 1 of 3", "1/3" on its own line), or
3. it repeats the opening of the current segment's first page (the same header or title: two
   invoices in a row) and does not say it continues ("Page 2", "(continued)").
Pages that say they continue a document never start one unless their label changes.
"""

import re
from dataclasses import dataclass

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

HEADER_CHARS = 300
HEADER_SIMILARITY = 0.5
_FIRST_PAGE = re.compile(
    r"\bpage\s*1\s*(of|/)\s*\d+\b|^\s*1\s*/\s*\d+\s*$", re.IGNORECASE | re.MULTILINE
)
_LATER_PAGE = re.compile(
    r"\bpage\s*([2-9]|\d{2,})\b|^\s*([2-9]|\d{2,})\s*/\s*\d+\s*$|\(continued\)|\bcontinued\b",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class PageSignal:
    label: str
    text: str

    @property
    def says_first(self) -> bool:
        return bool(_FIRST_PAGE.search(self.text))

    @property
    def says_later(self) -> bool:
        return bool(_LATER_PAGE.search(self.text)) and not self.says_first


def _header_similarity(a: str, b: str) -> float:
    a, b = a[:HEADER_CHARS].strip(), b[:HEADER_CHARS].strip()
    if not a or not b:
        return 0.0
    try:
        matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4)).fit_transform([a, b])
    except ValueError:
        return 0.0
    return float(cosine_similarity(matrix[0], matrix[1])[0, 0])


def segment_starts(pages: list[PageSignal]) -> list[int]:
    """Indexes (0-based) of the pages that start a segment; always includes 0."""
    starts = [0]
    for i in range(1, len(pages)):
        page, previous = pages[i], pages[i - 1]
        if (
            page.label != previous.label
            or page.says_first
            or (
                not page.says_later
                and _header_similarity(page.text, pages[starts[-1]].text) >= HEADER_SIMILARITY
            )
        ):
            starts.append(i)
    return starts
