"""Named evidence for the gap between two neighbouring pages: does a new document start here?

Every feature is a number (most are 0/1) with a name a person can read in a response's
`boundary_signals`; boundary_model.py weighs them (logistic regression). The facts of one page
are read once (`page_facts`), then each gap compares a page with the one before.

Families:
- page numbering: "page 1 of 3" (a reset), "page 2 of 3" (a continuation), the previous page
  said it was the last, or promised more;
- first-page versus continuation look: a document title heading the page (or none at all),
  "continued" at the
  top, the same running header or footer as the previous page;
- who and what: identifiers (tax ids, IBANs, e-mail addresses, phone numbers, web sites),
  document numbers, dates and money amounts shared with or all different from the previous
  page's (a new issuer, recipient, invoice number, date or total);
- look: character n-gram similarity of the two texts, page size or orientation change.
"""

import re
from dataclasses import dataclass

from backend.splitting.signals import (
    _PAGE_N,
    _PAGE_N_OF_M,
    PageMarks,
    neighbour_similarity,
    read_marks,
    size_changed,
)

HEADER_LINES = 2  # lines compared for a running header / footer
MIN_HEADER_CHARS = 6  # shorter lines ("1", "-") say nothing
# Characters of a page read (its start and its end), to keep segmentation fast on dense pages.
FACT_HEAD_CHARS, FACT_TAIL_CHARS = 2500, 1000
SIMILARITY_HEAD_CHARS, SIMILARITY_TAIL_CHARS = 1500, 500
CHANGE_LOW, CHANGE_HIGH = 0.4, 0.9  # the range of 1 - similarity that content_change spans

# Identifiers of a party: tax ids (EIN, SSN, VAT, GSTIN, SIREN/SIRET, ABN...), IBANs, e-mail
# addresses, web sites, phone numbers. Read from the whole page: letterheads and address
# blocks are where they live.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_WEB = re.compile(r"\b(?:www\.)?([a-z0-9-]{2,}\.(?:com|net|org|fr|de|nl|co\.uk|in|io|biz))\b", re.I)
_PHONE = re.compile(r"(?<!\d)(?:\+?\d[\d\s().-]{8,16}\d)(?!\d)")
_TAX_ID = re.compile(
    r"\b(?:\d{2}-\d{7}|\d{3}-\d{2}-\d{4}|[A-Z]{2}\s?\d{8,12}|\d{2}[A-Z]{5}\d{4}[A-Z]\d[A-Z0-9]{2}"
    r"|\d{3}\s?\d{3}\s?\d{3}(?:\s?\d{5})?)\b"
)
_DATE = re.compile(
    r"\b(?:\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})|\d{4}-\d{2}-\d{2}"
    r"|\d{1,2}\s+[A-Za-zéû]{3,9}\.?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})\b"
)
_AMOUNT = re.compile(r"(?<![\d.,])\d{1,3}(?:[,.\s]\d{3})*[.,]\d{2}(?![\d.,])")


@dataclass(frozen=True)
class PageFacts:
    marks: PageMarks
    ids: frozenset[str]
    dates: frozenset[str]
    amounts: frozenset[str]
    header: str | None  # first lines with digits masked, for running headers
    footer: str | None
    has_text: bool


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _edge(lines: list[str]) -> str | None:
    # Page numbers masked (they change on every page of a running header), other digits kept
    # (an invoice number in the header is not a running header).
    joined = " ".join(lines)
    for pattern in (_PAGE_N_OF_M, _PAGE_N):
        joined = pattern.sub("#", joined)
    joined = joined.strip().lower()
    return joined if len(joined) >= MIN_HEADER_CHARS else None


def head_and_tail(text: str, head: int, tail: int) -> str:
    """The page's first and last characters: letterheads, addresses, titles, totals and
    footers live there; a long body adds time, not evidence."""
    return text if len(text) <= head + tail else f"{text[:head]}\n{text[-tail:]}"


