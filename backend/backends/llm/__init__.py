"""LLM models through LiteLLM: prompts, label codes, token budget, logprob confidence."""

from backend.backends.llm.backend import LiteLLMBackend

__all__ = ["LiteLLMBackend"]
