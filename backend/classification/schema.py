"""The classification schema: labels with descriptions, validated before any work is done."""

import unicodedata

from pydantic import BaseModel, Field

from backend.backends.base import LabelSpec
from backend.config import Settings
from backend.errors import InvalidRequest


class SchemaItem(BaseModel):
    label: str = Field(description="The category name returned as `classification`")
    description: str = Field(default="", description="What documents of this category are")


def validate_schema(items: list[SchemaItem], settings: Settings) -> list[LabelSpec]:
    """Labels ready to classify with, or invalid_request saying what is wrong."""
    if len(items) < 2:
        raise InvalidRequest("classification_schema needs at least 2 labels.")
    if len(items) > settings.max_labels:
        raise InvalidRequest(
            f"classification_schema has {len(items)} labels; the limit is {settings.max_labels}."
        )
    seen: set[str] = set()
    specs = []
    for position, item in enumerate(items, start=1):
        label = item.label.strip()
        if not label:
            raise InvalidRequest(f"Label {position} is empty.")
        if any(unicodedata.category(ch) == "Cc" for ch in label):
            raise InvalidRequest(f"Label {position} contains a line break or control character.")
        if len(label) > settings.max_label_chars:
            raise InvalidRequest(
                f"Label {position} is longer than {settings.max_label_chars} characters."
            )
        if len(item.description) > settings.max_description_chars:
            raise InvalidRequest(
                f"The description of '{label}' is longer than {settings.max_description_chars} characters."
            )
        if label.casefold() in seen:
            raise InvalidRequest(f"Duplicate label '{label}': labels must be unique.")
        seen.add(label.casefold())
        specs.append(LabelSpec(label=label, description=item.description.strip()))
    return specs


def schema_json(specs: list[LabelSpec]) -> list[dict[str, str]]:
    return [{"label": s.label, "description": s.description} for s in specs]


def specs_from_json(items: list[dict[str, str]]) -> list[LabelSpec]:
    return [LabelSpec(label=i["label"], description=i.get("description", "")) for i in items]
