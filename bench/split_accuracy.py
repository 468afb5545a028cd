"""Split accuracy on packets glued from docs-v1 documents, with the `local` model trained on
other documents (4-fold: packets are built only from the fold the model did not see).

    python -m bench.split_accuracy [--packets 200] [--seed 0]   # writes bench/results/split.json
    python -m bench.split_accuracy --fit      # refits backend/splitting/boundary_weights.json,
                                              # its prior's sd chosen on folds (held-out log-loss)

Packet kinds:
- mixed: 2-4 documents of 1-3 pages, each neighbour sharing its predecessor's label with
  probability 0.4 (issue 29's definition; scans included);
- mixed3: 3 documents of different labels, each 1-3 pages;
- same_label: 3 documents of 1-3 pages where two neighbours share a label;
- long: 2-4 documents of 1-6 pages, labels drawn freely (full W-9s, 1040s with schedules...).

Per fold, the boundary model (backend/splitting/boundary_model.py) is fitted on gaps of packets
made only of the other folds' documents, and LABEL_WEIGHT and labels.PAGE_WEIGHT are chosen on
those packets too; the
packets scored are made of the held-out fold's documents only. So every figure is out-of-sample.

Methods compared on the same per-page scores:
- full: the service (boundary model + Viterbi, weights fitted per fold), then each segment of
  2+ pages classified as one document (`local`, its pages joined) for its label;
- page_labels: the same boundaries labelled from the pages' classifications only;
- true_boundaries: the packet's own documents, each labelled by its own classification (the
  ceiling of exact packets with labels for this page classifier);
- labels_only: a new segment wherever the page label changes (the naive baseline);
- no_signals: Viterbi with a constant boundary prior (label smoothing, no page evidence).

Metrics: page accuracy (a page's segment label is its document's label), segment precision /
recall / F1 (a segment counts when its pages and label are exactly a document's; also per
label), boundary precision / recall / F1, the share of packets split exactly right (pages and
labels: `packets_exact`; pages only: `packets_exact_boundaries`), and how well
`boundary_confidence` separates right segments from wrong ones. Texts come from DocSift's own
extraction (OCR included), cached in /tmp/docsift-text-cache; the per-page scores are what
POST /v1/split computes (one `local` call per page), here without HTTP.
"""

import backend.offline  # noqa: F401, I001

import argparse
import csv
import hashlib
import json
import math
import pickle
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

from backend.backends.base import ClassifyRequest, LabelledText
from backend.backends.local import LocalBackend
from backend.config import Settings
from backend.documents import extraction
from backend.documents.sniff import sniff
from backend.splitting import boundaries, boundary_model, labels
from backend.splitting.boundaries import Gap, PageEvidence, SegmentPlan
from backend.splitting.boundary_model import BoundaryModel
from backend.splitting.features import all_gap_features
from bench.dataset import DATASET, LIMITS, Item, load
from bench.harness import write_result
from bench.local_model import FIVE_WAY

FOLDS = 4
EXAMPLE_CHARS = 20_000  # what a classifier keeps of an example document (classifiers/service.py)
# Five payslips of different employees filed as one document: no single right answer.
EXCLUDED = {"payslip_il_tlush_examples_5p.pdf"}
SAME_LABEL_SHARE = 0.4  # of neighbours in `mixed` packets
TRAINING_PACKETS = 600  # per fold, for fitting the boundary model
LABEL_WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0)  # LABEL_WEIGHT candidates, chosen per fold
PAGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # labels.PAGE_WEIGHT candidates, chosen per fold
PRIOR_SDS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # the boundary prior's sd candidates (--fit)
SCORE_CACHE = Path("/tmp/docsift-split-scores")
LOCAL_CODE = Path(__file__).resolve().parent.parent / "backend" / "backends" / "local"
KINDS = ("mixed", "mixed3", "same_label", "long")


@dataclass
class Doc:
    item: Item
    fold: int
    sizes: list[tuple[float, float] | None]
    scores: list[dict[str, float]]  # per page, from a model that never saw this document
    scan: bool  # no text layer: its text is OCR


