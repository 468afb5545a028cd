"""Multi-label for the embedded `local` model: an independent probability per label.

The single-label evidence reads a document's opening (its embedding takes the first
TITLE_CHARS characters, its lexical evidence weighs the top most), and a softmax makes the
labels compete, so a contract followed by an invoice reads as a contract alone. Multi-label
therefore reads the document part by part:

- parts: its pages when it has several, else windows of its one text (WINDOW characters every
  STRIDE, each starting at a line, so the title of a document that begins mid-text opens one);
- per part, the usual evidence (zero_shot.zero_shot_logits on the part's text and the embedding
  of its opening) as a distribution q over the labels (a part is one kind of document, so the
  labels compete within it), or, with examples, the trained model's distribution for the part;
- a label is present when some part is that kind: s_k = max over parts of q_k; a catch-all
  label ("other") is present when some part is none of the named labels, i.e. like the others;
- mapped to a probability by a sigmoid on the log-odds: p_k = sigmoid((logit(s_k) - OFFSET) /
  SCALE), OFFSET and SCALE fitted by log-loss on folds of docs-v1 (bench/local_multilabel.py),
  so that p_k is calibrated and 0.5 is the decision the threshold makes.
"""

import math

import numpy as np

from backend.backends.base import ClassifyRequest, ClassifyResult, LabelSpec
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.trained import TrainedModel
from backend.backends.local.zero_shot import CATCH_ALL_LOGIT, TEMPERATURE, zero_shot_logits

WINDOW = 1500  # characters of a window: the opening the embedding reads and some body
STRIDE = 500  # a document's title lies in the top third (the lexical title area) of a window
MIN_TAIL = 250  # a shorter end of a text is read within the window before it
MAX_PARTS = 64  # a longer document's windows are spread further apart; pages past it are merged
TITLE_CHARS = 1000  # of a part, embedded (as document_embedding does for the whole document)
# Fitted on 5 folds of docs-v1 (bench/local_multilabel.py, BENCHMARKS.md issue 25): the median
# of the folds' log-loss fits.
OFFSET = 0.0
SCALE = 1.0
EPSILON = 1e-4  # log-odds of a part score are clipped to +-9.2


def parts(pages: list[str]) -> list[str]:
    """The parts of a document read separately: its non-empty pages (at most MAX_PARTS, the
    last part taking the rest), else windows of its one text."""
    texts = [p for p in pages if p.strip()]
    if len(texts) > 1:
        if len(texts) > MAX_PARTS:
            texts = texts[: MAX_PARTS - 1] + ["\n\n".join(texts[MAX_PARTS - 1 :])]
        return texts
    text = texts[0] if texts else ""
    return windows(text)


def windows(text: str) -> list[str]:
    """Windows of WINDOW characters starting at most STRIDE apart, each at a paragraph (else a
    line) when one starts in the second half of the stride, until the rest is shorter than
    MIN_TAIL: every line of the text lies in the top STRIDE characters of some window."""
    if len(text) <= WINDOW:
        return [text]
    stride = max(STRIDE, math.ceil(len(text) / (MAX_PARTS - 1)))
    out, start = [], 0
    while True:
        out.append(text[start : start + WINDOW])
        target = start + stride
        if len(text) - target < MIN_TAIL:
            return out
        low = start + stride // 2
        paragraph = text.rfind("\n\n", low, target)
        line = text.rfind("\n", low, target)
        start = paragraph + 2 if paragraph >= 0 else line + 1 if line >= 0 else target


def part_logits(labels: list[LabelSpec], texts: list[str], label_vectors: np.ndarray) -> np.ndarray:
    """(parts x labels): the zero-shot logits of each part."""
    embeddings = EMBEDDER.embed([t[:TITLE_CHARS] for t in texts])
    return np.vstack(
        [
            zero_shot_logits(labels, t, e, label_vectors)
            for t, e in zip(texts, embeddings, strict=True)
        ]
    )


def part_distributions(
    labels: list[LabelSpec], texts: list[str], label_vectors: np.ndarray
) -> np.ndarray:
    """(parts x labels): the zero-shot distribution of each part."""
    return softmax(part_logits(labels, texts, label_vectors) / TEMPERATURE)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def margins(logits: np.ndarray, catch_all: np.ndarray) -> np.ndarray:
    """(parts x labels): how far a named label's logit is over the catch-all threshold (no
    competition between named labels), and for a catch-all label how far the threshold is over
    the best named label."""
    out = logits - CATCH_ALL_LOGIT
    named = logits[:, ~catch_all]
    best = named.max(axis=1) if named.size else np.full(len(logits), -np.inf)
    out[:, catch_all] = (CATCH_ALL_LOGIT - best)[:, None]
    return out


def presence(distributions: np.ndarray) -> np.ndarray:
    """Per label: its highest score over the parts."""
    return distributions.max(axis=0)


def probabilities(scores: np.ndarray, offset: float = OFFSET, scale: float = SCALE) -> np.ndarray:
    odds = np.log(np.clip(scores, EPSILON, 1 - EPSILON) / np.clip(1 - scores, EPSILON, 1))
    return 1 / (1 + np.exp(-(odds - offset) / scale))


def classify(
    request: ClassifyRequest, label_vectors: np.ndarray, trained: TrainedModel | None
) -> ClassifyResult:
    """Independent probabilities per label (see the module docstring); `trained`: the model
    fitted on the request's examples, whose distribution of each part replaces the zero-shot
    one."""
    texts = parts(request.pages)
    logits = part_logits(request.labels, texts, label_vectors)
    if trained is None:
        distributions, method = softmax(logits / TEMPERATURE), "local_zero_shot"
    else:
        distributions, method = trained.predict_proba(texts, logits), "local_trained"
    p = probabilities(presence(distributions))
    return ClassifyResult(
        scores={spec.label: float(v) for spec, v in zip(request.labels, p, strict=True)},
        confidence_method=method,
        details={"parts": len(texts)},
    )
