"""The LLM backend's parts on their own: confidence maths, codes, budget, templates, the client."""

import math

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from backend.backends.llm import client
from backend.backends.llm.budget import allocate, count_tokens, fit_pages
from backend.backends.llm.confidence import (
    NoCodeInAnswer,
    code_probabilities,
    combine_groups,
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
    with pytest.raises(ModelError, match="after retries"):
        await client.complete(
            options, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=5
        )