def scans() -> set[str]:
    """docs-v1 files without a text layer (images, image-only PDFs), from the manifest."""
    with (DATASET / "MANIFEST.tsv").open() as handle:
        return {
            Path(row["file"]).name
            for row in csv.DictReader(handle, delimiter="\t")
            if "text layer" not in row["notes"]
        }


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
    scanned = scans()
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
            sizes = page_sizes(item.path, len(item.pages))
            docs.append(Doc(item, fold, sizes, scores, item.path.name in scanned))
    return docs


PageKey = tuple[str, int]  # (document file name, 0-based page index)


class SegmentScorer:
    """Whole-segment classifications, as POST /v1/split makes them once the boundaries are
    chosen: the segment's pages joined, one `local` call with the model of the packet's fold
    (trained on the other folds). A one-page segment is its page's own scores (the same
    request). Cached by fold and pages, here and on disk."""

    def __init__(self, items: list[Item], folds: list[int], path: Path) -> None:
        self.items, self.folds, self.path = items, folds, path
        self.cache: dict[tuple[int, tuple[PageKey, ...]], dict[str, float]] = (
            pickle.loads(path.read_bytes()) if path.exists() else {}
        )
        self.text = {(i.path.name, n): t for i in items for n, t in enumerate(i.pages)}
        self._backend: LocalBackend | None = None
        self._examples: dict[int, list[LabelledText]] = {}
        self.calls = 0

    def classify(self, fold: int, pages: tuple[PageKey, ...]) -> dict[str, float]:
        """One uncached `local` call (also what the bench times)."""
        if self._backend is None:
            self._backend = LocalBackend(Settings(_env_file=None))
        if fold not in self._examples:
            self._examples[fold] = [
                LabelledText(item.label, item.text[:EXAMPLE_CHARS])
                for item, f in zip(self.items, self.folds, strict=True)
                if f != fold and item.text.strip()
            ]
        self.calls += 1
        request = ClassifyRequest(
            model="local",
            labels=FIVE_WAY,
            pages=[self.text[key] for key in pages],
            examples=self._examples[fold],
            training_key=f"fold-{fold}",
        )
        return self._backend._classify(request).scores

    def __call__(self, fold: int, pages: tuple[PageKey, ...]) -> dict[str, float]:
        key = (fold, pages)
        if key not in self.cache:
            self.cache[key] = self.classify(fold, pages)
        return self.cache[key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(pickle.dumps(self.cache))


def page_keys(packet: list["Doc"]) -> list[PageKey]:
    return [(d.item.path.name, n) for d in packet for n in range(len(d.item.pages))]


def relabelled(
    packet: list["Doc"], plans: list[SegmentPlan], scorer: SegmentScorer, page_weight: float
) -> list[SegmentPlan]:
    """The plans with each segment's label from its own classification (labels.py)."""
    keys, pages = page_keys(packet), evidence_of(packet)
    out = []
    for plan in plans:
        span = pages[plan.first : plan.end]
        own = scorer(packet[0].fold, tuple(keys[plan.first : plan.end])) if len(span) > 1 else None
        scores = labels.combined_scores(own, [p.scores for p in span], page_weight)
        out.append(replace(plan, label=max(scores, key=lambda k: scores[k]), scores=scores))
    return out


def cached_docs(items: list[Item], folds: list[int], seed: int) -> tuple[list[Doc], str]:
    """score_pages, cached by the documents' texts and folds (the scoring takes minutes)."""
    # The `local` model's code is part of the key: other work on it changes the scores.
    code = [p.read_bytes().hex() for p in sorted(LOCAL_CODE.glob("*.py"))]
    key = hashlib.sha256(
        json.dumps(
            [[i.path.name, i.pages, f] for i, f in zip(items, folds, strict=True)] + code
        ).encode()
    ).hexdigest()[:16]
    path = SCORE_CACHE / f"{seed}-{key}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes()), key
    docs = score_pages(items, folds, max_pages=6)
    SCORE_CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(docs))
    return docs, key


