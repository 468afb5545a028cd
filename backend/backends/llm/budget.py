"""Cut the document text to a token budget, shared fairly between the selected pages.

Water-filling: short pages keep all their text and what they leave is split among the longer
ones, so a long first page cannot starve the rest.
"""

from functools import lru_cache

import tiktoken


@lru_cache
def _encoding() -> tiktoken.Encoding:
    # o200k approximates other tokenizers well enough for a budget.
    return tiktoken.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def allocate(lengths: list[int], budget: int) -> list[int]:
    """Tokens each page may keep: never more than it has, the total within `budget`."""
    shares = [0] * len(lengths)
    remaining = budget
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for position, index in enumerate(order):
        fair = remaining // (len(order) - position)
        shares[index] = min(lengths[index], fair)
        remaining -= shares[index]
    return shares


def fits_untouched(texts: list[str], budget: int, *, cap: int | None = None) -> bool:
    """True when no cut can be needed, without tokenizing: a BPE token is at least one byte, so
    a text has at most as many tokens as UTF-8 bytes. Most requests (a page or two) pass, and
    `fit_pages` then costs microseconds instead of a tokenizer run."""
    sizes = [len(text.encode()) for text in texts]
    return sum(sizes) <= budget and (cap is None or max(sizes, default=0) <= cap)


def fit_pages(
    pages: list[tuple[int, str]], budget: int, *, cap: int | None = None
) -> list[tuple[int, str]]:
    """The pages' text cut to `budget` tokens in all, and `cap` each (page numbers kept)."""
    if fits_untouched([text for _, text in pages], budget, cap=cap):
        return list(pages)
    encoding = _encoding()
    tokens = [encoding.encode(text, disallowed_special=()) for _, text in pages]
    wanted = [len(t) if cap is None else min(len(t), cap) for t in tokens]
    shares = allocate(wanted, budget)
    fitted = []
    for (number, text), toks, share in zip(pages, tokens, shares, strict=True):
        if share < len(toks):
            # A cut can split a multi-byte character: drop the broken tail, not a whole word.
            text = encoding.decode(toks[:share]).rstrip("\ufffd")
        fitted.append((number, text))
    return fitted
