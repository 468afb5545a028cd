"""The embedded `local` model: zero-shot from descriptions, training from examples, no network."""

import socket

import pytest

from backend.backends.base import ClassifyRequest, LabelledText, LabelSpec
from backend.backends.local import LocalBackend, estimate_accuracy
from backend.backends.local.zero_shot import is_catch_all
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
