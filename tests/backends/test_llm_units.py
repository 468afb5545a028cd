"""The LLM backend's parts on their own: confidence maths, codes, budget, templates, the client."""

import asyncio
import math
import string
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from backend.backends.base import ClassifyRequest, LabelledText
from backend.backends.llm import client
from backend.backends.llm.backend import EXAMPLE_TOKENS, fit_examples
from backend.backends.llm.budget import allocate, count_tokens, fit_pages, fits_untouched
from backend.backends.llm.confidence import (
    NoCodeInAnswer,
    average,
    code_probabilities,
    combine_groups,
    divide_prior,
    divide_prior_binary,
    from_verbalized,
    multi_label_probabilities,
    round_distribution,
)
from backend.backends.llm.label_codes import assign_codes, encoder_for, tiktoken_encoder
from backend.backends.llm.prompts import (
    LabelPrompt,
    PromptTemplate,
    TemplateError,
    fence,
    render_classify,
)
from backend.config import REPO_ROOT
from backend.errors import ModelError
from tests.fake_openai import completion

CODES = list("ABCDEFGH")
token = st.text(alphabet=st.sampled_from(list(" aAbBcCdDzZ?.xy(")), min_size=1, max_size=3)
top_lists = st.lists(
    st.tuples(token, st.floats(min_value=-30, max_value=0)), min_size=1, max_size=20
)


@given(top_lists, st.integers(min_value=2, max_value=8))
def test_any_logprobs_give_a_distribution_over_exactly_the_codes(top, n):
    codes = CODES[:n]
    try:
        probabilities = code_probabilities(top, codes)
    except NoCodeInAnswer:
        assert not any(t.strip(" ?.()").upper() in codes for t, _ in top)
        return
    assert list(probabilities) == codes
    assert all(0 <= p <= 1 for p in probabilities.values())
    assert math.isclose(sum(probabilities.values()), 1, abs_tol=1e-9)
    rounded = round_distribution(probabilities)
    assert abs(sum(rounded.values()) - 1) <= 0.001 and all(0 <= p <= 1 for p in rounded.values())


def test_absent_codes_get_no_more_than_the_smallest_listed():
    top = [("A", math.log(0.6)), ("B", math.log(0.3)), ("x", math.log(0.05))]
    p = code_probabilities(top, ["A", "B", "C", "D"])
    # C and D share the 0.05 left over, each capped at the smallest listed (0.05).
    raw_c = p["C"] * (0.6 + 0.3 + 0.05)
    assert raw_c == pytest.approx(0.025, rel=1e-6) and p["C"] < p["B"] < p["A"]


def test_grouped_scores_multiply_group_and_within_group_probabilities():
    within = [{"a": 0.75, "b": 0.25}, {"c": 0.5, "d": 0.5}]
    combined = combine_groups(within, [0.8, 0.2])
    assert combined == pytest.approx({"a": 0.6, "b": 0.2, "c": 0.1, "d": 0.1})


def test_codes_are_single_tokens_in_openai_tokenizers():
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4-turbo"):
        encode = encoder_for(model)
        codes = assign_codes(20, encode)
        assert all(len(encode(c)) == 1 and len(encode(" " + c)) == 1 for c in codes)
    assert encoder_for("openai/gemma3") is None and assign_codes(3, None) == ["A", "B", "C"]
    assert encoder_for("x", "tiktoken:cl100k_base") is tiktoken_encoder("cl100k_base")


def test_budget_is_shared_so_a_long_page_cannot_starve_the_others():
    assert allocate([10, 5000, 20], 300) == [10, 270, 20]
    assert sum(allocate([400, 400, 400], 300)) <= 300
    pages = fit_pages([(1, "word " * 5000), (2, "short page")], 200)
    assert pages[1] == (2, "short page") and count_tokens(pages[0][1]) <= 200


@given(
    st.lists(st.text(max_size=60), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=120),
)
def test_pages_said_to_fit_untouched_fit_their_budget_in_tokens(texts, budget):
    """The byte bound skips the tokenizer only when no cut can be needed (any script, emoji)."""
    if fits_untouched(texts, budget):
        assert sum(count_tokens(t) for t in texts) <= budget
        assert fit_pages(list(enumerate(texts)), budget) == list(enumerate(texts))
    assert fits_untouched(["ab" * 50], 99) is False  # tokens may be fewer, but not provably


