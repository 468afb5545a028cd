"""The embedded `local` model: zero-shot from descriptions, training from examples, no network."""

import socket

import numpy as np
import pytest

from backend.backends.base import ClassifyRequest, LabelledText, LabelSpec
from backend.backends.local import (
    LocalBackend,
    document_embedding,
    estimate_accuracy,
    label_embeddings,
    train,
)
from backend.backends.local.lexicon import title_kind
from backend.backends.local.text import is_identifier, tokens
from backend.backends.local.trained import TrainedModel
from backend.backends.local.zero_shot import (
    is_catch_all,
    label_terms,
    title_identifier,
    zero_shot_logits,
)
from backend.config import Settings

LABELS = [
    LabelSpec("w9", "IRS Form W-9, Request for Taxpayer Identification Number and Certification"),
    LabelSpec("invoice", "A bill from a seller asking a customer to pay for goods or services"),
    LabelSpec("payslip", "A pay stub or salary slip showing an employee's earnings and deductions"),
    LabelSpec("other", "Any document that is none of the above"),
]
W9 = "Form W-9 (Rev. October 2018) Request for Taxpayer Identification Number and Certification. Give form to the requester."
INVOICE = "INVOICE #2024-117  Bill to: Northwind Traders. Item: consulting services. Amount due: $1,250.00. Pay by 30 days."
PAYSLIP = "Pay stub. Employee: J. Smith. Pay period 01/03-15/03. Gross earnings 3,200.00 Deductions: tax 640.00 Net pay 2,560.00"
RECIPE = "Grandmother's apple pie: slice six apples, add cinnamon and sugar, bake for forty minutes at 180 degrees."


@pytest.fixture(scope="module")
def backend():
    return LocalBackend(Settings(_env_file=None))


def scores(backend, text, examples=(), labels=LABELS):
    request = ClassifyRequest(model="local", labels=labels, pages=[text], examples=list(examples))
    return backend._classify(request)


@pytest.mark.parametrize(
    ("text", "label"), [(W9, "w9"), (INVOICE, "invoice"), (PAYSLIP, "payslip"), (RECIPE, "other")]
)
def test_zero_shot_picks_the_described_label_and_other_when_nothing_fits(backend, text, label):
    result = scores(backend, text)
    assert result.label == label, result.scores
    assert result.confidence_method == "local_zero_shot"
    assert set(result.scores) == {s.label for s in LABELS}
    assert abs(sum(result.scores.values()) - 1) < 1e-6


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (
            "Facture n°5620 du 02 juillet 2015. Montant TTC 29,99 €. Date limite de paiement",
            "invoice",
        ),
        ("RECHNUNG Nr. 2024-117. Leistungszeitraum März. Gesamtbetrag 1.250,00 EUR", "invoice"),
        ("Lohnabrechnung März 2024. Brutto 3.200,00 Steuer 640,00 Auszahlung 2.560,00", "payslip"),
        (
            "Bulletin de paie. Période du 01/03 au 31/03. Salaire brut 3 200,00 Net à payer",
            "payslip",
        ),
        ("Earnings Statement. Period ending 7/18/2008. Gross 1,200.00 Net 980.00", "payslip"),
    ],
    ids=["facture", "rechnung", "lohnabrechnung", "bulletin-de-paie", "earnings-statement"],
)
def test_documents_titled_in_other_languages_or_synonyms_get_the_english_label(
    backend, text, label
):
    assert scores(backend, text).label == label


def test_common_words_identify_a_kind_but_do_not_name_documents():
    # "bill" makes a label an invoice label, but a purchase order's "billing address" must not
    # become evidence that the order is an invoice.
    (invoice,) = label_terms([LabelSpec("invoice", "A document requesting payment")])
    (bill,) = label_terms([LabelSpec("bill", "A bill from a seller")])
    assert {"invoic", "factur", "rechnung"} <= invoice.names
    assert "bill" not in invoice.names and "factur" in bill.names


def test_catch_all_labels_are_recognised_by_name_or_description():
    assert is_catch_all(LabelSpec("other", "x")) and is_catch_all(LabelSpec("misc", ""))
    assert is_catch_all(LabelSpec("rest", "Any document that does not fit the above categories"))
    assert not is_catch_all(LabelSpec("invoice", "A bill"))


