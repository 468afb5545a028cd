"""`python -m evals.run` end to end against a DocSift server on 127.0.0.1 (uvicorn in a thread)."""

import asyncio
import json
import threading
import time

import pytest
import uvicorn

from backend.accounts.service import create_account
from backend.backends.fake import FunctionBackend
from backend.backends.registry import BackendRegistry
from backend.db import create_engine, create_sessionmaker
from backend.main import create_app
from backend.migrate import upgrade
from evals import run as evals_run
from tests.conftest import make_settings
from tests.fake_openai import _free_port
from tests.fixtures.documents import text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def answer(request):
    text = " ".join(request.pages).lower()
    return {"invoice": 0.9, "other": 0.1} if "invoice" in text else {"invoice": 0.2, "other": 0.8}


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
    app = create_app(
        make_settings(url, tmp_path), backends=BackendRegistry([FunctionBackend(answer)])
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", key
    server.should_exit = True
    thread.join(10)


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


def test_cli_writes_a_report_that_agrees_with_its_items(server, dataset, tmp_path, capsys):
    url, key = server
    root, schema = dataset
    out = tmp_path / "out"
    code = evals_run.main(
        [
            str(root),
            "--schema",
            str(schema),
            "--model",
            "fake",
            "--api-url",
            url,
            "--api-key",
            key,
            "--out",
            str(out),
            "--min-accuracy",
            "0.7",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    items = report["items"]
    assert len(items) == 4 and {i["expected_label"] for i in items} == {"invoice", "other"}
    right = sum(i["expected_label"] == i["predicted_label"] for i in items)
    assert report["accuracy"] == right / 4 == 0.75
    assert report["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert {"macro_f1", "per_label", "ece", "brier"} <= report.keys()
    assert (out / "confusion_matrix.png").stat().st_size > 1000 and (
        out / "reliability.png"
    ).stat().st_size > 1000
    assert "| invoice |" in (out / "report.md").read_text()

    failing = evals_run.main(
        [
            str(root),
            "--schema",
            str(schema),
            "--model",
            "fake",
            "--api-url",
            url,
            "--api-key",
            key,
            "--out",
            str(tmp_path / "again"),
            "--min-accuracy",
            "0.9",
        ]
    )
    assert failing == 1
    capsys.readouterr()
    assert (
        evals_run.main(
            ["--compare", str(out / "report.json"), str(tmp_path / "again" / "report.json")]
        )
        == 0
    )
    assert "accuracy" in capsys.readouterr().out


def test_manifest_datasets_and_label_columns(tmp_path):
    from evals.dataset import read_dataset

    (tmp_path / "a.pdf").write_bytes(b"x")
    (tmp_path / "MANIFEST.tsv").write_text("file\tlabel\tlabel2\na.pdf\tw9\tother\n")
    assert [(e.path.name, e.label) for e in read_dataset(tmp_path, "label2")] == [
        ("a.pdf", "other")
    ]
    with pytest.raises(SystemExit):
        read_dataset(tmp_path, "label3")
