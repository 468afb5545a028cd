"""Where one document ends and the next begins, and what each one is.

Every page has a distribution over labels (from the model) and page signals (signals.py). Each
gap between two pages gets a boundary score: the log-odds that a new document starts there,
the sum of weighted signals (below). The segmentation is then the most likely path of a simple
hidden Markov model, found by Viterbi: a page either continues the current document (same label,
log-probability of "no boundary") or starts a new one with any label, including the same one
(log-probability of "boundary"); each page adds the log-probability of the segment's label.

So a label change alone opens a segment only when the model is surer of it than the signals
are of a continuation (one odd page inside a W-9 stays in the W-9), and two invoices in a row
become two segments when their pages say so (a title at the top, "page 1 of 1", a new invoice
number, a sharp change of content or page size).
"""

import math
from dataclasses import dataclass, field

from backend.splitting.signals import PageMarks, neighbour_similarity, read_marks, size_changed

# Log-odds weights of the signals. Hand-set (not fitted) and checked with bench/split_accuracy.py.
PRIOR = -1.0  # a gap without any signal: most pages continue the document before them
FIRST_PAGE = 3.5  # "page 1 of 3", "Page 1"
LATER_PAGE = -3.5  # "page 2 of 3", "Page 2"
FOLLOWS_LAST_PAGE = 1.5  # the previous page said it was the last ("3 of 3")
PROMISED_MORE = -1.5  # the previous page said more would follow ("1 of 3") and this one is silent
CONTINUED = -2.0  # "(continued)" at the top
TITLE = 1.5  # a document title heads the page
NEW_DOC_NUMBER = 2.0  # another invoice / order number than the previous page's
SAME_DOC_NUMBER = -1.5
SIZE_CHANGE = 1.0  # page size or orientation changed
SIMILARITY_PIVOT = 0.25  # similarity of neighbour pages where content says nothing either way
SIMILARITY_WEIGHT = 6.0  # log-odds per unit of similarity below (above) the pivot
SIMILARITY_CAP = 2.0
LABEL_WEIGHT = 1.0  # how much the per-page label probabilities count against the signals
MIN_PROBABILITY = 1e-4  # a page's score never vetoes a label outright


@dataclass
class PageEvidence:
    """What is known about one page: its label scores, text and size."""

    scores: dict[str, float]
    text: str
    size: tuple[float, float] | None = None


@dataclass
class SegmentPlan:
    first: int  # 0-based index of its first page in the list given
    end: int  # one past its last page
    label: str
    scores: dict[str, float]


@dataclass
class Gap:
    """The boundary score before one page and what it is made of (for explanations)."""

    log_odds: float
    reasons: dict[str, float] = field(default_factory=dict)


def _number_signals(previous: PageMarks, current: PageMarks) -> dict[str, float]:
    reasons: dict[str, float] = {}
    if current.number == 1:
        reasons["first_page"] = FIRST_PAGE
    elif current.number is not None:
        reasons["later_page"] = LATER_PAGE
    elif previous.number is not None and previous.total is not None:
        if previous.number == previous.total:
            reasons["follows_last_page"] = FOLLOWS_LAST_PAGE
        else:
            reasons["promised_more"] = PROMISED_MORE
    if current.continued and current.number is None:
        reasons["continued"] = CONTINUED
    return reasons


def gap_scores(pages: list[PageEvidence]) -> list[Gap]:
    """The boundary score before every page but the first (so len(pages) - 1 gaps)."""
    marks = [read_marks(p.text) for p in pages]
    similarity = neighbour_similarity([p.text for p in pages])
    gaps = []
    for i in range(1, len(pages)):
        previous, current = marks[i - 1], marks[i]
        reasons = {"prior": PRIOR, **_number_signals(previous, current)}
        if current.title and (current.number is None or current.number == 1):
            reasons["title"] = TITLE
        if current.doc_number and previous.doc_number:
            same = current.doc_number == previous.doc_number
            reasons["doc_number"] = SAME_DOC_NUMBER if same else NEW_DOC_NUMBER
        if size_changed(pages[i - 1].size, pages[i].size):
            reasons["size_change"] = SIZE_CHANGE
        if similarity[i] is not None:
            shift = SIMILARITY_WEIGHT * (SIMILARITY_PIVOT - similarity[i])
            reasons["content_change"] = max(-SIMILARITY_CAP, min(SIMILARITY_CAP, shift))
        gaps.append(Gap(sum(reasons.values()), {k: round(v, 3) for k, v in reasons.items()}))
    return gaps


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def segment(pages: list[PageEvidence], gaps: list[Gap] | None = None) -> list[SegmentPlan]:
    """The most likely segmentation (Viterbi), each segment with its label and scores."""
    if not pages:
        return []
    labels = list(pages[0].scores)
    gaps = gap_scores(pages) if gaps is None else gaps
    emit = [
        {label: LABEL_WEIGHT * math.log(max(p.scores[label], MIN_PROBABILITY)) for label in labels}
        for p in pages
    ]
    best = dict(emit[0])
    # back[i][label] = (previous label, whether page i starts a new segment)
    back: list[dict[str, tuple[str, bool]]] = [{}]
    for i in range(1, len(pages)):
        new_doc = _log_sigmoid(gaps[i - 1].log_odds)
        same_doc = _log_sigmoid(-gaps[i - 1].log_odds)
        leader = max(labels, key=lambda label: best[label])
        step: dict[str, float] = {}
        pointers: dict[str, tuple[str, bool]] = {}
        for label in labels:
            stay, switch = best[label] + same_doc, best[leader] + new_doc
            if stay >= switch:
                step[label], pointers[label] = stay + emit[i][label], (label, False)
            else:
                step[label], pointers[label] = switch + emit[i][label], (leader, True)
        best = step
        back.append(pointers)
    # Walk back from the best final label.
    label = max(labels, key=lambda name: best[name])
    path, starts = [label] * len(pages), [0]
    for i in range(len(pages) - 1, 0, -1):
        previous, is_start = back[i][label]
        if is_start:
            starts.append(i)
        label = previous
        path[i - 1] = label
    starts.sort()
    bounds = list(zip(starts, [*starts[1:], len(pages)], strict=True))
    return [
        SegmentPlan(first, end, path[first], segment_scores([p.scores for p in pages[first:end]]))
        for first, end in bounds
    ]


def segment_scores(distributions: list[dict[str, float]]) -> dict[str, float]:
    """A segment's distribution: the normalized geometric mean of its pages' (the product of the
    pages' evidence, tempered by their number so a long segment is not overconfident). Its top
    label is the one the segmentation chose."""
    labels = list(distributions[0])
    logs = {
        label: sum(math.log(max(d[label], MIN_PROBABILITY)) for d in distributions)
        / len(distributions)
        for label in labels
    }
    top = max(logs.values())
    weights = {label: math.exp(v - top) for label, v in logs.items()}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}
