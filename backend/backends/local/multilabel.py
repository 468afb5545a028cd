"""Multi-label for the embedded `local` model: an independent probability per label.

The single-label evidence reads a document's opening (its embedding takes the first
TITLE_CHARS characters, its lexical evidence weighs the top most) and a softmax makes the
labels compete, so a contract followed by an invoice reads as a contract alone (a sigmoid of
the whole document's logits gave that contract 0.05). Multi-label reads the document part by
part, where each part is one kind of document:

- parts: its pages when it has several, else windows of its one text (WINDOW characters, a new
  one at most every STRIDE, opening at a paragraph or line when one is near), so that the title
  of a document that begins mid-text is near the top of some window;
- per part, the single-label evidence of the part (zero_shot.zero_shot_logits on its text and
  the embedding of its opening) as the usual distribution q = softmax(z / TEMPERATURE): within
  one part the labels compete, as they should;
- a label is present when some part is that kind: s_k = max over parts of q_k (the catch-all
  label too: some part is none of the named kinds);
- p_k = sigmoid((logit(s_k) - OFFSET) / SCALE), OFFSET and SCALE fitted by log-loss on
  combinations of docs-v1 documents in 5 folds (bench/local_multilabel.py): p_k is calibrated,
  so the 0.5 threshold is the decision it should be.

With examples, the trained model's distribution of each part replaces q (same max, same map).
"""

import math

import numpy as np

from backend.backends.base import ClassifyRequest, ClassifyResult, LabelSpec
from backend.backends.local.embedder import EMBEDDER, TITLE_CHARS
from backend.backends.local.trained import TrainedModel
from backend.backends.local.zero_shot import TEMPERATURE, zero_shot_logits

WINDOW = 1500  # characters of a window: the opening the embedding reads and some body
STRIDE = 500  # a document's title lies in the top third (the lexical title area) of a window
MIN_TAIL = 250  # a shorter end of a text is read within the window before it
# Pages past it are merged into the last part; a text's windows step len/MAX_PARTS apart when
# that is wider than STRIDE (about MAX_PARTS windows: a step may stop short at a line).
MAX_PARTS = 64
# Fitted on 5 folds of docs-v1 (bench/local_multilabel.py, BENCHMARKS.md issue 25): the median
# of the folds' log-loss fits.
OFFSET = 0.72
SCALE = 1.233
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


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


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
