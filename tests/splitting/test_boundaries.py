"""Page signals and the segmentation they feed, without the app."""

import pytest

from backend.splitting.boundaries import PageEvidence, gap_scores, segment, segment_scores
from backend.splitting.labels import combined_scores
from backend.splitting.signals import neighbour_similarity, read_marks, size_changed

LABELS = ("invoice", "contract", "other")


def scores(label: str, p: float = 0.8) -> dict[str, float]:
    rest = (1 - p) / (len(LABELS) - 1)
    return {name: p if name == label else rest for name in LABELS}


def spans(pages: list[PageEvidence]) -> list[tuple[int, int, str]]:
    return [(s.first, s.end, s.label) for s in segment(pages)]


@pytest.mark.parametrize(
    ("text", "number", "total"),
    [
        ("ACME\nPage 1 of 3\nbody", 1, 3),
        ("Facture n°5 du 02 Juillet\nPage 2 / 2\ndetail", 2, 2),
        ("Page 2de2\nrece", 2, 2),
        ("header\nbody\n3/4", 3, 4),
        ("2004年8月\n第1頁，共2頁\n西尼羅河", 1, 2),
        ("Form W-9 (Rev. 10-2018)\nPage 2\nGeneral Instructions", 2, None),
        ("Seite 3\nWeitere Angaben", 3, None),
        ("Nothing to see\nhere", None, None),
    ],
)
def test_page_numbers(text, number, total):
    marks = read_marks(text)
    assert (marks.number, marks.total) == (number, total)


def test_page_marks_are_read_in_headers_and_footers_only():
    body = "\n".join(f"line {i}" for i in range(30))
    middle = f"Title\n{body}\nTotal tax from Page 1, line 23\n{body}\nend"
    assert read_marks(middle).number is None
    assert read_marks(f"{body}\n{body}\nPage 4 of 9").number == 4


def test_titles_continuations_and_document_numbers():
    invoice = read_marks("TAX INVOICE\nInvoice No: INV-2024-17\nBill to: Beta")
    assert invoice.title and invoice.doc_number == "INV-2024-17"
    assert read_marks("Form W-9\n(Rev. October 2018)").title
    assert read_marks("SCHEDULE C\n(Form 1040)\nProfit or Loss").title
    assert read_marks("Non-Disclosure Agreement\nThis agreement").title
    assert not read_marks("4. EXCLUSIONS FROM CONFIDENTIAL INFORMATION\ntext").title
    assert read_marks("Part II Other Taxes (continued)\nline 18").continued
    assert not read_marks("tiny").has_text


def test_neighbour_similarity_and_size():
    texts = [
        "Download Festival 2009 Timetable Friday Main stage 11:00 12:00 13:00",
        "Download Festival 2009 Timetable Saturday Main stage 11:00 12:00 13:00",
        "Employee earnings statement: gross pay, net pay, income tax withheld",
        "",
    ]
    similarity = neighbour_similarity(texts)
    assert similarity[0] is None and similarity[3] is None
    assert similarity[1] > 0.5 > 0.2 > similarity[2]
    assert size_changed((612, 792), (595, 842)) and size_changed((612, 792), (792, 612))
    assert not size_changed((612, 792), (612.4, 792)) and not size_changed(None, (612, 792))


def test_an_odd_page_inside_a_document_stays_in_it():
    """Page 3 of a contract looks like 'other' to the model, but says it continues."""
    pages = [
        PageEvidence(scores("contract", 0.9), "SERVICES AGREEMENT\nPage 1 of 4\nparties"),
        PageEvidence(scores("contract"), "Page 2 of 4\nterm and termination clauses"),
        PageEvidence(scores("other", 0.6), "Page 3 of 4\nSchedule A: price table 10 20 30"),
        PageEvidence(scores("contract"), "Page 4 of 4\nsignatures of the parties"),
    ]
    assert spans(pages) == [(0, 4, "contract")]
    assert segment(pages)[0].scores["contract"] > 0.5


def test_a_confident_label_change_splits_without_any_signal():
    pages = [
        PageEvidence(scores("invoice", 0.95), "Northwind invoice total due 120"),
        PageEvidence(scores("contract", 0.95), "the parties agree as follows"),
    ]
    assert spans(pages) == [(0, 1, "invoice"), (1, 2, "contract")]


