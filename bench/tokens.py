"""Prompt tokens per classification for 1-, 2- and 10-page documents, and what they cost.

    python -m bench.tokens      # writes bench/results/tokens.json

Counts the exact messages DocSift sends (rendered from prompts/ with the 4-label DocumentPro
schema) with tiktoken's o200k_base, the gpt-4o family's tokenizer; completion tokens are the one
code token asked for (max_tokens=1). Prices from LiteLLM's bundled price map.
"""

import backend.offline  # noqa: F401, I001

import json

from backend.backends.llm.budget import count_tokens, fit_pages
from backend.backends.llm.prompts import LabelPrompt, render_classify
from backend.config import REPO_ROOT, Settings
from bench.harness import write_result

SCHEMA = [
    ("invoice", "A document requesting payment for goods or services rendered"),
    ("purchase_order", "A buyer-issued document authorizing a purchase from a supplier"),
    ("contract", "A legally binding agreement between two or more parties"),
    ("other", "Any document that does not fit the above categories"),
]
# A dense page of business text, about 700 tokens.
PAGE = (
    "Invoice 2024-117. Bill to: Northwind Traders, 12 Harbour Road. Item: consulting services, "
    "40 hours at 95.00 EUR. Subtotal 3,800.00, VAT 21% 798.00, total due 4,598.00 EUR. "
) * 18
MESSAGE_OVERHEAD = 7  # chat format tokens per request (2 messages + reply priming)


def prompt_tokens(pages: int, budget: int) -> int:
    fitted = fit_pages([(n, PAGE) for n in range(1, pages + 1)], budget)
    system, user = render_classify(
        REPO_ROOT / "prompts",
        labels=[
            LabelPrompt(code, label, description)
            for code, (label, description) in zip("ABCD", SCHEMA, strict=True)
        ],
        pages=fitted,
        instructions=None,
        examples=[],
    )
    return count_tokens(system) + count_tokens(user) + MESSAGE_OVERHEAD


def main() -> None:
    import litellm

    budget = Settings(_env_file=None).max_prompt_tokens
    rows = {}
    for pages in (1, 2, 10):
        tokens = prompt_tokens(pages, budget)
        row = {"prompt_tokens": tokens, "completion_tokens": 1}
        for model in ("gpt-4o-mini", "gpt-4o"):
            price = litellm.model_cost[model]
            per_call = tokens * price["input_cost_per_token"] + price["output_cost_per_token"]
            row[f"usd_per_1000_{model}"] = round(per_call * 1000, 4)
        rows[f"{pages}_pages"] = row
    result = {
        "page_tokens_unbudgeted": count_tokens(PAGE),
        "budget": budget,
        "per_document": rows,
        "command": "python -m bench.tokens",
    }
    write_result("tokens", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
