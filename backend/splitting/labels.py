"""A segment's label: the segment classified as one document, once its boundaries are chosen.

The boundaries come from the pages' own classifications (boundaries.py), but a document read
whole is classified better than its pages one by one (trained `local` on docs-v1, 5 labels:
about 0.96 per document against 0.93 per page): a schedule's second page or an invoice's
terms say little alone. So every segment of two or more pages is classified again, its pages'
text joined as /v1/classify reads a document; a one-page segment's classification is its page's
(the same request). The segment's scores are that classification's, optionally tempered by the
geometric mean of its pages' scores (`PAGE_WEIGHT`, chosen on folds by bench/split_accuracy.py;
0 keeps the document's own scores, so a file that is one document gets /v1/classify's label).
"""

import math

from backend.splitting.boundaries import MIN_PROBABILITY, segment_scores

# How much the pages' geometric-mean scores count beside the segment's own classification.
PAGE_WEIGHT = 0.0


def combined_scores(
    document: dict[str, float] | None,
    pages: list[dict[str, float]],
    page_weight: float = PAGE_WEIGHT,
) -> dict[str, float]:
    """The segment's distribution: its own classification's (`document`, None when there is
    none) times its pages' normalized geometric mean to the power `page_weight`."""
    page_mean = segment_scores(pages)
    if document is None:
        return page_mean
    if not page_weight:
        return dict(document)
    logs = {
        label: math.log(max(document[label], MIN_PROBABILITY))
        + page_weight * math.log(max(page_mean[label], MIN_PROBABILITY))
        for label in document
    }
    top = max(logs.values())
    weights = {label: math.exp(v - top) for label, v in logs.items()}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}
