"""Shared by the evaluation tests: a two-label schema and a keyword fake model."""

from backend.backends.base import ClassifyRequest

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def keyword_answer(request: ClassifyRequest) -> dict[str, float]:
    """Right for documents that say 'invoice', wrong (and overconfident) for 'receipt'."""
    text = " ".join(request.pages).lower()
    if "invoice" in text or "receipt" in text:
        return {"invoice": 0.99, "other": 0.01}
    return {"invoice": 0.01, "other": 0.99}