def evidence_of(packet: list["Doc"]) -> list[PageEvidence]:
    return [
        PageEvidence(scores, text, size)
        for d in packet
        for scores, text, size in zip(d.scores, d.item.pages, d.sizes, strict=True)
    ]


_ROWS: dict[tuple[str, ...], list[dict[str, float]]] = {}


def packet_rows(packet: list[Doc]) -> list[dict[str, float]]:
    """The gap features of a packet (computed once: fitting and choosing reuse them)."""
    key = tuple(d.item.path.name for d in packet)
    if key not in _ROWS:
        evidence = evidence_of(packet)
        _ROWS[key] = all_gap_features([p.text for p in evidence], [p.size for p in evidence])
    return _ROWS[key]


def labels_only(pages: list[PageEvidence]) -> list[SegmentPlan]:
    labels = [max(p.scores, key=lambda k: p.scores[k]) for p in pages]
    starts = [0] + [i for i in range(1, len(pages)) if labels[i] != labels[i - 1]]
    bounds = zip(starts, [*starts[1:], len(pages)], strict=True)
    return [SegmentPlan(a, b, labels[a], {}) for a, b in bounds]


def no_signals(pages: list[PageEvidence]) -> list[SegmentPlan]:
    gaps = [Gap(-1.0) for _ in pages[1:]]
    return boundaries.segment(pages, gaps)


def full_method(
    model: BoundaryModel,
    label_weight: float,
    scorer: SegmentScorer | None = None,
    page_weight: float = labels.PAGE_WEIGHT,
) -> Callable:
    """The service's segmentation (gap_scores + segment), on the packet's cached features, then
    (with a scorer) each segment labelled by its own classification."""

    def segment(packet: list[Doc]) -> list[SegmentPlan]:
        gaps = [Gap(model.log_odds(row)) for row in packet_rows(packet)]
        plans = boundaries.segment(evidence_of(packet), gaps, label_weight=label_weight)
        return relabelled(packet, plans, scorer, page_weight) if scorer else plans

    return segment


def true_segments(scorer: SegmentScorer) -> Callable:
    """The packet's own documents as segments, each labelled by its own classification."""

    def segment(packet: list[Doc]) -> list[SegmentPlan]:
        plans = [SegmentPlan(a, b, label, {}) for a, b, label in truth_of(packet)]
        return relabelled(packet, plans, scorer, labels.PAGE_WEIGHT)

    return segment


def on_pages(method: Callable[[list[PageEvidence]], list[SegmentPlan]]) -> Callable:
    return lambda packet: method(evidence_of(packet))


def packets(docs: list[Doc], kind: str, count: int, rng: random.Random) -> list[list[Doc]]:
    """`count` packets of one kind, each from a single fold's documents (the folds of `docs`)."""
    short = [d for d in docs if len(d.item.pages) <= 3]
    fold_ids = sorted({d.fold for d in docs})
    out: list[list[Doc]] = []
    while len(out) < count:
        fold = rng.choice(fold_ids)
        pool = [d for d in (docs if kind == "long" else short) if d.fold == fold]
        by_label: dict[str, list[Doc]] = {}
        for d in pool:
            by_label.setdefault(d.item.label, []).append(d)
        if kind == "mixed":
            packet = [rng.choice(pool)]
            for _ in range(rng.randint(2, 4) - 1):
                label = packet[-1].item.label
                unused = [d for d in by_label[label] if d not in packet]
                if rng.random() < SAME_LABEL_SHARE and unused:
                    packet.append(rng.choice(unused))
                else:
                    other = rng.choice([name for name in sorted(by_label) if name != label])
                    packet.append(rng.choice(by_label[other]))
            out.append(packet)
        elif kind == "mixed3" and len(by_label) >= 3:
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


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def run(packet_list: list[list[Doc]], method: Callable) -> list[tuple[list[Doc], list]]:
    return [(packet, method(packet)) for packet in packet_list]


