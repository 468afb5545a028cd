"""The `local` model's zero-shot evidence for label sets it was not written for (issue 23): the
kinds a description enumerates, genre cues, titles in other scripts."""

import pytest

from backend.backends.base import ClassifyRequest, LabelSpec
from backend.backends.local import LocalBackend
from backend.backends.local.genres import genre_evidence
from backend.backends.local.lexicon import KINDS, title_kind
from backend.backends.local.text import singular, tokens
from backend.backends.local.zero_shot import document_counts, label_terms
from backend.config import Settings

COARSE = [
    LabelSpec(
        "financial",
        "A record of a payment, charge or earnings: invoice, receipt, bank statement, "
        "check or pay slip",
    ),
    LabelSpec(
        "publication",
        "A text written for readers to learn from: research paper, article, technical "
        "standard, tutorial, manual or guide",
    ),
    LabelSpec("other", "Anything else"),
]
TILL_SLIP = (
    "MEGA STORE #12\nLG TV 599.99\nSUBTOTAL 599.99\nTAX 39.00\nTOTAL 638.99\nVISA 638.99\n"
    "APPROVAL # 114801\nCHANGE DUE 0.00\nITEMS SOLD 1\nCashier: Ann\nCUSTOMER COPY"
)
PAPER = (
    "Electronic cash without a trusted third party\nA. Author\nAbstract. We propose a payment "
    "system between two parties without a financial institution.\n1. Introduction\nCommerce "
    "on the Internet relies on financial institutions [1]. In this paper, we propose ..."
)


@pytest.fixture(scope="module")
def backend():
    return LocalBackend(Settings(_env_file=None))


def label(backend, text, labels):
    return backend._classify(ClassifyRequest(model="local", labels=labels, pages=[text])).label


def test_a_category_label_is_found_by_the_kinds_it_enumerates_not_by_its_own_word(backend):
    terms = {t.label: t for t in label_terms(COARSE[:2])}
    assert {"invoic", "receipt", "payslip", "bankstatement"} <= terms["financial"].names
    assert "financi" not in terms["financial"].names  # "financial institution" names nothing
    assert label(backend, TILL_SLIP, COARSE) == "financial"
    assert label(backend, PAPER, COARSE) == "publication"


def test_receipt_cues_ignore_receipt_used_in_passing():
    genres = {"receipt"}
    assert genre_evidence(TILL_SLIP, genres, 2.0) > 0.9
    passing = "Payment due upon receipt\nPlace of receipt: Shanghai\nReceipt date: 2024-01-01"
    assert genre_evidence(passing, genres, 2.0) == 0


def test_plural_compounds_in_a_description_name_the_singular_kind():
    assert [singular(w) for w in ("slips", "policies", "boxes", "cvs", "status")] == [
        "slip",
        "policy",
        "box",
        "cv",
        "status",
    ]
    (terms,) = label_terms([LabelSpec("employment", "Paperwork of a job: pay slips and CVs")])
    assert {"payslip", "cv"} <= terms.names


def test_a_description_quoting_a_hallmark_names_its_kind():
    spec = LabelSpec(
        "wages", "What one employee earned in a pay period, with deductions and net pay"
    )
    (terms,) = label_terms([spec])
    assert "payslip" in terms.names


def test_titles_in_other_scripts_are_words_and_kinds():
    assert tokens("תלוש משכורת 11/2023") == ["תלוש", "משכורת", "11", "2023"]
    payslip = next(i for i, (names, _) in enumerate(KINDS) if "payslip" in names)
    assert title_kind("תלוש משכורת") == payslip


def test_a_table_of_numbers_does_not_push_a_title_down():
    numbers = "\n".join(f"{i},000.00" for i in range(300))
    counts, _ = document_counts(numbers + "\nPAYSLIP\n")
    assert counts["payslip"] > 2  # in the title area: the numbers above it are not words


def test_a_title_naming_another_kind_contradicts_a_label_it_resembles(backend):
    labels = [
        LabelSpec("invoice", "A bill from a seller asking the customer to pay"),
        LabelSpec("other", "Any other document"),
    ]
    warranty = "WARRANTY\nNo. WRT/2026/00001\n12 months\nInvoice INV/2026/00007\nProduct: speaker"
    assert label(backend, warranty, labels) == "other"
