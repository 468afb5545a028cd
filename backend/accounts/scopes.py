"""Scoped API keys: what a key may do. Routes check it with `backend.deps.RequireScope`.

A key may also be limited to some classifiers: it then sees and uses only those, and cannot run
ad-hoc schemas (which would let it classify outside its classifiers).
"""

from backend.models import ApiKey

SCOPES: dict[str, str] = {
    "documents:read": "List documents, read their pages and page images",
    "documents:write": "Upload, extract and delete documents",
    "classify": "Classify and split documents, run classifiers and batches, read results",
    "classifiers:read": "List classifiers and their examples",
    "classifiers:write": "Create, change and delete classifiers and their examples",
    "evaluations": "Run evaluations and manage calibration",
    "reviews": "Read and answer the review queue",
    "webhooks": "Configure webhooks and read their deliveries",
    "account:read": "Read balance, usage, ledger and the key list",
    "account:write": "Change account settings (retention)",
    "keys:write": "Create and revoke this account's API keys",
    "admin": "Operator routes across accounts (admin keys only)",
}
# What a key gets when it is created without a scope list.
DEFAULT_SCOPES: tuple[str, ...] = tuple(s for s in SCOPES if s != "admin")


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return sorted(set(scopes), key=list(SCOPES).index)


def key_scopes(key: ApiKey) -> frozenset[str]:
    """A key's scopes. Keys from before scopes existed (None) keep everything they had."""
    scopes = set(DEFAULT_SCOPES) | {"admin"} if key.scopes is None else set(key.scopes)
    if not key.is_admin:
        scopes.discard("admin")
    return frozenset(scopes)


def classifier_allowed(key: ApiKey, classifier_id: str | None) -> bool:
    """Whether the key may use this classifier (None: an ad-hoc schema)."""
    if key.classifier_ids is None:
        return True
    return classifier_id is not None and classifier_id in key.classifier_ids
