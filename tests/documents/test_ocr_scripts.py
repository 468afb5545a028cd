"""OCR of pages in other scripts and of low-resolution images (issue 29): with the language
"auto" a page English reads poorly is read again with each installed non-Latin script, and the
clearly more confident reading wins; an explicit language is used as is."""

import re

import pymupdf
import pytest

from backend.backends.local import LocalBackend
from backend.documents import ocr
from tests.conftest import make_settings, start_harness
from tests.documents.conftest import upload

pytestmark = pytest.mark.skipif(
    ocr.tessdata_for("heb") is None, reason="Tesseract with Hebrew data (.ci/setup installs it)"
)

FONTS = "/usr/share/fonts/truetype/dejavu"  # DejaVu Sans has Hebrew glyphs
PAYSLIP_HE = [
    "תלוש שכר לחודש 11/2023",
    "שם העובד: ישראל ישראלי",
    "שכר יסוד 12,000.00",
    "ביטוח לאומי 412.00",
    "מס הכנסה 267.71",
    "שכר נטו 9,320.29",
    "נטו לתשלום 9,320.29",
]
HEBREW = re.compile(r"[\u0590-\u05ff]")
LABELS = [
    ("w9", "IRS Form W-9, Request for Taxpayer Identification Number and Certification"),
    (
        "form_1040",
        "IRS Form 1040 U.S. Individual Income Tax Return, or one of its numbered schedules",
    ),
    ("invoice", "A bill from a seller asking a customer to pay for goods or services"),
    ("payslip", "A pay stub or salary slip showing an employee's earnings and deductions"),
    ("other", "Any document that is none of the above"),
]


def hebrew_scan(lines: list[str], dpi: int = 150) -> bytes:
    """An image-only PDF of right-to-left Hebrew lines, as a scanner makes it."""
    with pymupdf.open() as doc:
        page = doc.new_page(width=612, height=792)
        html = '<div dir="rtl">' + "".join(f"<p>{line}</p>" for line in lines) + "</div>"
        css = "@font-face {font-family: dv; src: url(DejaVuSans.ttf);} * {font-family: dv;}"
        page.insert_htmlbox(
            pymupdf.Rect(50, 50, 562, 742), html, css=css, archive=pymupdf.Archive(FONTS)
        )
        assert "תלוש" in page.get_text()  # the font drew Hebrew
        png = page.get_pixmap(dpi=dpi).tobytes("png")
    with pymupdf.open() as doc:
        page = doc.new_page(width=612, height=792)
        page.insert_image(page.rect, stream=png)
        return doc.tobytes()


def test_auto_reads_a_hebrew_scan_in_hebrew_and_an_explicit_language_wins():
    scan = hebrew_scan(PAYSLIP_HE)
    tessdata = ocr.tessdata_for("auto")
    text = ocr.ocr_page_inline(scan, 200, "auto", tessdata)
    assert "תלוש שכר" in text and "נטו לתשלום" in text, text
    english = ocr.ocr_page_inline(scan, 200, "eng", tessdata)
    assert not HEBREW.search(english), english  # "eng" as configured: no script is tried


def test_an_english_page_read_well_is_not_read_again(monkeypatch):
    """The script trial costs whole readings: a page English reads confidently pays none."""
    from tests.fixtures.documents import scanned_pdf

    calls = []
    real = ocr.read_words

    def counted(png, dpi, language, tessdata):
        calls.append(language)
        return real(png, dpi, language, tessdata)

    monkeypatch.setattr(ocr, "read_words", counted)
    text = ocr.ocr_page(
        scanned_pdf(["INVOICE 2024-117\nAmount due: 1,250.00 USD"]),
        200,
        "auto",
        ocr.tessdata_for("auto"),
    )
    assert "Amount due" in text
    assert calls == ["eng"]


def test_without_the_tesseract_program_pymupdfs_ocr_reads_the_page(monkeypatch):
    """Deployments with Tesseract's data but not its program keep OCR (English for "auto")."""
    from tests.fixtures.documents import scanned_pdf

    monkeypatch.setattr(ocr, "_tesseract_program", lambda: None)
    monkeypatch.setattr(ocr, "read_words", None)  # never reached
    scan = scanned_pdf(["INVOICE 2024-117\nAmount due: 1,250.00 USD"])
    assert "Amount due" in ocr.ocr_page(scan, 200, "auto", ocr.tessdata_for("auto"))


def test_a_low_resolution_image_page_is_enlarged_with_its_own_pixels():
    """A 72-dpi picture on a Letter page is rendered at its own resolution and enlarged to the
    OCR resolution (not left to MuPDF's enlargement)."""
    with pymupdf.open() as doc:
        page = doc.new_page(width=612, height=792)
        page.insert_textbox(pymupdf.Rect(50, 50, 562, 742), "INVOICE 2024-117", fontsize=16)
        png = page.get_pixmap(dpi=72).tobytes("png")
    with pymupdf.open() as doc:
        page = doc.new_page(width=612, height=792)
        page.insert_image(page.rect, stream=png)
        assert ocr._image_dpi(page) == pytest.approx(72, rel=0.01)
        out = pymupdf.Pixmap(ocr._render(page, 200))
        assert (out.width, out.height) == (1700, 2200)


async def test_a_scanned_hebrew_payslip_classifies_as_payslip_through_the_api(
    database_url, tmp_path
):
    settings = make_settings(database_url, tmp_path)
    assert settings.ocr_language == "auto"  # the default
    async for harness in start_harness(settings, [LocalBackend(settings)]):
        tenant = await harness.tenant()
        response = await upload(harness.client, tenant, hebrew_scan(PAYSLIP_HE), "tlush.pdf")
        assert response.status_code == 201, response.text
        body = {
            "document_id": response.json()["document_id"],
            "query_model": "local",
            "classification_schema": [{"label": k, "description": d} for k, d in LABELS],
        }
        result = await harness.client.post("/v1/classify", json=body, headers=tenant.headers)
        assert result.status_code == 200, result.text
        assert result.json()["classification"] == "payslip", result.json()


@pytest.mark.dataset
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # A hand-filled W-9 photographed on a dark table: a global threshold read no title.
        ("w9/w9_rev2018-10_handfilled_photo_google.pdf", "Identification Number and Certification"),
        # A 96-dpi screenshot: MuPDF's enlargement made "(Form 71040)" of its heading.
        ("form_1040/f1040_scheduleE_filled_image.png", "(Form 1040)"),
        # A scanned Hebrew payslip, read as Latin noise in English.
        ("payslip/payslip_il_tlush_scanned.pdf", "תלוש משכורת"),
    ],
)
def test_docs_v1_pages_english_ocr_misread_are_read(dataset_dir, name, expected):
    from backend.documents import extraction
    from backend.documents.sniff import sniff

    data = (dataset_dir / name).read_bytes()
    limits = extraction.Limits(max_pages=50, max_image_pixels=50_000_000)
    pages = extraction.extract(
        data, sniff(data), limits, min_text_chars=20, ocr=True, ocr_dpi=200, ocr_language="auto"
    )
    assert pages[0].ocr and expected in pages[0].text, pages[0].text[:500]