def test_same_label_documents_in_a_row_are_separate():
    first_pages = [
        "INVOICE\nInvoice No. 1001\nNorthwind Traders\nWidgets 10 x 12.00\nTotal due 120.00",
        "INVOICE\nInvoice No. 1002\nNorthwind Traders\nGadgets 4 x 20.00\nTotal due 80.00",
        "INVOICE\nInvoice No. 1003\nNorthwind Traders\nBolts 100 x 0.10\nTotal due 10.00",
    ]
    pages = [PageEvidence(scores("invoice"), text) for text in first_pages]
    assert spans(pages) == [(0, 1, "invoice"), (1, 2, "invoice"), (2, 3, "invoice")]
    # The same pages numbered as one document stay one.
    numbered = [
        PageEvidence(scores("invoice"), f"Northwind Traders\nPage {i} of 3\n{t}")
        for i, t in enumerate(["Widgets", "Gadgets", "Bolts, total due 210.00"], start=1)
    ]
    assert spans(numbered) == [(0, 3, "invoice")]


def test_page_one_of_n_resets_even_with_the_same_header():
    text = "Monthly statement ACME Bank\nPage {} of {}\nbalance"
    pages = [
        PageEvidence(scores("other"), text.format(1, 2)),
        PageEvidence(scores("other"), text.format(2, 2)),
        PageEvidence(scores("other"), text.format(1, 1)),
    ]
    assert spans(pages) == [(0, 2, "other"), (2, 3, "other")]
    gaps = gap_scores(pages)
    assert gaps[0].log_odds < 0 < gaps[1].log_odds
    assert "first_page" in gaps[1].reasons and "later_page" in gaps[0].reasons


def test_segment_scores_are_a_distribution_led_by_the_agreeing_label():
    combined = segment_scores([scores("invoice", 0.9), scores("invoice", 0.5), scores("other")])
    assert abs(sum(combined.values()) - 1) < 1e-9
    assert max(combined, key=combined.get) == "invoice"
    assert segment([]) == []


def test_a_continuation_page_repeating_the_document_number_stays():
    # The console's browser-test packet: a purchase order's terms page heads itself with the
    # order's number, not a title block of its own.
    packet = [
        "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment due",
        "Invoice 2024-117, page 2\nLine items: widgets 40 x 25.00\nTotal due 1,250.00 USD",
        "PURCHASE ORDER PO-5521\nVendor: Acme Supplies\nShip to: Northwind Traders\nQty: 40",
        "Purchase order PO-5521, terms\nDeliver within 14 days of this order",
    ]
    assert read_marks(packet[0]).doc_number == "2024-117"
    assert read_marks(packet[3]).doc_number == "PO-5521"
    assert read_marks("Statement 2023\nAccount summary").doc_number is None  # a year, no number
    labels = ["invoice", "invoice", "other", "other"]
    pages = [PageEvidence(scores(label, 0.7), t) for label, t in zip(labels, packet, strict=True)]
    gaps = gap_scores(pages)
    assert "doc_number_same" in gaps[2].reasons and "title" not in gaps[2].reasons
    assert spans(pages) == [(0, 2, "invoice"), (2, 4, "other")]
    # Another order's number after it is a new document again.
    other = PageEvidence(scores("other", 0.7), "PURCHASE ORDER PO-5600\nVendor: Beta\nQty: 3")
    assert gap_scores([pages[2], other])[0].log_odds > 0


def test_a_segment_label_comes_from_its_own_classification():
    pages = [scores("invoice", 0.6), scores("other", 0.5)]
    own = scores("contract", 0.7)
    # With no page weight the segment is labelled as the document was classified...
    assert combined_scores(own, pages, 0.0) == own
    # ... with one, the pages' evidence counts too; without its own classification, only it.
    mixed = combined_scores(own, pages, 1.0)
    assert abs(sum(mixed.values()) - 1) < 1e-9 and mixed["invoice"] > own["invoice"]
    assert combined_scores(None, pages) == segment_scores(pages)
