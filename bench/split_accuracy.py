"""Split accuracy on packets glued from docs-v1 documents, with the `local` model trained on
other documents (4-fold: packets are built only from the fold the model did not see).

    python -m bench.split_accuracy [--packets 150] [--seed 0]   # writes bench/results/split.json

Packet kinds:
- mixed3: 3 documents of different labels, each 1-3 pages (the issue's definition);
- same_label: 3 documents of 1-3 pages where two neighbours share a label;
- long: 2-4 documents of 1-6 pages, labels drawn freely (full W-9s, 1040s with schedules...).

Methods compared on the same per-page scores:
- full: the service's segmentation (page signals + Viterbi, backend/splitting/boundaries.py);
- labels_only: a new segment wherever the page label changes (the naive baseline);
- no_signals: Viterbi with the prior alone (label smoothing, no page signals).

Metrics: page accuracy (a page's segment label is its document's label), segment precision /
recall / F1 (a segment counts when its pages and label are exactly a document's), boundary
precision / recall / F1, and the share of packets split exactly right. Texts come from
DocSift's own extraction (OCR included), cached in /tmp/docsift-text-cache; the per-page scores
are what POST /v1/split computes (one `local` call per page), here without HTTP.
"""

import backend.offline  # noqa: F401, I001

import argparse
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

from backend.backends.base import ClassifyRequest, LabelledText
from backend.backends.local import LocalBackend
from backend.config import Settings
from backend.documents import extraction
from backend.documents.sniff import sniff
from backend.splitting import boundaries
from backend.splitting.boundaries import Gap, PageEvidence, SegmentPlan
from bench.dataset import LIMITS, Item, load
from bench.harness import write_result
from bench.local_model import FIVE_WAY

FOLDS = 4
EXAMPLE_CHARS = 20_000  # what a classifier keeps of an example document (classifiers/service.py)
# Five payslips of different employees filed as one document: no single right answer.
EXCLUDED = {"payslip_il_tlush_examples_5p.pdf"}


@dataclass
class Doc:
    item: Item
    fold: int
    sizes: list[tuple[float, float] | None]
    scores: list[dict[str, float]]  # per page, from a model that never saw this document


def page_sizes(path: Path, count: int) -> list[tuple[float, float] | None]:
    """Page sizes as DocSift's extraction records them (images become one page each)."""
    data = path.read_bytes()
    kind = sniff(data)
    try:
        layer = extraction.read_text_layer(data, kind, LIMITS, min_text_chars=20, ocr_dpi=None)
        sizes = [(p.width, p.height) if p.width else None for p in layer.pages]
    except Exception:
        sizes = []
    return (sizes + [None] * count)[:count]


def score_pages(items: list[Item], folds: list[int], max_pages: int) -> list[Doc]:
    """Per-page scores of every document from `local` trained on the other folds."""
    backend = LocalBackend(Settings(_env_file=None))
    docs = []
    for fold in range(FOLDS):
        examples = [
            LabelledText(item.label, item.text[:EXAMPLE_CHARS])
            for item, f in zip(items, folds, strict=True)
            if f != fold and item.text.strip()
        ]
        for item, f in zip(items, folds, strict=True):
            if f != fold or len(item.pages) > max_pages:
                continue
            scores = [
                backend._classify(
                    ClassifyRequest(
                        model="local",
                        labels=FIVE_WAY,
                        pages=[page],
                        examples=examples,
                        training_key=f"fold-{fold}",
                    )
                ).scores
                for page in item.pages
            ]
            docs.append(Doc(item, fold, page_sizes(item.path, len(item.pages)), scores))
    return docs


def labels_only(pages: list[PageEvidence]) -> list[SegmentPlan]:
    labels = [max(p.scores, key=lambda k: p.scores[k]) for p in pages]
    starts = [0] + [i for i in range(1, len(pages)) if labels[i] != labels[i - 1]]
    bounds = zip(starts, [*starts[1:], len(pages)], strict=True)
    return [SegmentPlan(a, b, labels[a], {}) for a, b in bounds]


def no_signals(pages: list[PageEvidence]) -> list[SegmentPlan]:
    gaps = [Gap(boundaries.PRIOR) for _ in pages[1:]]
    return boundaries.segment(pages, gaps)


METHODS: dict[str, Callable[[list[PageEvidence]], list[SegmentPlan]]] = {
    "full": boundaries.segment,
    "labels_only": labels_only,
    "no_signals": no_signals,
}


