"""`group_attachments`: a document and the attachments that belong to it count as one segment.

A Form 1040 followed by Schedule A and Schedule 8812 is one tax return when the request asks
for it; by default each is a document of its own (the schedules are forms with their own first
page, and many users file them separately). An attachment is recognised by what its first page
says about itself:
- "SCHEDULE D (Form 1040)", "Attach to Form 1040": it belongs to the return of that form, so it
  joins a preceding group whose main document is that form (or holds another of its schedules);
- "Exhibit B", "Annex 2", "Appendix A" heading the page: it belongs to the document before it.
Two parts that name different taxpayers (different social security numbers) are never grouped.
"""

import re
from dataclasses import dataclass

HEAD_LINES = 12  # where a form names itself and the form it is attached to

_ATTACHED_TO = re.compile(r"(?:attach\s*to|\(\s*|\{\s*)\s*fo\w{0,2}\s*(\d{3,4})\b", re.IGNORECASE)
_MAIN_FORM = re.compile(r"^\W{0,3}(?:form|£)?\s*(\d{4})\b", re.IGNORECASE)
_EXHIBIT = re.compile(r"^\s*(?:exhibit|annex|appendix|anlage|annexe)\s+[\w.-]{1,4}\b", re.I)
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")


@dataclass(frozen=True)
class Part:
    """What a segment's first page says about what it is part of."""

    form: str | None  # the form it is ("1040"), when it is a main form
    attached_to: str | None  # the form it attaches to ("1040"), for a schedule
    exhibit: bool  # headed "Exhibit B" and the like
    taxpayers: frozenset[str]


def read_part(text: str) -> Part:
    lines = [line.strip() for line in text.splitlines() if line.strip()][:HEAD_LINES]
    head = "\n".join(lines)
    schedule = re.search(r"\bschedule\b", head, re.IGNORECASE)
    attached = _ATTACHED_TO.search(head) if schedule or "attach" in head.lower() else None
    main = _MAIN_FORM.match(" ".join(lines[:2])) if not attached else None
    return Part(
        form=main.group(1) if main else None,
        attached_to=attached.group(1) if attached else None,
        exhibit=bool(lines and _EXHIBIT.match(lines[0])),
        taxpayers=frozenset(_SSN.findall(text)),
    )


def groups(first_pages: list[str]) -> list[list[int]]:
    """The segments (given by their first pages' texts, in order) grouped with their
    attachments: lists of segment indexes, in order."""
    out: list[list[int]] = []
    group_form: str | None = None
    taxpayers: frozenset[str] = frozenset()
    for index, text in enumerate(first_pages):
        part = read_part(text)
        joins = bool(out) and (
            part.exhibit or (part.attached_to is not None and part.attached_to == group_form)
        )
        if joins and part.taxpayers and taxpayers and not part.taxpayers & taxpayers:
            joins = False  # someone else's schedule
        if joins:
            out[-1].append(index)
            taxpayers |= part.taxpayers
        else:
            out.append([index])
            group_form = part.form or part.attached_to
            taxpayers = part.taxpayers
    return out