def test_trained_mode_learns_what_descriptions_cannot_say(backend):
    # Labels whose names and descriptions say nothing: only the examples can teach them.
    labels = [LabelSpec("alpha", "first kind"), LabelSpec("beta", "second kind")]
    examples = [
        LabelledText("alpha", f"harbour crane shipment container vessel {i}") for i in range(6)
    ]
    examples += [
        LabelledText("beta", f"violin concerto orchestra symphony rehearsal {i}") for i in range(6)
    ]
    result = scores(backend, "the orchestra rehearsed the symphony", examples, labels)
    assert result.confidence_method == "local_trained" and result.label == "beta"
    assert result.scores["beta"] > 0.6
    again = scores(backend, "a container vessel docked by the crane", examples, labels)
    assert again.label == "alpha"


def test_accuracy_estimate_from_examples(backend):
    examples = [LabelledText("w9", W9 + f" copy {i}") for i in range(4)]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(4)]
    estimate = estimate_accuracy(LABELS[:2], examples)
    assert estimate["accuracy"] == 1.0 and estimate["n_examples"] == 8
    assert estimate_accuracy(LABELS[:2], examples[:1])["accuracy"] is None


def test_no_network_is_touched(backend, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the local model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = LocalBackend(Settings(_env_file=None))
    assert scores(fresh, INVOICE).label == "invoice"
    examples = [
        LabelledText("invoice", INVOICE),
        LabelledText("invoice", INVOICE + " again"),
        LabelledText("w9", W9),
        LabelledText("w9", W9 + " again"),
    ]
    assert scores(fresh, W9, examples).confidence_method == "local_trained"


async def test_classify_through_the_api_with_local(harness_local):
    harness, tenant = harness_local
    from tests.fixtures.db import make_document

    doc = await make_document(harness, tenant, [INVOICE, "Thank you for your business."])
    body = {
        "document_id": doc,
        "query_model": "local",
        "classification_schema": [{"label": s.label, "description": s.description} for s in LABELS],
    }
    response = await harness.client.post("/v1/classify", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["classification"] == "invoice"
    assert (
        response.json()["confidence_method"] == "local_zero_shot"
        and response.json()["credits_used"] == 2
    )


@pytest.fixture
async def harness_local(database_url, tmp_path):
    from tests.conftest import make_settings, start_harness

    settings = make_settings(database_url, tmp_path)
    async for harness in start_harness(settings, [LocalBackend(settings)]):
        yield harness, await harness.tenant()


def test_stemming_from_many_threads_matches_one_thread():
    """Snowball stemmers are stateful; the model stems in worker threads at once (an evaluation
    run once failed with IndexError inside the stemmer)."""
    from concurrent.futures import ThreadPoolExecutor

    from backend.backends.local import text

    words = [
        f"{stem}{suffix}"
        for stem in ("classif", "invoic", "payment", "reconcil", "deduct")
        for suffix in ("ication", "ications", "ing", "ed", "ies", "ational", "fully")
    ]
    words = [f"{w}{i}x" for i in range(400) for w in words]  # distinct: no cache hits
    text.stem.cache_clear()
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(text.stem, words))
    text.stem.cache_clear()
    assert threaded == [text.stem(w) for w in words]


def test_trained_probabilities_are_a_distribution_and_calibrated_by_cross_validation(backend):
    examples = [LabelledText("w9", W9 + f" copy {i}") for i in range(4)]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(4)]
    examples += [LabelledText("payslip", PAYSLIP.replace("J. Smith", f"E{i}")) for i in range(4)]
    examples += [LabelledText("other", f"{RECIPE} variation {i}") for i in range(4)]
    result = scores(backend, INVOICE + " Second page: terms.", examples)
    assert result.confidence_method == "local_trained" and result.label == "invoice"
    assert abs(sum(result.scores.values()) - 1) < 1e-6
    assert all(0 <= p <= 1 for p in result.scores.values())
    model = train(LABELS, examples)
    assert 0.05 <= model.temperature <= 20 and model.metrics["n_examples"] == 16
    # A model pickled into the database comes back predicting the same.
    again = TrainedModel.loads(model.dumps())
    zero = zero_shot_logits(LABELS, W9, document_embedding(W9), label_embeddings(LABELS))
    assert np.allclose(again.predict_proba([W9], zero[None]), model.predict_proba([W9], zero[None]))


