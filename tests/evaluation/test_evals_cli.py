"""`python -m evals.run` end to end against a DocSift server on 127.0.0.1 (uvicorn in a thread)."""

import asyncio
import json

import httpx
import pytest

from backend.accounts.service import create_account
from backend.backends.fake import FunctionBackend
from backend.backends.registry import BackendRegistry
from backend.db import create_engine, create_sessionmaker
from backend.main import create_app
from backend.migrate import upgrade
from evals import run as evals_run
from tests.conftest import make_settings
from tests.fixtures.documents import text_pdf
from tests.served import serve_in_thread

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def answer(request):
    text = " ".join(request.pages).lower()
    return {"invoice": 0.9, "other": 0.1} if "invoice" in text else {"invoice": 0.2, "other": 0.8}


def strict_answer(request):
    """Invoices only when the text starts with "invoice": right on the copy that mentions one."""
    text = " ".join(request.pages).lower()
    if text.startswith("invoice"):
        return {"invoice": 0.9, "other": 0.1}
    return {"invoice": 0.2, "other": 0.8}


async def _account(url: str) -> str:
    engine = create_engine(url)
    await upgrade(engine)
    async with create_sessionmaker(engine)() as session:
        _, key = await create_account(session, name="cli", credits=1000, key_prefix="dsk_")
        await session.commit()
    await engine.dispose()
    return key


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    key = asyncio.run(_account(url))
    backends = [FunctionBackend(answer), FunctionBackend(strict_answer, model_names=("strict",))]
    app = create_app(make_settings(url, tmp_path), backends=BackendRegistry(backends))
    served = serve_in_thread(app)
    yield served.url, key
    served.stop()


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "set"
    texts = {
        "invoice": ["invoice 1 amount due", "invoice 2 total"],
        "other": ["a letter", "an invoice copy for info"],
    }
    for label, pages in texts.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(pages):
            (root / label / f"{i}.pdf").write_bytes(text_pdf([text]))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    return root, schema


def cli(root, schema, url, key, out, *extra) -> int:
    return evals_run.main(
        [str(root), "--schema", str(schema), "--api-url", url, "--api-key", key, "--out", str(out)]
        + list(extra)
    )


def test_cli_writes_a_report_that_agrees_with_its_items(server, dataset, tmp_path, capsys):
    url, key = server
    root, schema = dataset
    out = tmp_path / "out"
    assert cli(root, schema, url, key, out, "--model", "fake", "--min-accuracy", "0.7") == 0
    report = json.loads((out / "report.json").read_text())
    items = report["items"]
    assert sorted(i["file"] for i in items) == [
        "invoice/0.pdf",
        "invoice/1.pdf",
        "other/0.pdf",
        "other/1.pdf",
    ]
    assert all(i["expected_label"] == i["file"].split("/")[0] for i in items)
    right = sum(i["expected_label"] == i["predicted_label"] for i in items)
    assert report["accuracy"] == right / 4 == 0.75
    assert report["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert report["per_label"]["invoice"]["precision"] == round(2 / 3, 4)
    assert report["cost"]["credits"] == report["credits"] == 4
    assert set(report["latency"]) == {"p50", "p95", "mean"} and report["latency"]["p50"] > 0
    assert {"macro_f1", "ece", "brier", "tokens", "coverage", "reliability"} <= report.keys()
    assert report["documents"] == {"evaluated": 4, "reused": 0, "not_uploaded": []}
    # the console shows the same run
    with httpx.Client(base_url=url, headers={"x-api-key": key}) as api:
        run = api.get(f"/v1/evaluations/{report['evaluation_id']}").json()
    assert run["metrics"]["accuracy"] == report["accuracy"] and run["status"] == "completed"
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    assert set(report["review"]) >= {"auroc", "errors_caught", "risk_coverage", "at_accuracy"}
    markdown = (out / "report.md").read_text()
    assert "Review: AUROC of confidence" in markdown
    assert "| invoice |" in markdown and "other/1.pdf | other | invoice" in markdown

    # below --min-accuracy: exit 1, for CI
    assert (
        cli(root, schema, url, key, tmp_path / "again", "--model", "fake", "--min-accuracy", "0.9")
        == 1
    )

    # another model over the same documents, reusing them, then the comparison
    strict = tmp_path / "strict"
    with httpx.Client(base_url=url, headers={"x-api-key": key}) as api:
        before = api.get("/v1/documents").json()["total"]
    assert (
        cli(
            root, schema, url, key, strict, "--model", "strict", "--reuse", str(out / "report.json")
        )
        == 0
    )
    with httpx.Client(base_url=url, headers={"x-api-key": key}) as api:
        assert api.get("/v1/documents").json()["total"] == before  # nothing uploaded again
    strict_report = json.loads((strict / "report.json").read_text())
    assert strict_report["documents"]["reused"] == 4 and strict_report["accuracy"] == 1.0
    capsys.readouterr()
    assert evals_run.main(["--compare", str(out / "report.json"), str(strict / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "+0.25" in printed
    assert "1 documents changed prediction: 1 now right, 0 now wrong" in printed
    assert "other/1.pdf: invoice -> other" in printed


def test_manifest_datasets_and_label_columns(tmp_path):
    from evals.dataset import read_dataset

    (tmp_path / "a.pdf").write_bytes(b"x")
    (tmp_path / "MANIFEST.tsv").write_text("file\tlabel\tlabel2\na.pdf\tw9\tother\n")
    assert [(e.path.name, e.label) for e in read_dataset(tmp_path, "label2")] == [
        ("a.pdf", "other")
    ]
    with pytest.raises(SystemExit):
        read_dataset(tmp_path, "label3")