def page_facts(text: str) -> PageFacts:
    """What one page's text says about who and what it is."""
    text = head_and_tail(text, FACT_HEAD_CHARS, FACT_TAIL_CHARS)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ids = {_normal(m) for m in _IBAN.findall(text)}
    ids |= {m.lower() for m in _EMAIL.findall(text)}
    ids |= {m.lower() for m in _WEB.findall(text)}
    ids |= {d for m in _PHONE.findall(text) if len(d := re.sub(r"\D", "", m)) >= 9}
    ids |= {_normal(m) for m in _TAX_ID.findall(text)}
    amounts = {re.sub(r"[,.\s]", "", m) for m in _AMOUNT.findall(text)}
    return PageFacts(
        marks=read_marks(text),
        ids=frozenset(ids),
        dates=frozenset(_normal(m) for m in _DATE.findall(text)),
        amounts=frozenset(a for a in amounts if a.strip("0")),
        header=_edge(lines[:HEADER_LINES]) if len(lines) > 2 * HEADER_LINES else None,
        footer=_edge(lines[-HEADER_LINES:]) if len(lines) > 2 * HEADER_LINES else None,
        has_text=len(text.strip()) >= 20,
    )


# The features' names, in a fixed order (the model's weights are stored by name).
NAMES = (
    "first_page",
    "later_page",
    "numbering_continues",
    "follows_last_page",
    "promised_more",
    "continued",
    "title",
    "untitled",
    "doc_number_new",
    "doc_number_same",
    "ids_new",
    "ids_same",
    "dates_new",
    "dates_same",
    "amounts_new",
    "amounts_same",
    "header_same",
    "footer_same",
    "content_change",
    "no_text",
    "size_change",
)


def _overlap(a: frozenset[str], b: frozenset[str]) -> tuple[float, float]:
    """(all different, some shared) for two sets that are both non-empty; zeros otherwise."""
    if not a or not b:
        return 0.0, 0.0
    return (0.0, 1.0) if a & b else (1.0, 0.0)


def gap_features(
    previous: PageFacts,
    current: PageFacts,
    similarity: float | None,
    sizes: tuple[tuple[float, float] | None, tuple[float, float] | None],
) -> dict[str, float]:
    """The named features of the gap before `current`."""
    p, c = previous.marks, current.marks
    f = dict.fromkeys(NAMES, 0.0)
    if c.number == 1:
        f["first_page"] = 1.0
    elif c.number is not None:
        f["later_page"] = 1.0
        # "page 3 of 4" after "page 2 of 4": the same numbering goes on
        f["numbering_continues"] = float(p.number == c.number - 1 and p.total == c.total)
    elif p.number is not None and p.total is not None:
        f["follows_last_page" if p.number == p.total else "promised_more"] = 1.0
    f["continued"] = float(c.continued and c.number is None)
    if c.doc_number and p.doc_number:
        f["doc_number_same" if c.doc_number == p.doc_number else "doc_number_new"] = 1.0
    # A heading that repeats the previous page's document number is a running header of a
    # continuation page ("Purchase order PO-5521, terms"), not a new document's title.
    f["title"] = float(c.title and (c.number is None or c.number == 1) and not f["doc_number_same"])
    # A page of text with no first-page look at all (no title, no "page 1", no numbering):
    # a body page more often than a new document (weak alone; its weight is fitted).
    f["untitled"] = float(current.has_text and not f["title"] and c.number is None)
    f["ids_new"], f["ids_same"] = _overlap(previous.ids, current.ids)
    f["dates_new"], f["dates_same"] = _overlap(previous.dates, current.dates)
    f["amounts_new"], f["amounts_same"] = _overlap(previous.amounts, current.amounts)
    f["header_same"] = float(current.header is not None and current.header == previous.header)
    f["footer_same"] = float(current.footer is not None and current.footer == previous.footer)
    if similarity is None:
        f["no_text"] = 1.0
    else:
        # How much the content changes (1 - similarity; the running header weighs little, see
        # neighbour_similarity), on a 0-1 scale between "as alike as two pages of one document
        # usually are" and "nothing in common", so that it cannot outweigh every other signal.
        change = min(max(1.0 - similarity, CHANGE_LOW), CHANGE_HIGH)
        f["content_change"] = round((change - CHANGE_LOW) / (CHANGE_HIGH - CHANGE_LOW), 4)
    f["size_change"] = float(size_changed(*sizes))
    return f


def all_gap_features(
    texts: list[str], sizes: list[tuple[float, float] | None]
) -> list[dict[str, float]]:
    """The features of every gap of a file (len(texts) - 1 of them)."""
    facts = [page_facts(t) for t in texts]
    similarity = neighbour_similarity(
        [head_and_tail(t, SIMILARITY_HEAD_CHARS, SIMILARITY_TAIL_CHARS) for t in texts]
    )
    return [
        gap_features(facts[i - 1], facts[i], similarity[i], (sizes[i - 1], sizes[i]))
        for i in range(1, len(texts))
    ]