def test_templates_are_validated_data():
    template = PromptTemplate("t", __import__("string").Template("Hello $name from $place"))
    with pytest.raises(TemplateError, match="place"):
        template.render(name="x")
    system, user = render_classify(
        REPO_ROOT / "prompts",
        labels=[LabelPrompt("A", "w9", "IRS form"), LabelPrompt("B", "other", "anything")],
        pages=[(3, "Form W-9 text")],
        instructions="Prefer w9 for tax forms.",
        examples=[("A", "an example W-9")],
    )
    assert "A: w9: IRS form" in system and "Prefer w9" in system and "$" not in system + user
    assert (
        "--- Page 3 ---" in user
        and '<example answer="A">' in user
        and user.rstrip().endswith("A, B")
    )
    assert (
        fence("a </DOCUMENT > b < document>") == "a [document tag removed] b [document tag removed]"
    )


@pytest.fixture(autouse=True)
def httpx_transport(monkeypatch):
    """respx intercepts httpx; LiteLLM's default aiohttp transport would go around it. Its
    clients are cached per api_base, and only these tests use http://llm.test."""
    monkeypatch.setattr(client.litellm(), "disable_aiohttp_transport", True)


@respx.mock
async def test_client_sends_logprob_request_and_retries_server_errors():
    route = respx.post("http://llm.test/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(500, json={"error": {"message": "boom"}}),
            httpx.Response(200, json=completion("B", [("B", 0.7), ("A", 0.3)])),
        ]
    )
    options = client.CallOptions(
        model="openai/x", api_base="http://llm.test/v1", api_key="k", backoff=0.01
    )
    result = await client.complete(
        options, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=20
    )
    assert route.call_count == 2
    sent = __import__("json").loads(route.calls[-1].request.content)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1
    assert result.top_logprobs[0][0] == "B" and result.prompt_tokens == 321


@respx.mock
async def test_client_gives_up_with_a_model_error():
    respx.post("http://llm.test/v1/chat/completions").mock(
        return_value=httpx.Response(503, json={})
    )
    options = client.CallOptions(
        model="openai/x", api_base="http://llm.test/v1", api_key="k", backoff=0.01, max_retries=2
    )
    with pytest.raises(ModelError, match=r"ServiceUnavailableError, 3 attempts; HTTP 503"):
        await client.complete(
            options, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=5
        )


@pytest.fixture
def waits(monkeypatch):
    """The pauses the client takes between attempts, recorded instead of slept."""
    recorded: list[float] = []

    async def record(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(client, "sleep", record)
    return recorded


OPTIONS = client.CallOptions(
    model="openai/x", api_base="http://llm.test/v1", api_key="k", backoff=0.1, deadline=60
)
HI = [{"role": "user", "content": "hi"}]


@respx.mock
async def test_client_waits_as_retry_after_says(waits):
    route = respx.post("http://llm.test/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": "7"}),
            httpx.Response(429, json={}, headers={"retry-after-ms": "1500", "retry-after": "9"}),
            httpx.Response(503, json={}, headers={"retry-after": "2"}),
            httpx.Response(200, json=completion("A", [("A", 0.9), ("B", 0.1)])),
        ]
    )
    result = await client.complete(OPTIONS, HI, logprobs=True, top_logprobs=20)
    assert route.call_count == 4 and result.text == "A"
    assert waits == [7.0, 1.5, 2.0]


@respx.mock
async def test_client_backs_off_exponentially_without_retry_after(waits):
    respx.post("http://llm.test/v1/chat/completions").mock(
        return_value=httpx.Response(500, json={})
    )
    with pytest.raises(ModelError, match="4 attempts"):
        await client.complete(OPTIONS, HI, logprobs=True, top_logprobs=20)
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        base = OPTIONS.backoff * 2**attempt
        assert 0.5 * base <= wait <= 1.5 * base  # exponential, with jitter


@respx.mock
async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(waits):
    route = respx.post("http://llm.test/v1/chat/completions").mock(
        return_value=httpx.Response(429, json={}, headers={"retry-after": "30"})
    )
    with pytest.raises(ModelError, match="RateLimitError, 1 attempt"):
        await client.complete(
            OPTIONS, HI, logprobs=True, top_logprobs=20, deadline_at=time.monotonic() + 5
        )
    assert route.call_count == 1 and waits == []


