"""Short answer codes for labels, each one token for the model's tokenizer.

The model answers with a code, never a label name, so one next-token distribution covers every
label. Codes are capital letters: a single token in tiktoken's o200k_base and cl100k_base (checked
here in code, with and without a leading space) and, in practice, in every BPE or SentencePiece
vocabulary, which is what we rely on for servers whose tokenizer we cannot inspect (Ollama, vLLM,
llama.cpp); an operator may name a `tokenizer.json` for a model to have its codes checked too.
One call never needs more than 26 codes: larger label sets are scored in groups (confidence.py).
"""

import string
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import tiktoken

LETTERS = tuple(string.ascii_uppercase)

Tokenize = Callable[[str], list[int]]


@lru_cache
def tiktoken_encoder(name: str) -> Tokenize:
    return tiktoken.get_encoding(name).encode


@lru_cache
def huggingface_encoder(path: str) -> Tokenize:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(path)))
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def encoder_for(model: str, tokenizer: str | None = None) -> Tokenize | None:
    """The tokenizer to check codes with, or None when it cannot be inspected."""
    if tokenizer:
        if tokenizer.startswith("tiktoken:"):
            return tiktoken_encoder(tokenizer.removeprefix("tiktoken:"))
        return huggingface_encoder(tokenizer)
    bare = model.rsplit("/", 1)[-1]
    if bare.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")):
        return tiktoken_encoder("o200k_base")
    if bare.startswith(("gpt-4", "gpt-3.5")):
        return tiktoken_encoder("cl100k_base")
    return None


@lru_cache(maxsize=64)
def _single_token_letters(encode: Tokenize) -> tuple[str, ...]:
    return tuple(c for c in LETTERS if len(encode(c)) == 1 and len(encode(" " + c)) == 1)


def assign_codes(n: int, encode: Tokenize | None) -> list[str]:
    """`n` codes (n <= 26), verified single tokens when the tokenizer is known."""
    letters = _single_token_letters(encode) if encode is not None else LETTERS
    if n > len(letters):
        raise ValueError(
            f"only {len(letters)} single-token codes for this tokenizer; asked for {n}"
        )
    return list(letters[:n])