def test_labels_without_examples_keep_their_zero_shot_evidence(backend):
    # Only w9 and invoice are taught; a payslip still reads as a payslip from its description.
    examples = [LabelledText("w9", W9 + f" copy {i}") for i in range(3)]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(3)]
    result = scores(backend, PAYSLIP, examples)
    assert result.confidence_method == "local_trained" and result.label == "payslip"


def test_a_form_titled_with_another_number_is_not_the_described_form():
    labels = [
        LabelSpec("form_1040", "IRS Form 1040 U.S. Individual Income Tax Return"),
        LabelSpec("other", "Any document that is none of the above"),
    ]
    own = "Form 1040 U.S. Individual Income Tax Return. Department of the Treasury. Filing status."
    other = (
        "Form 6251 Alternative Minimum Tax. Attach to Form 1040, 1040-SR, or 1040-NR. Income tax."
    )
    backend = LocalBackend(Settings(_env_file=None))
    assert scores(backend, own, labels=labels).label == "form_1040"
    assert scores(backend, other, labels=labels).label == "other"
    assert (
        title_identifier(other) == "6251" and title_identifier("SCHEDULE 2 (Form 1040)") == "1040"
    )


# Amounts, a buyer, items: each reads like an invoice but titles itself as another kind.
PURCHASE_ORDER = (
    "Northwind Foods Ltd\nPage 1 of 2\nPURCHASE ORDER\nBill From: Contoso Supplies\n"
    "Item: 40 cases of tomatoes, unit price 12.00, total amount 480.00, payment terms 30 days"
)
POS_RECEIPT = (
    "Corner Cafe - POS Receipt\nInvoice POS/0007/0042  Cashier: Ana\nCustomer: J. Doe\n"
    "2 x espresso 3.00  1 x croissant 2.50  Total amount 8.50  Paid by card"
)
# The kind named only in a field, above the document's own title.
INVOICE_WITH_ORDER_FIELD = (
    "Purchase Order No: 98765\nINVOICE\nBill to: Northwind Traders. Item: consulting services. "
    "Amount due: $1,250.00"
)


@pytest.mark.parametrize("text", [PURCHASE_ORDER, POS_RECEIPT])
def test_a_document_titled_as_a_kind_no_label_names_is_other(backend, text):
    assert scores(backend, text).label == "other", scores(backend, text).scores


def test_a_kind_named_in_a_field_is_not_the_documents_title(backend):
    assert title_kind("Place of receipt:\nShanghai") is None
    assert title_kind("Purchase Order No: 98765\nINVOICE") is None
    assert scores(backend, INVOICE_WITH_ORDER_FIELD).label == "invoice"


def test_a_numbered_form_is_not_a_common_kind_of_document(backend):
    # Payslip examples teach "employee", "withholding", "federal"; a W-4 is full of them.
    w4 = (
        "Form W-4\nEmployee's Withholding Certificate\nComplete Form W-4 so that your employer "
        "can withhold the correct federal income tax from your pay. Step 4: Deductions "
        "Worksheet. Estimate the employee's earnings and deductions for each pay period, "
        "wages, salary, federal income tax withheld, social security."
    )
    examples = [
        LabelledText(
            "payslip",
            f"Earnings statement {i}. Employee: J. Smith. Federal income tax withheld 210.00 "
            f"Social security 90.00 Medicare 21.00 Employee withholding. Net pay 1,9{i}0.00",
        )
        for i in range(4)
    ]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(4)]
    examples += [LabelledText("other", RECIPE.replace("six", str(i))) for i in range(4)]
    labels = [s for s in LABELS if s.label != "w9"]  # no label names a form number
    assert scores(backend, w4, labels=labels).label == "other"
    assert scores(backend, w4, examples, labels=labels).label == "other"


def test_a_pay_stub_that_never_names_itself_is_known_by_its_net_pay_line(backend):
    stub = (
        "State University Payroll Services\nPay Group: Non-Exempt  Pay Begin Date: 04/17/2020\n"
        "Pay End Date: 04/30/2020\nTax data: Federal, FL State\nDescription Rate Hours\n"
        "Regular 1,775.12 80.00\nOvertime 34.31 2.00\nFed Withholding 109.78\nFed OASDI "
        "114.70\nRetirement System 58.91\nTOTAL GROSS 1,963.76\nNET PAY 1,479.93\n"
        "Leave balances: Sick 427.50  Annual 134.25"
    )
    assert scores(backend, stub).label == "payslip", scores(backend, stub).scores