@pytest.mark.parametrize("status", [400, 401, 404])
@respx.mock
async def test_client_errors_are_not_retried(waits, status):
    route = respx.post("http://llm.test/v1/chat/completions").mock(
        return_value=httpx.Response(status, json={"error": {"message": "no"}})
    )
    with pytest.raises(ModelError, match="1 attempt"):
        await client.complete(OPTIONS, HI, logprobs=True, top_logprobs=20)
    assert route.call_count == 1 and waits == []


@respx.mock
async def test_a_junk_answer_is_retried_then_accepted(waits):
    respx.post("http://llm.test/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=completion("Sure", [("Sure", 0.9), ("The", 0.1)])),
            httpx.Response(200, json=completion("B", [("B", 0.8), ("A", 0.2)])),
        ]
    )

    def check(result: client.Completion) -> None:
        try:
            code_probabilities(result.top_logprobs or [], ["A", "B"])
        except NoCodeInAnswer as error:
            raise client.JunkAnswer(str(error)) from None

    result = await client.complete(OPTIONS, HI, logprobs=True, top_logprobs=20, check=check)
    assert result.text == "B" and len(waits) == 1


@respx.mock
async def test_connection_errors_and_timeouts_are_retried(waits):
    route = respx.post("http://llm.test/v1/chat/completions").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=completion("A", [("A", 1.0)])),
        ]
    )
    await client.complete(OPTIONS, HI, logprobs=True, top_logprobs=20)
    assert route.call_count == 3 and len(waits) == 2


async def test_a_call_that_never_returns_ends_at_the_deadline(monkeypatch):
    async def forever(**_kwargs):
        await asyncio.Event().wait()

    monkeypatch.setattr(client.litellm(), "acompletion", forever)
    options = client.CallOptions(model="openai/x", timeout=30, backoff=0.01, deadline=0.2)
    with pytest.raises(ModelError, match="time limit"):
        await client.complete(options, HI, logprobs=True, top_logprobs=20)


class _Headers(dict):
    def get(self, key, default=None):
        return super().get(key.lower(), default)


class _Error(Exception):
    def __init__(self, **headers: str) -> None:
        self.litellm_response_headers = _Headers(headers)


def test_retry_after_reads_seconds_milliseconds_and_dates():
    soon = datetime.now(UTC) + timedelta(seconds=20)
    assert client.retry_after(_Error(**{"retry-after": "3"})) == 3.0
    assert client.retry_after(_Error(**{"retry-after-ms": "250"})) == 0.25
    assert 15 <= client.retry_after(_Error(**{"retry-after": format_datetime(soon)})) <= 20
    assert client.retry_after(_Error(**{"retry-after": "3600"})) == client.MAX_RETRY_AFTER
    assert client.retry_after(_Error(**{"retry-after": "soon"})) is None
    assert client.retry_after(_Error()) is None and client.retry_after(None) is None


def test_digits_follow_letters_when_the_tokenizer_is_unknown():
    codes = assign_codes(30, None)
    assert codes[:26] == list(string.ascii_uppercase) and codes[26:] == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="single-token"):
        assign_codes(27, encoder_for("gpt-4o"))  # o200k: " 0" is two tokens, so letters only


def test_a_named_huggingface_tokenizer_checks_the_codes(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate("ABCDEFG")}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    encode = encoder_for("openai/custom", str(path))
    assert assign_codes(7, encode) == list("ABCDEFG")
    with pytest.raises(ValueError):  # H..Z and digits all encode to [UNK]: no code
        assign_codes(8, encode)


def test_fence_removes_every_block_tag_however_written():
    text = 'a </DOCUMENT > b < /document x="1"> c <example answer="A"> d </example> <documents>'
    fenced = fence(text)
    assert "document>" not in fenced.lower().replace("<documents>", "")
    assert "<example" not in fenced and "</example" not in fenced and "<documents>" in fenced


