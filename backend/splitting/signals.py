"""What a page says about where it sits in a document: page numbers, continuation marks, a title
at the top, a document number, and how much its content and size differ from the page before.

Each reader looks only at the page's header and footer lines, where such marks live, so a
sentence like "total from page 1, line 23" in the body does not count.
"""

import re
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

EDGE_LINES = 5  # header and footer lines read for page marks
TITLE_LINES = 3
MIN_TEXT_CHARS = 20  # a page with less says nothing about its content

_PAGE_WORD = r"(?:page|pg\.?|seite|pagina|página|blatt|sida|strona)"
_OF = r"(?:of|/|de|sur|von|van|di|sobre)"
_PAGE_N_OF_M = re.compile(rf"\b{_PAGE_WORD}\s*(\d{{1,3}})\s*{_OF}\s*(\d{{1,3}})\b", re.IGNORECASE)
_N_OF_M_LINE = re.compile(r"^\s*[-–(]?\s*(\d{1,3})\s*(?:/|of)\s*(\d{1,3})\s*[-–)]?\s*$")
_CJK_N_OF_M = re.compile(r"第\s*(\d{1,3})\s*[頁页]\s*[，,]?\s*共\s*(\d{1,3})\s*[頁页]")
_PAGE_N = re.compile(rf"\b{_PAGE_WORD}\s*(\d{{1,3}})\b(?!\s*[,.]?\s*(?:line|row|col))", re.I)
_CONTINUED = re.compile(
    r"\(continued\)|\bcontinued\b|\(cont(?:'d|\.|inued)?\)|\(suite\)|\bsuite\s+de\s+la\s+page\b"
    r"|\bfortsetzung\b|接上[頁页]|续上?页",
    re.IGNORECASE,
)
# Words that open a document when they head its first lines, in the languages of the usual mail.
_TITLE = re.compile(
    r"^\s*(?:(?:tax|proforma|pro-forma|commercial|vat)\s+)?(?:invoice|facture|rechnung|factuur|"
    r"fattura|factura|fatura|receipt|quittung|re[cç]u|bill\s+of\s+lading|credit\s+note|"
    r"purchase\s+order|sales\s+order|order\s+confirmation|delivery\s+note|packing\s+list|"
    r"pay\s*slip|pay\s*stub|salary\s+slip|earnings\s+statement|bulletin\s+de\s+(?:paie|salaire)|"
    r"lohnabrechnung|gehaltsabrechnung|(?:bank\s+|account\s+)?statement|"
    r"(?:[\w-]+\s+){0,3}agreement|contract|memorandum|"
    r"schedule\s+[\w-]{1,5}(?:\s*\(form\s+[\w-]+\))?|form\s+[\w-]{1,12})\b",
    re.IGNORECASE,
)
_DOC_NUMBER = re.compile(
    r"\b(?:invoice|facture|rechnung|factuur|receipt|order|po|statement|bill|document|doc|"
    r"credit\s+note|slip)\s*(?:no\.?|number|num\.?|nr\.?|n[°º]|#)\s*[:.\-]?\s*"
    r"([A-Z0-9][A-Z0-9\-/]{2,})",
    re.IGNORECASE,
)

# A number right after a document word in the page's first lines ("INVOICE 2024-117",
# "Purchase order PO-5521, terms"): the document's number even without "No." before it.
_TITLED_NUMBER = re.compile(
    r"\b(?:invoice|facture|rechnung|factuur|receipt|order|statement|credit\s+note|"
    r"delivery\s+note|quote|quotation|contract)\s*[:#]?\s*([A-Z]{0,6}[-/]?\d[A-Z0-9\-/]{2,})\b",
    re.IGNORECASE,
)


def _is_document_number(code: str) -> bool:
    """A code, not a year or a count: letters with digits, a separator, or five digits."""
    digits = sum(c.isdigit() for c in code)
    return bool(re.search(r"[A-Za-z]", code) or "-" in code or "/" in code or digits >= 5)


@dataclass(frozen=True)
class PageMarks:
    """Marks read from one page's text."""

    number: int | None = None  # the page's own number, when printed
    total: int | None = None  # the document's page count, when printed ("page 2 of 3")
    continued: bool = False
    title: bool = False  # a document title heads the page ("INVOICE", "Form W-9", ...)
    doc_number: str | None = None  # an invoice / order / statement number
    has_text: bool = True


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_marks(text: str) -> PageMarks:
    """The page marks of one page's text."""
    lines = _lines(text)
    edges = lines[:EDGE_LINES] + lines[-EDGE_LINES:] if len(lines) > 2 * EDGE_LINES else lines
    number = total = None
    for line in edges:
        match = _PAGE_N_OF_M.search(line) or _CJK_N_OF_M.search(line) or _N_OF_M_LINE.match(line)
        if match and 0 < int(match.group(1)) <= int(match.group(2)):
            number, total = int(match.group(1)), int(match.group(2))
            break
    if number is None:
        for line in edges:
            match = _PAGE_N.search(line)
            if match and int(match.group(1)) > 0:
                number = int(match.group(1))
                break
    head = " ".join(lines[:TITLE_LINES])
    documents = _DOC_NUMBER.findall("\n".join(lines[: EDGE_LINES * 3]))
    if not documents:
        titled = _TITLED_NUMBER.findall("\n".join(lines[:TITLE_LINES]))
        documents = [code for code in titled if _is_document_number(code)]
    return PageMarks(
        number=number,
        total=total,
        continued=any(_CONTINUED.search(line) for line in lines[:EDGE_LINES]),
        title=bool(_TITLE.match(head)),
        doc_number=documents[0].upper() if documents else None,
        has_text=len(text.strip()) >= MIN_TEXT_CHARS,
    )


def neighbour_similarity(texts: list[str]) -> list[float | None]:
    """Cosine similarity of each page's text to the previous page's (None for the first page and
    wherever a page has too little text to judge). Character n-grams with the IDF of this file,
    so words every page shares (the file's running header) weigh little."""
    similarities: list[float | None] = [None] * len(texts)
    usable = [i for i, t in enumerate(texts) if len(t.strip()) >= MIN_TEXT_CHARS]
    if len(usable) < 2:
        return similarities
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True)
    matrix = vectorizer.fit_transform([texts[i] for i in usable])  # rows are L2-normalized
    position = {page: row for row, page in enumerate(usable)}
    for i in range(1, len(texts)):
        if i in position and i - 1 in position:
            a, b = matrix[position[i - 1]], matrix[position[i]]
            similarities[i] = float(a.multiply(b).sum())
    return similarities


def size_changed(previous: tuple[float, float] | None, current: tuple[float, float] | None) -> bool:
    """Whether the page's size or orientation differs from the previous page's (A4 after Letter,
    landscape after portrait): a different source file, most likely."""
    if not previous or not current or not all(previous) or not all(current):
        return False
    return bool(np.any(np.abs(np.array(previous) - np.array(current)) > 0.03 * np.array(previous)))