def packets(docs: list[Doc], kind: str, count: int, rng: random.Random) -> list[list[Doc]]:
    """`count` packets of one kind, each from a single fold's documents."""
    short = [d for d in docs if len(d.item.pages) <= 3]
    out: list[list[Doc]] = []
    while len(out) < count:
        fold = rng.randrange(FOLDS)
        pool = [d for d in (docs if kind == "long" else short) if d.fold == fold]
        by_label: dict[str, list[Doc]] = {}
        for d in pool:
            by_label.setdefault(d.item.label, []).append(d)
        if kind == "mixed3" and len(by_label) >= 3:
            labels = rng.sample(sorted(by_label), 3)
            out.append([rng.choice(by_label[label]) for label in labels])
        elif kind == "same_label":
            twice = [label for label, members in by_label.items() if len(members) >= 2]
            others = sorted(by_label)
            if not twice or len(others) < 2:
                continue
            label = rng.choice(sorted(twice))
            pair = rng.sample(by_label[label], 2)
            third = rng.choice(by_label[rng.choice([o for o in others if o != label])])
            out.append([*pair, third] if rng.random() < 0.5 else [third, *pair])
        elif kind == "long":
            out.append(rng.sample(pool, min(len(pool), rng.randint(2, 4))))
    return out


def truth_of(packet: list[Doc]) -> list[tuple[int, int, str]]:
    spans, start = [], 0
    for d in packet:
        spans.append((start, start + len(d.item.pages), d.item.label))
        start += len(d.item.pages)
    return spans


def evaluate(packet_list: list[list[Doc]], method: Callable) -> dict:
    pages_right = pages_total = seg_right = seg_predicted = seg_true = 0
    b_right = b_predicted = b_true = exact = 0
    for packet in packet_list:
        evidence = [
            PageEvidence(scores, text, size)
            for d in packet
            for scores, text, size in zip(d.scores, d.item.pages, d.sizes, strict=True)
        ]
        predicted = [(s.first, s.end, s.label) for s in method(evidence)]
        truth = truth_of(packet)
        label_of_page = [label for a, b, label in truth for _ in range(a, b)]
        for a, b, label in predicted:
            pages_right += sum(1 for i in range(a, b) if label_of_page[i] == label)
        pages_total += len(evidence)
        seg_right += len(set(predicted) & set(truth))
        seg_predicted += len(predicted)
        seg_true += len(truth)
        starts_p, starts_t = {a for a, _, _ in predicted[1:]}, {a for a, _, _ in truth[1:]}
        b_right += len(starts_p & starts_t)
        b_predicted += len(starts_p)
        b_true += len(starts_t)
        exact += predicted == truth

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    seg_p, seg_r = seg_right / seg_predicted, seg_right / seg_true
    b_p, b_r = b_right / max(b_predicted, 1), b_right / max(b_true, 1)
    return {
        "page_accuracy": round(pages_right / pages_total, 4),
        "segment_precision": round(seg_p, 4),
        "segment_recall": round(seg_r, 4),
        "segment_f1": round(f1(seg_p, seg_r), 4),
        "boundary_precision": round(b_p, 4),
        "boundary_recall": round(b_r, 4),
        "boundary_f1": round(f1(b_p, b_r), 4),
        "packets_exact": round(exact / len(packet_list), 4),
    }


def page_level_model_accuracy(docs: list[Doc]) -> dict:
    """How often the per-page argmax alone is the document's label (before segmentation)."""
    first = [max(d.scores[0], key=d.scores[0].get) == d.item.label for d in docs]
    later = [max(s, key=s.get) == d.item.label for d in docs for s in d.scores[1:]]
    return {
        "first_pages": round(statistics.mean(first), 4),
        "later_pages": round(statistics.mean(later), 4) if later else None,
        "n_first": len(first),
        "n_later": len(later),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=150, help="packets per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = [
        i for i in load() if i.text.strip() and i.path.name not in EXCLUDED and len(i.pages) <= 6
    ]
    folds = [0] * len(items)
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=args.seed)
    for fold, (_, test) in enumerate(splitter.split(items, [i.label for i in items])):
        for index in test:
            folds[index] = fold
    started = time.perf_counter()
    docs = score_pages(items, folds, max_pages=6)
    scoring_seconds = time.perf_counter() - started
    rng = random.Random(args.seed)
    results: dict = {}
    timings = []
    for kind in ("mixed3", "same_label", "long"):
        packet_list = packets(docs, kind, args.packets, rng)
        results[kind] = {
            "packets": len(packet_list),
            "pages": sum(len(d.item.pages) for p in packet_list for d in p),
        }
        for name, method in METHODS.items():
            t = time.perf_counter()
            results[kind][name] = evaluate(packet_list, method)
            if name == "full":
                timings.append((time.perf_counter() - t) / results[kind]["pages"])
    digest = hashlib.sha256("".join(sorted(d.item.path.name for d in docs)).encode()).hexdigest()
    result = {
        "command": f"python -m bench.split_accuracy --packets {args.packets} --seed {args.seed}",
        "model": "local, trained per fold on the other folds' documents (whole-document examples)",
        "documents": len(docs),
        "documents_digest": digest[:12],
        "folds": FOLDS,
        "per_page_model_accuracy": page_level_model_accuracy(docs),
        "results": results,
        "segmentation_ms_per_page": round(statistics.mean(timings) * 1000, 3),
        "page_scoring_s": round(scoring_seconds, 1),
        "weights": {
            name: getattr(boundaries, name)
            for name in dir(boundaries)
            if name.isupper() and isinstance(getattr(boundaries, name), float)
        },
    }
    path = write_result("split", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
