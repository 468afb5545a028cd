"""Prompt templates as data: files in `prompts/`, `$name` placeholders, every one required.

A template whose placeholders do not match what the code supplies is an error at load time, and
rendering with a missing value is an error, never a blank.
"""

import re
import string
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

# What each template must use, exactly: a typo in a template fails loudly at start-up.
# How the model answers (see confidence.py): one code, a JSON distribution, JSON yes/no per code
# (multi-label, read through logprobs), JSON probability per code (multi-label without them).
ANSWERS = ("code", "distribution", "multi_label", "multi_label_distribution")

REQUIRED: dict[str, set[str]] = {
    "classify.system": {"categories", "instructions", "reply"},
    "classify.user": {"examples", "document", "ask"},
    "classify.category": {"code", "label", "description"},
    "classify.instructions": {"instructions"},
    "classify.example": {"code", "text"},
    "classify.examples": {"examples"},
    **{f"answer.{a}.reply": set() for a in ANSWERS},
    **{f"answer.{a}.ask": {"codes"} for a in ANSWERS},
}

# Any opening or closing tag of the blocks the templates use, however spaced or attributed.
_BLOCK_TAG = re.compile(r"<\s*/?\s*(document|example)\b[^>]*>", re.IGNORECASE)


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    template: string.Template

    @cached_property  # rendered per request; the template never changes
    def variables(self) -> set[str]:
        return {
            m.group("named") or m.group("braced")
            for m in self.template.pattern.finditer(self.template.template)
            if m.group("named") or m.group("braced")
        }

    def render(self, **values: str) -> str:
        missing = self.variables - values.keys()
        if missing:
            raise TemplateError(f"template {self.name} needs {sorted(missing)}")
        return self.template.substitute(values)


@lru_cache
def load_templates(folder: str) -> dict[str, PromptTemplate]:
    templates = {}
    for name, required in REQUIRED.items():
        path = Path(folder) / f"{name}.txt"
        if not path.is_file():
            raise TemplateError(f"missing prompt template {path}")
        template = PromptTemplate(name, string.Template(path.read_text(encoding="utf-8")))
        if template.variables != required:
            raise TemplateError(
                f"{path} uses {sorted(template.variables)}; it must use exactly {sorted(required)}"
            )
        templates[name] = template
    return templates


def fence(text: str) -> str:
    """Text made unable to close (or open) the <document> or <example> block it is placed in."""
    return _BLOCK_TAG.sub(lambda m: f"[{m.group(1).lower()} tag removed]", text)


@dataclass(frozen=True)
class LabelPrompt:
    code: str
    label: str
    description: str


def render_classify(
    folder: Path,
    *,
    labels: list[LabelPrompt],
    pages: list[tuple[int, str]],
    instructions: str | None,
    examples: list[tuple[str, str]],
    answer: str = "code",
) -> tuple[str, str]:
    """(system, user) messages for one classification call. `examples` are (code, text) pairs;
    `answer` is one of ANSWERS."""
    t = load_templates(str(folder))
    codes = ", ".join(lab.code for lab in labels)
    categories = "\n".join(
        t["classify.category"].render(
            code=lab.code, label=lab.label, description=" ".join(lab.description.split())
        )
        for lab in labels
    )
    system = t["classify.system"].render(
        categories=categories,
        instructions=t["classify.instructions"].render(instructions=instructions.strip())
        if instructions and instructions.strip()
        else "",
        reply=t[f"answer.{answer}.reply"].render(),
    )
    document = "\n\n".join(f"--- Page {n} ---\n{fence(text).strip()}" for n, text in pages)
    rendered_examples = ""
    if examples:
        rendered_examples = t["classify.examples"].render(
            examples="\n\n".join(
                t["classify.example"].render(code=code, text=fence(text).strip())
                for code, text in examples
            )
        )
    user = t["classify.user"].render(
        examples=rendered_examples,
        document=document,
        ask=t[f"answer.{answer}.ask"].render(codes=codes),
    )
    return system, user
