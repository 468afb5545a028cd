"""Logs never carry document content: a token planted in a document (and echoed back by the model,
and in a provider's error) appears in no log line of a full run, at any level from INFO up. Every
line on stderr, DocSift's and the libraries' (Alembic, Procrastinate, MCP), is one JSON object.
"""

import json
import logging
import uuid

import pytest

from backend.backends.llm import LiteLLMBackend, client
from backend.config import ModelConfig
from tests.conftest import make_settings, start_harness
from tests.fake_openai import FakeOpenAI, Reply, codes_reply, completion
from tests.fixtures.documents import text_pdf
from tests.fixtures.formats import eml_bytes

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "letter", "description": "Correspondence"},
]


@pytest.fixture
def fake_server():
    server = FakeOpenAI().start()
    yield server
    server.stop()


async def test_a_full_run_logs_no_document_content(
    database_url, tmp_path, fake_server, fake_backend, monkeypatch, caplog, capfd
):
    token = f"secret{uuid.uuid4().hex}"
    settings = make_settings(
        database_url,
        tmp_path,
        log_json=True,
        log_level="DEBUG",  # DocSift's own debug lines too; the check is for INFO and above
        model_backoff_seconds=0.01,
        model_timeout_seconds=2.0,
        model_total_timeout_seconds=6.0,
        models=[
            ModelConfig(
                name="tiny", litellm_model="openai/tiny", api_base=fake_server.base_url, api_key="x"
            )
        ],
    )
    answers = iter(
        [
            # A provider error quoting the prompt, then an answer that is not a code but text.
            Reply(status=500, body={"error": {"message": f"bad prompt: {token}"}}),
            Reply(body=completion(f"The answer is {token}", None)),
        ]
    )
    backend = LiteLLMBackend(settings)
    caplog.set_level(logging.INFO)
    async for harness in start_harness(settings, [fake_backend, backend]):
        await backend._litellm_ready()
        warm = client.CallOptions(model="openai/warm", api_base=fake_server.base_url, api_key="k")
        await client.complete(
            warm, [{"role": "user", "content": "hi"}], logprobs=False, top_logprobs=0
        )
        fake_server.responder = lambda _r: next(answers, codes_reply([0.8, 0.2]))
        tenant = await harness.tenant(credits=1000)
        http, headers = harness.client, tenant.headers
        mail = eml_bytes(
            f"About {token}",
            f"Dear customer, your reference is {token}.",
            [(f"{token}.pdf", "application/pdf", text_pdf([f"INVOICE {token} total 5"]))],
        )
        r = await http.post("/v1/documents", headers=headers, files={"file": ("m.eml", mail)})
        assert r.status_code == 201, r.text
        doc = r.json()
        child = doc["children"][0]["document_id"]
        assert token in (await http.get(f"/v1/documents/{child}/pages/1", headers=headers)).text
        for _ in range(3):  # the error, the junk answer, then a real one
            r = await http.post(
                "/v1/classify",
                json={"document_id": child, "classification_schema": SCHEMA, "query_model": "tiny"},
                headers=headers,
            )
        assert r.status_code == 200, r.text
        assert token in json.dumps(fake_server.requests)  # the prompt did carry it
        r = await http.post(
            "/v1/classifiers", json={"name": "c", "classification_schema": SCHEMA}, headers=headers
        )
        classifier = r.json()["classifier_id"]
        r = await http.post(
            f"/v1/classifiers/{classifier}/examples",
            json={"document_id": child, "label": "invoice"},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        r = await http.post(
            f"/v1/classifiers/{classifier}/run",
            json={"document_id": doc["document_id"], "query_model": "tiny"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            "/v1/classify",
            json={"document_id": "nope", "classification_schema": SCHEMA},
            headers=headers,
        )
        assert r.status_code == 404
        r = await http.delete(f"/v1/documents/{doc['document_id']}", headers=headers)
        assert r.status_code == 200

    leaked = [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.INFO
        and (token in r.getMessage() or (r.exc_text and token in r.exc_text))
    ]
    assert leaked == []
    err = capfd.readouterr().err
    assert token not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    loggers = set()
    for line in lines:
        record = json.loads(line)  # not a Rich box, not a plain-text line
        loggers.add(record["logger"].split(".")[0])
    assert {"docsift", "alembic"} <= loggers


def test_litellm_warnings_share_the_json_format(monkeypatch, capfd):
    """LiteLLM is imported lazily, after logging is configured, and installs its own plain-text
    handler then (propagation off): its warnings must still come out as DocSift's JSON lines."""
    from backend import observability

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    litellm_logger = logging.getLogger("LiteLLM")
    saved_litellm = litellm_logger.handlers[:], litellm_logger.propagate, litellm_logger.level
    try:
        observability.configure_logging(json_logs=True, level="INFO")

        class ItsOwnHandler(logging.StreamHandler):  # what `import litellm` installs
            pass

        litellm_logger.addHandler(ItsOwnHandler())
        litellm_logger.propagate = False
        monkeypatch.setattr(client, "_litellm", None)
        client.litellm()  # the lazy first use
        litellm_logger.warning("LoggingWorker: event loop changed")
        lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert record["logger"] == "LiteLLM"
        assert record["message"] == "LoggingWorker: event loop changed"
        assert (
            litellm_logger.getEffectiveLevel() == logging.WARNING
        )  # its INFO line per call stays off
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        litellm_logger.handlers[:], litellm_logger.propagate, lvl = saved_litellm
        litellm_logger.setLevel(lvl)
