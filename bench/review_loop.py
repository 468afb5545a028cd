"""The review loop of tests/reviews/test_review_loop_dataset.py offline, on any label set of
bench/label_sets.py: docs-v1's PDFs with a text layer, of at most 12 pages, per label sorted by name (at
most 8): the first seeds the classifier, the rest alternate between a review pool and documents
no step sees. The pool is classified; results under the threshold are reviewed (the dataset's
label becomes an example); the model is trained again; accuracy on the unseen documents before
and after, for the shipped trained model and the model of before issue 24 (the learned
correction at full weight, no nearest-example term, no catch-all rule).

    python -m bench.review_loop --sets five_way,label3,plain --threshold 0.97
"""

import backend.offline  # noqa: F401, I001

import argparse
import csv
import json
from typing import TypeVar

import numpy as np
import pymupdf

from backend.backends.local import document_embedding, label_embeddings
from backend.backends.local.trained import fit
from backend.backends.local.zero_shot import catch_all_label, zero_shot_logits
from bench.dataset import DATASET, load
from bench.label_sets import schema, truths

T = TypeVar("T")

OLD = {"weights": (1.0,), "kappas": (0.0,), "nearest": (0.0,)}


def split(items, y: list[str], per_label: int = 8) -> tuple[list, list, list]:
    with (DATASET / "MANIFEST.tsv").open() as handle:
        digital = {
            row["file"]
            for row in csv.DictReader(handle, delimiter="\t")
            if row["file"].endswith(".pdf") and "text layer" in row["notes"]
        }
    by_label: dict[str, list[int]] = {}
    order = sorted(range(len(items)), key=lambda i: str(items[i].path.relative_to(DATASET)))
    for i in order:
        if str(items[i].path.relative_to(DATASET)) not in digital:
            continue
        with pymupdf.open(items[i].path) as pdf:
            if pdf.page_count > 12:
                continue
        by_label.setdefault(y[i], []).append(i)
    return seed_pool_unseen(by_label, per_label)


def seed_pool_unseen(
    by_label: dict[str, list[T]], per_label: int = 8, seed_per_label: int = 1
) -> tuple[list[T], list[T], list[T]]:
    """The review loop's split (this bench's and tests/reviews'): per label, in the given order
    and at most `per_label`, the first seed the classifier, the rest alternate between the
    review pool and documents no step sees."""
    seed: list[T] = []
    pool: list[T] = []
    unseen: list[T] = []
    for _, members in sorted(by_label.items()):
        members = members[:per_label]
        seed += members[:seed_per_label]
        pool += members[seed_per_label:][0::2]
        unseen += members[seed_per_label:][1::2]
    return seed, pool, unseen


def run(items, name: str, threshold: float) -> dict:
    labels = schema(name)
    names = [s.label for s in labels]
    y = truths(items)[name]
    vectors = label_embeddings(labels)
    texts = [i.text for i in items]
    zero = np.vstack([zero_shot_logits(labels, t, document_embedding(t), vectors) for t in texts])
    catch_all = catch_all_label(labels)
    seed, pool, unseen = split(items, y)

    def model(train: list[int], variant: dict):
        return fit(names, [texts[i] for i in train], [y[i] for i in train], zero[train], **variant)

    def accuracy(m, idx: list[int]) -> tuple[float, np.ndarray]:
        p = m.predict_proba([texts[i] for i in idx], zero[idx])
        return float(np.mean([names[k] == y[i] for k, i in zip(p.argmax(1), idx, strict=True)])), p

    out = {
        "seed": len(seed),
        "pool": len(pool),
        "unseen": len(unseen),
        "zero_shot_unseen": float(
            np.mean([names[k] == y[i] for k, i in zip(zero[unseen].argmax(1), unseen, strict=True)])
        ),
    }
    for variant_name, variant in (("shipped", {"catch_all": catch_all}), ("before", OLD)):
        before = model(seed, variant)
        accuracy_before, _ = accuracy(before, unseen)
        _, pooled = accuracy(before, pool)
        reviewed = [i for i, p in zip(pool, pooled, strict=True) if p.max() < threshold]
        corrected = sum(
            names[int(p.argmax())] != y[i]
            for i, p in zip(pool, pooled, strict=True)
            if p.max() < threshold
        )
        accuracy_after, _ = accuracy(model(seed + reviewed, variant), unseen)
        out[variant_name] = {
            "reviewed": len(reviewed),
            "corrected": int(corrected),
            "accuracy_before": round(accuracy_before, 4),
            "accuracy_after": round(accuracy_after, 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="five_way,label3,plain")
    parser.add_argument("--threshold", type=float, default=0.97)
    args = parser.parse_args()
    items = load()
    for name in args.sets.split(","):
        print(name, json.dumps(run(items, name, args.threshold)), flush=True)


if __name__ == "__main__":
    main()
