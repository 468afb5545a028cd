"""Short answer codes for labels, each one token for the model's tokenizer.

The model answers with a code, never a label name, so one next-token distribution covers every
label. Codes are capital letters A..Z, then digits 0..9. For the OpenAI families the tokenizer is
known (tiktoken o200k_base for gpt-4o and newer, cl100k_base for gpt-4 and gpt-3.5) and a
candidate is kept only if it is one token both bare and after a space (" A"), so whichever way the
model starts its answer the first token is the whole code. An operator may name a model's
tokenizer (`ModelConfig.tokenizer`: a HuggingFace `tokenizer.json` path or `tiktoken:<encoding>`)
to have its codes checked the same way. For servers whose tokenizer cannot be inspected (Ollama,
vLLM, llama.cpp) the candidates are used unchecked: single ASCII letters and digits are single
tokens in practically every BPE and SentencePiece vocabulary.

One call never needs more codes than fit the top-logprobs window; larger label sets are scored
in groups (see confidence.py).
"""

import string
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import tiktoken

CANDIDATES = tuple(string.ascii_uppercase + string.digits)

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
def available_codes(encode: Tokenize | None) -> tuple[str, ...]:
    """Every usable code for a tokenizer, in order (letters first)."""
    if encode is None:
        return CANDIDATES
    single = {
        c: encode(c)[0] for c in CANDIDATES if len(encode(c)) == 1 and len(encode(" " + c)) == 1
    }
    ids = list(single.values())
    # Codes sharing a token id (e.g. all mapped to an unknown-token id) cannot be told apart.
    return tuple(c for c, token in single.items() if ids.count(token) == 1)


def assign_codes(n: int, encode: Tokenize | None) -> list[str]:
    """`n` codes, verified single tokens when the tokenizer is known."""
    codes = available_codes(encode)
    if n > len(codes):
        raise ValueError(f"only {len(codes)} single-token codes for this tokenizer; asked for {n}")
    return list(codes[:n])