def test_a_state_return_titled_with_its_own_number_is_not_the_federal_form(backend):
    # Every word of the description fits; only the title's number says it is another form.
    labels = [
        LabelSpec("form_1040", "IRS Form 1040 U.S. Individual Income Tax Return"),
        LabelSpec("other", "Any document that is none of the above"),
    ]
    state = (
        "Illinois Department of Revenue\nIndividual Income Tax Return\nIL-1040 Front\n"
        "2021 Form IL-1040\nStep 2: Income\nFederal adjusted gross income from your federal "
        "Form 1040 or 1040-SR, Line 11.\nFederally tax-exempt interest from your federal Form "
        "1040 or 1040-SR, Line 2a.\nU.S. individual income tax return."
    )
    assert scores(backend, state, labels=labels).label == "other", scores(
        backend, state, labels=labels
    ).scores


def test_names_come_from_the_label_and_the_descriptions_opening_noun_phrases():
    (payslip, contract, order) = label_terms(
        [
            LabelSpec("payslip", "A pay stub or salary slip showing an employee's earnings"),
            LabelSpec("contract", "A legally binding agreement between two or more parties"),
            LabelSpec("purchase_order", "A buyer-issued document authorizing a purchase"),
        ]
    )
    assert {"payslip", "paystub", "salaryslip"} <= payslip.names
    assert {"contract", "agreement"} <= contract.names
    assert "purchaseorder" in order.names and "document" not in order.names  # no kind
    assert tokens("attach to Form 1040, or 1040-NR; IL-1040 W 9") == [
        "attach", "to", "form", "1040", "or", "1040", "nr", "il1040", "w9",
    ]  # fmt: skip
    assert not is_identifier("2023") and is_identifier("1099")


def _taught_request(key: str) -> ClassifyRequest:
    examples = [LabelledText("w9", W9 + f" copy {i}") for i in range(3)]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(3)]
    examples += [LabelledText("payslip", PAYSLIP.replace("J. Smith", f"J{i}")) for i in range(3)]
    return ClassifyRequest(
        model="local", labels=LABELS, pages=[INVOICE], examples=examples, training_key=key
    )