def evaluate(outcomes: list[tuple[list[Doc], list[SegmentPlan]]]) -> dict:
    """The metrics of segmentations (plans) of packets whose documents are known."""
    pages_right = pages_total = seg_right = seg_predicted = seg_true = 0
    b_right = b_predicted = b_true = exact = exact_bounds = 0
    per_label: dict[str, list[int]] = {}  # label -> [right, predicted, true]
    confidence_right: list[float] = []
    confidence_wrong: list[float] = []
    for packet, plans in outcomes:
        predicted = [(s.first, s.end, s.label) for s in plans]
        truth = truth_of(packet)
        label_of_page = [label for a, b, label in truth for _ in range(a, b)]
        for a, b, label in predicted:
            pages_right += sum(1 for i in range(a, b) if label_of_page[i] == label)
        pages_total += len(label_of_page)
        seg_right += len(set(predicted) & set(truth))
        seg_predicted += len(predicted)
        seg_true += len(truth)
        for a, b, label in predicted:
            per_label.setdefault(label, [0, 0, 0])[1] += 1
            per_label[label][0] += (a, b, label) in truth
        for _, _, label in truth:
            per_label.setdefault(label, [0, 0, 0])[2] += 1
        true_spans = {(a, b) for a, b, _ in truth}
        for s in plans:
            right = (s.first, s.end) in true_spans
            (confidence_right if right else confidence_wrong).append(s.boundary_confidence)
        starts_p, starts_t = {a for a, _, _ in predicted[1:]}, {a for a, _, _ in truth[1:]}
        b_right += len(starts_p & starts_t)
        b_predicted += len(starts_p)
        b_true += len(starts_t)
        exact += predicted == truth
        exact_bounds += starts_p == starts_t

    seg_p, seg_r = seg_right / seg_predicted, seg_right / seg_true
    b_p, b_r = b_right / max(b_predicted, 1), b_right / max(b_true, 1)
    return {
        "page_accuracy": round(pages_right / pages_total, 4),
        "segment_precision": round(seg_p, 4),
        "segment_recall": round(seg_r, 4),
        "segment_f1": round(_f1(seg_p, seg_r), 4),
        "boundary_precision": round(b_p, 4),
        "boundary_recall": round(b_r, 4),
        "boundary_f1": round(_f1(b_p, b_r), 4),
        "packets_exact": round(exact / len(outcomes), 4),
        "packets_exact_boundaries": round(exact_bounds / len(outcomes), 4),
        "segment_f1_per_label": {
            label: round(_f1(r / max(p, 1), r / max(t, 1)), 4)
            for label, (r, p, t) in sorted(per_label.items())
        },
        "boundary_confidence_mean": {
            "right_segments": round(statistics.mean(confidence_right), 4)
            if confidence_right
            else None,
            "wrong_segments": round(statistics.mean(confidence_wrong), 4)
            if confidence_wrong
            else None,
        },
    }


def training_gaps(packet_list: list[list[Doc]]) -> tuple[list[dict[str, float]], list[bool]]:
    rows, truth = [], []
    for packet in packet_list:
        starts = {a for a, _, _ in truth_of(packet)[1:]}
        rows += packet_rows(packet)
        truth += [i in starts for i in range(1, truth_of(packet)[-1][1])]
    return rows, truth


@dataclass(frozen=True)
class Fitted:
    """What the service's segmentation is given, fitted on packets of some documents."""

    model: BoundaryModel
    label_weight: float
    page_weight: float


