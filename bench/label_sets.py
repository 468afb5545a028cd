"""Label sets the `local` model is measured on over docs-v1, and each document's true label in them.

- five_way, label2: the dataset's MANIFEST columns (`label`, `label2`).
- label3: the dataset's ten genres (LABEL3.tsv), descriptions from the dataset README.
- coarse, plain: two sets of our own, mapped from label3 (one label3 genre belongs to exactly one
  label of each). `coarse` describes each label by enumerating the kinds it covers;
  `plain` uses other words and another granularity (money split three ways, the prose genres
  merged into one label). Neither was used to design the model's evidence before it was measured.

- domains: a third set of our own, written after the model's evidence was designed and never
  used to tune it (CHECK_NAMES): other words again ("commerce", "employment", "government",
  "reading"), descriptions that list kinds in the plural and a "None of the above" catch-all.

- routes: the 5-way labels renamed as a team's routing desks, each described only by who handles
  it ("Handled by desk A"): nothing in a name or description says what the documents are, so
  zero-shot is near chance and only examples (reviews, issue 24) can teach it. Never tuned on.

Each set is also in evals/schemas/<name>.json, so `python -m evals.run` can use it.
"""

import csv
import json
from pathlib import Path

from backend.backends.base import LabelSpec
from bench.dataset import DATASET

SCHEMAS = Path(__file__).resolve().parent.parent / "evals" / "schemas"

# label3 genre -> label of our own sets.
COARSE_FROM_LABEL3 = {
    "invoice": "financial",
    "receipt": "financial",
    "pay_stub": "financial",
    "bank_document": "financial",
    "tax_form": "tax",
    "contract": "legal",
    "resume": "personal",
    "correspondence": "correspondence",
    "technical_document": "publication",
    "other": "other",
}
DOMAINS_FROM_LABEL3 = {
    "invoice": "commerce",
    "receipt": "commerce",
    "pay_stub": "employment",
    "bank_document": "commerce",
    "tax_form": "government",
    "contract": "reading",
    "resume": "employment",
    "correspondence": "reading",
    "technical_document": "reading",
    "other": "other",
}
ROUTES_FROM_FIVE_WAY = {
    "w9": "desk_a",
    "form_1040": "desk_b",
    "invoice": "desk_c",
    "payslip": "desk_d",
    "other": "other",
}
PLAIN_FROM_LABEL3 = {
    "invoice": "bill",
    "receipt": "proof_of_purchase",
    "pay_stub": "wages",
    "bank_document": "banking",
    "tax_form": "government_tax_paperwork",
    "contract": "prose",
    "resume": "prose",
    "correspondence": "prose",
    "technical_document": "prose",
    "other": "other",
}


def schema(name: str) -> list[LabelSpec]:
    rows = json.loads((SCHEMAS / f"{name}.json").read_text())
    return [LabelSpec(row["label"], row["description"]) for row in rows]


def label3(folder: Path = DATASET) -> dict[str, str]:
    """file (below docs-v1/) -> its label3 genre."""
    with (folder / "LABEL3.tsv").open(newline="") as handle:
        return {row["file"]: row["label3"] for row in csv.DictReader(handle, delimiter="\t")}


def truths(items, folder: Path = DATASET) -> dict[str, list[str]]:
    """Each label set's true label for every item, in order."""
    genres = label3(folder)
    by_item = [genres[str(item.path.relative_to(folder))] for item in items]
    return {
        "five_way": [item.label for item in items],
        "label2": [item.label2 for item in items],
        "label3": by_item,
        "coarse": [COARSE_FROM_LABEL3[g] for g in by_item],
        "plain": [PLAIN_FROM_LABEL3[g] for g in by_item],
        "domains": [DOMAINS_FROM_LABEL3[g] for g in by_item],
        "routes": [ROUTES_FROM_FIVE_WAY[item.label] for item in items],
    }


NAMES = ("five_way", "label2", "label3", "coarse", "plain")  # bench/local_tune.py tunes on these
CHECK_NAMES = ("domains", "routes")  # measured, never tuned on