def test_a_trained_model_is_stored_and_used_after_a_restart(tmp_path, monkeypatch):
    import backend.backends.local as local

    settings = Settings(_env_file=None, storage_dir=tmp_path)
    first = LocalBackend(settings)._classify(_taught_request("clf:1:abc"))
    assert first.confidence_method == "local_trained"
    assert len(list((tmp_path / "models").glob("*.pkl"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(local, "train", no_training)
    restarted = LocalBackend(settings)
    assert restarted._classify(_taught_request("clf:1:abc")).scores == first.scores
    # Loaded once, then kept in memory: later requests do not read the file again.
    for stored in (tmp_path / "models").glob("*.pkl"):
        stored.unlink()
    assert restarted._classify(_taught_request("clf:1:abc")).scores == first.scores
    # Another version or example set is another model.
    with pytest.raises(AssertionError, match="trained again"):
        LocalBackend(settings)._classify(_taught_request("clf:2:abc"))


def test_an_unreadable_stored_model_is_trained_again(tmp_path):
    settings = Settings(_env_file=None, storage_dir=tmp_path)
    first = LocalBackend(settings)._classify(_taught_request("clf:1:abc"))
    (stored,) = (tmp_path / "models").glob("*.pkl")
    stored.write_bytes(b"truncated")
    again = LocalBackend(settings)._classify(_taught_request("clf:1:abc"))
    assert again.scores == pytest.approx(first.scores)
    assert stored.read_bytes() != b"truncated"


GENRES = [
    LabelSpec("invoice", "A bill from a seller asking the customer to pay for goods or services"),
    LabelSpec("receipt", "A receipt or till slip confirming a purchase that has already been paid"),
    LabelSpec("resume", "A resume, CV or biographical sketch of a person"),
    LabelSpec("correspondence", "A letter, memo, e-mail or press release addressed to someone"),
    LabelSpec("technical_document", "A research paper, technical standard, tutorial or manual"),
    LabelSpec("other", "Any other document"),
]
LETTER = "May 5, 2023\nTo Whom it May Concern:\nThe supplies arrived on Monday.\nBest Regards,\nAnn"
PAPER = (
    "Consensus in networks of peers\nA. Author, B. Author\nAbstract\nWe study agreement among "
    "peers.\n1. Introduction\nPrior work [1] and Smith et al. considered this.\n2. Conclusion\n"
    "We showed it.\nReferences\n[1] Lamport, L. doi:10.1145/357172"
)
RESUME = (
    "Jane Roe\nSoftware engineer\nExperience\nAcme Corp 2018 - present: backend developer\n"
    "Education\nBSc Computer Science, 2014 - 2018\nSkills\nPython, SQL"
)
APPLICATION = (
    "Membership application\nFull name: Jane Roe\nE-mail: jane@example.com\nPhone: 555 1234\n"
    "Date of birth: 01/02/1990\nClub section: tennis"
)


@pytest.mark.parametrize(
    ("text", "label"),
    [(LETTER, "correspondence"), (PAPER, "technical_document"), (RESUME, "resume")],
)
def test_a_genre_shows_by_its_shape_when_it_never_names_itself(backend, text, label):
    # None of these documents says "letter", "paper" or "resume": salutations and closings,
    # abstract and references, experience and education sections say it for them.
    assert scores(backend, text, labels=GENRES).label == label


def test_a_field_named_like_a_genre_does_not_make_a_form_that_genre(backend):
    # "E-mail:" is a field of the form, not what the form is.
    assert scores(backend, APPLICATION, labels=GENRES).label == "other"


def test_kinds_a_description_enumerates_are_names_of_the_label(backend):
    coarse = [
        LabelSpec(
            "financial",
            "A record of a payment, charge or earnings: invoice, receipt, bank statement, "
            "check or pay slip",
        ),
        LabelSpec("legal", "A legal document that binds parties: contract, lease or license"),
        LabelSpec("other", "Anything else"),
    ]
    receipt = "RECEIPT\nCoffee 3.50\nMuffin 2.75\nTotal 6.25\nCash 10.00\nChange 3.75\nThank you"
    assert scores(backend, receipt, labels=coarse).label == "financial"
    assert scores(backend, PAYSLIP, labels=coarse).label == "financial"
    lease = "RESIDENTIAL LEASE\nThe landlord hereby lets the premises to the tenant. The parties"
    assert scores(backend, lease + " agree as follows.", labels=coarse).label == "legal"
    assert scores(backend, RECIPE, labels=coarse).label == "other"
    terms = {t.label: t for t in label_terms(coarse)}
    assert {"invoic", "receipt", "bankstatement", "payslip"} <= terms["financial"].names
    assert "check" not in terms["financial"].names  # every form has check boxes


def test_a_label_listing_several_forms_takes_forms_the_list_leaves_out(backend):
    labels = [
        LabelSpec("tax_form", "A US tax form or return: IRS Form 1040, W-9, W-2, W-4 or 1099"),
        LabelSpec("invoice", "A bill from a seller asking the customer to pay"),
        LabelSpec("other", "Any other document"),
    ]
    form = (
        "Form 8889 Health Savings Accounts (HSAs) Department of the Treasury Internal Revenue "
        "Service. Attach to Form 1040. OMB No. 1545-0074. Tax year 2021."
    )
    assert scores(backend, form, labels=labels).label == "tax_form"


def test_trained_probabilities_never_reach_one_and_the_estimate_shows_its_uncertainty(backend):
    labels = [LabelSpec("alpha", "first kind"), LabelSpec("beta", "second kind")]
    examples = [
        LabelledText("alpha", f"harbour crane shipment container vessel {i}") for i in range(6)
    ]
    examples += [
        LabelledText("beta", f"violin concerto orchestra symphony rehearsal {i}") for i in range(6)
    ]
    text = "violin concerto orchestra symphony rehearsal " * 20
    result = scores(backend, text, examples, labels)
    assert result.label == "beta" and 0.5 < result.scores["beta"] < 1.0
    assert min(result.scores.values()) > 0
    estimate = estimate_accuracy(labels, examples)
    low, high = estimate["accuracy_interval"]
    assert estimate["too_few_examples"] is True and estimate["n_examples"] == 12
    assert low < estimate["accuracy"] <= high and high - low > 0.2  # 12 examples prove little


def test_wilson_interval():
    from backend.backends.local.trained import wilson_interval

    low, high = wilson_interval(9, 10)
    assert round(low, 3) == 0.596 and round(high, 3) == 0.982
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_models_name_the_method_results_report(backend):
    (info,) = backend.models()
    assert info.confidence_method == scores(backend, W9).confidence_method == "local_zero_shot"
    assert "local_trained" in info.description and "instructions" in info.description