def fit_on(docs: list[Doc], rng: random.Random, scorer: SegmentScorer, prior_sd: float) -> Fitted:
    """The boundary model fitted on packets of these documents only; then LABEL_WEIGHT and the
    segment label's PAGE_WEIGHT chosen together on other packets of them (exact packets, pages
    and labels)."""
    train = [p for kind in KINDS for p in packets(docs, kind, TRAINING_PACKETS // len(KINDS), rng)]
    model = boundary_model.fit(*training_gaps(train), prior_sd=prior_sd)
    mixed = packets(docs, "mixed", TRAINING_PACKETS // 2, rng)
    label_weight, page_weight = max(
        ((w, pw) for w in LABEL_WEIGHTS for pw in PAGE_WEIGHTS),
        key=lambda c: (
            evaluate(run(mixed, full_method(model, c[0], scorer, c[1])))["packets_exact"],
            -c[1],  # a tie keeps the segment's own classification (/v1/classify's label)
        ),
    )
    return Fitted(replace(model, label_weight=label_weight), label_weight, page_weight)


def choose_prior_sd(docs: list[Doc], rng: random.Random) -> tuple[float, dict[float, dict]]:
    """The prior's standard deviation, by cross-validation over the folds of `docs`: for each
    candidate, the boundary model is fitted on the other folds' packets and scored on the held-out
    fold's `mixed` packets. Chosen by the held-out gaps' log-loss (the model's probabilities are
    what boundary_confidence reports); exact packets (pages only) are reported beside it."""
    fold_ids = sorted({d.fold for d in docs})
    held_out = {
        f: packets([d for d in docs if d.fold == f], "mixed", TRAINING_PACKETS // 4, rng)
        for f in fold_ids
    }
    train = {
        f: [
            p
            for kind in KINDS
            for p in packets(
                [d for d in docs if d.fold != f], kind, TRAINING_PACKETS // len(KINDS), rng
            )
        ]
        for f in fold_ids
    }
    scores = {}
    for sd in PRIOR_SDS:
        exact, losses = [], []
        for f in fold_ids:
            model = boundary_model.fit(*training_gaps(train[f]), prior_sd=sd)
            # The label weight does not enter the log-loss; it is chosen after the prior.
            exact.append(
                evaluate(run(held_out[f], full_method(model, 0.5)))["packets_exact_boundaries"]
            )
            rows, truth = training_gaps(held_out[f])
            for row, boundary in zip(rows, truth, strict=True):
                z = model.log_odds(row)
                losses.append(math.log1p(math.exp(-z if boundary else z)))
        scores[sd] = {
            "log_loss": round(statistics.mean(losses), 4),
            "exact_pages": round(statistics.mean(exact), 4),
        }
    return min(PRIOR_SDS, key=lambda sd: scores[sd]["log_loss"]), scores


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
    parser.add_argument("--packets", type=int, default=200, help="packets per kind and fold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit", action="store_true", help="fit the shipped weights on all documents"
    )
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
    docs, docs_key = cached_docs(items, folds, args.seed)
    scoring_seconds = time.perf_counter() - started
    rng = random.Random(args.seed)
    scorer = SegmentScorer(items, folds, SCORE_CACHE / f"segments-{args.seed}-{docs_key}.pickle")
    if args.fit:
        prior_sd, rates = choose_prior_sd(docs, rng)
        print("prior sd -> exact packets (pages), held-out folds:", json.dumps(rates))
        fitted_all = fit_on(docs, rng, scorer, prior_sd)
        scorer.save()
        boundary_model.WEIGHTS_FILE.write_text(
            json.dumps(fitted_all.model.to_json(), indent=1) + "\n"
        )
        print(json.dumps(fitted_all.model.to_json(), indent=1))
        print("page_weight", fitted_all.page_weight)
        return

    prior_sd = boundary_model.default_model().prior_sd
    fitted = {
        fold: fit_on([d for d in docs if d.fold != fold], rng, scorer, prior_sd)
        for fold in range(FOLDS)
    }
    results: dict = {}
    timings, extra_calls, extra_ms, page_ms = [], [], [], []
    for kind in KINDS:
        per_fold = {
            f: packets([d for d in docs if d.fold == f], kind, args.packets, rng) for f in fitted
        }
        all_packets = [p for f in fitted for p in per_fold[f]]
        results[kind] = {
            "packets": len(all_packets),
            "pages": sum(len(d.item.pages) for p in all_packets for d in p),
            "pages_scanned": sum(len(d.item.pages) for p in all_packets for d in p if d.scan),
            "same_label_neighbours": round(
                sum(
                    a.item.label == b.item.label
                    for p in all_packets
                    for a, b in zip(p, p[1:], strict=False)
                )
                / sum(len(p) - 1 for p in all_packets),
                3,
            ),
        }

        # "full": each packet segmented with the model fitted without its fold; timed as the
        # service runs it (features read from the texts, then the segmentation and labels).
        started = time.perf_counter()
        plans_of = []
        for f in fitted:
            for packet in per_fold[f]:
                pages = evidence_of(packet)
                gaps = boundaries.gap_scores(pages, fitted[f].model)
                plans = boundaries.segment(pages, gaps, label_weight=fitted[f].label_weight)
                plans_of.append((f, packet, plans))
        timings.append((time.perf_counter() - started) / results[kind]["pages"])
        # The second classification (one per segment of 2+ pages) is a classification: counted
        # and timed on its own, uncached, beside the pages' own classifications.
        multi = [
            (f, tuple(page_keys(packet)[s.first : s.end]))
            for f, packet, plans in plans_of
            for s in plans
            if s.end - s.first > 1
        ]
        extra_calls.append(len(multi) / results[kind]["pages"])
        if kind == "mixed":
            started = time.perf_counter()
            for f, keys in multi:
                scorer.cache[(f, keys)] = scorer.classify(f, keys)
            extra_ms.append((time.perf_counter() - started) * 1000 / results[kind]["pages"])
            sample = [(f, (key,)) for f, keys in multi[:100] for key in keys]
            started = time.perf_counter()
            for f, keys in sample:
                scorer.classify(f, keys)
            page_ms.append((time.perf_counter() - started) * 1000 / max(len(sample), 1))
        outcomes = [
            o
            for f in fitted
            for o in run(
                per_fold[f],
                full_method(fitted[f].model, fitted[f].label_weight, scorer, fitted[f].page_weight),
            )
        ]
        results[kind]["full"] = evaluate(outcomes)
        outcomes = [
            o
            for f in fitted
            for o in run(per_fold[f], full_method(fitted[f].model, fitted[f].label_weight))
        ]
        results[kind]["page_labels"] = evaluate(outcomes)
        for name, method in (("labels_only", labels_only), ("no_signals", no_signals)):
            results[kind][name] = evaluate(run(all_packets, on_pages(method)))
        # The ceiling for "exact (pages and labels)": every boundary right and each document
        # labelled by its own classification (what /v1/classify says of it alone).
        results[kind]["true_boundaries"] = evaluate(run(all_packets, true_segments(scorer)))
    scorer.save()
    digest = hashlib.sha256("".join(sorted(d.item.path.name for d in docs)).encode()).hexdigest()
    result = {
        "command": f"python -m bench.split_accuracy --packets {args.packets} --seed {args.seed}",
        "model": "local, trained per fold on the other folds' documents (whole-document examples)",
        "documents": len(docs),
        "documents_scanned": sum(d.scan for d in docs),
        "documents_digest": digest[:12],
        "folds": FOLDS,
        "per_page_model_accuracy": page_level_model_accuracy(docs),
        "results": results,
        "segmentation_ms_per_page": round(statistics.mean(timings) * 1000, 3),
        "segment_classifications_per_page": {
            kind: round(calls, 4) for kind, calls in zip(KINDS, extra_calls, strict=True)
        },
        "segment_classification_ms_per_page": round(statistics.mean(extra_ms), 3),
        "page_classification_ms": round(statistics.mean(page_ms), 3),
        "page_scoring_s": round(scoring_seconds, 1),
        "prior_sd": prior_sd,
        "per_fold": {
            fold: {**fit.model.to_json(), "page_weight": fit.page_weight}
            for fold, fit in fitted.items()
        },
    }
    path = write_result("split", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