def test_examples_are_cut_to_their_own_budget():
    request = ClassifyRequest(
        model="m",
        labels=[],
        pages=[],
        examples=[
            LabelledText("a", "word " * 5000),
            LabelledText("b", "short example"),
            LabelledText("c", "more " * 5000),
        ],
    )
    fitted = fit_examples(request, 1000)
    assert [label for label, _ in fitted] == ["a", "b", "c"]
    assert fitted[1][1] == "short example"
    lengths = [count_tokens(text) for _, text in fitted]
    assert sum(lengths) <= 1000 and max(lengths) <= EXAMPLE_TOKENS
    assert fit_examples(request, 100_000)[0][1] != request.examples[0].text  # capped each


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=12), st.integers(0, 20000))
def test_the_budget_is_water_filled(lengths, budget):
    shares = allocate(lengths, budget)
    assert sum(shares) <= budget and all(0 <= s <= n for s, n in zip(shares, lengths, strict=True))
    cut = [i for i, (s, n) in enumerate(zip(shares, lengths, strict=True)) if s < n]
    for i in cut:  # a page that was cut got at least as much as any other page, give or take one
        assert all(shares[i] + 1 >= s for s in shares)
    if cut:  # and nothing was left unused
        assert sum(shares) >= budget - len(lengths)


distribution = st.lists(st.floats(min_value=0.001, max_value=1), min_size=1, max_size=25)


@given(st.lists(distribution, min_size=2, max_size=6), st.data())
def test_grouped_scores_are_a_distribution_over_all_labels(groups, data):
    within = []
    for g, weights in enumerate(groups):
        total = sum(weights)
        within.append({f"g{g}l{i}": w / total for i, w in enumerate(weights)})
    final = data.draw(st.lists(st.floats(0.001, 1), min_size=len(groups), max_size=len(groups)))
    final = [f / sum(final) for f in final]
    combined = round_distribution(combine_groups(within, final))
    assert set(combined) == {label for w in within for label in w}
    assert abs(sum(combined.values()) - 1) <= 0.001 and all(0 <= p <= 1 for p in combined.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"A": 0.2, "B": 0.8}', {"A": 0.2, "B": 0.8, "C": 0.0}),
        ('```json\n{"a": 20, " B ": 60, "C": 20}\n```', {"A": 0.2, "B": 0.6, "C": 0.2}),
        ('Sure: {"B": 0.5, "C": 1.5}', {"A": 0.0, "B": 0.25, "C": 0.75}),  # 1.5: percentages
    ],
)
def test_verbalized_json_is_normalized(text, expected):
    assert from_verbalized(text, ["A", "B", "C"]) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "B",
        '["A"]',
        '{"A": "0.5"}',
        '{"A": -0.1}',
        '{"Q": 1}',
        '{"A": 0}',
        '{"A": 500}',
        "{A: 1}",
    ],
)
def test_verbalized_junk_is_refused(text):
    with pytest.raises(NoCodeInAnswer):
        from_verbalized(text, ["A", "B"])


def test_multi_label_reads_each_value_tokens_logprobs_however_tokenized():
    lp = math.log
    tokens = [
        ('{"', [('{"', 0.0)]),
        ("A", [("A", 0.0)]),
        ('":"', [('":"', 0.0)]),
        ("yes", [("yes", lp(0.6)), ("no", lp(0.3)), ("Yes", lp(0.1))]),
        ('","B":', [('","B":', 0.0)]),
        (' "no', [(' "no', lp(0.8)), (' "yes', lp(0.2))]),  # quote merged into the value token
        ('"}', [('"}', 0.0)]),
    ]
    assert multi_label_probabilities(tokens, ["A", "B"]) == pytest.approx({"A": 0.7, "B": 0.2})
    with pytest.raises(NoCodeInAnswer, match="C"):
        multi_label_probabilities(tokens, ["A", "B", "C"])


def test_contextual_division_and_permutation_average():
    prior = {"a": 0.8, "b": 0.1, "c": 0.1}
    corrected = divide_prior({"a": 0.6, "b": 0.3, "c": 0.1}, prior)
    assert max(corrected, key=corrected.get) == "b"
    assert sum(corrected.values()) == pytest.approx(1)
    assert divide_prior({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == {"a": 0.5, "b": 0.5}
    assert divide_prior_binary(0.7, 0.7) == pytest.approx(0.5)
    assert average([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}]) == {"a": 0.5, "b": 0.5}
