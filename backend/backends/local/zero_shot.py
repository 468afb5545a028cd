"""Zero-shot classification from label names and descriptions alone.

What a description gives is used directly:
- Lexical evidence. Each label's terms are its name (split and joined: "form_1040" -> form, 1040,
  "form 1040"; "payslip" <-> "pay slip") and the content words of its description, stemmed.
  A term weighs by its specificity: rare words in general English (wordfreq's Zipf scale) and
  identifiers such as form numbers count most, words several labels share count less, stop
  words nothing. A document's evidence for a label is the weighted share of the label's terms
  it contains (with saturation), with the title area (top of page 1) counting extra, and a
  label whose identifiers ("W-9", "1040") are all absent from the document is discounted.
- Semantic evidence: cosine similarity between the document's embedding and the label's
  ("name: description"), relative to the other labels.
- Open set: a catch-all label ("other", or a description like "none of the above", "anything
  else", "does not fit") is not matched by its own words; it stands for "no named label is
  supported well enough", as a fixed threshold logit the named labels must beat.
The logits are turned into probabilities with a softmax whose temperature keeps them modest.
The constants were chosen on docs-v1's 5-way label set and checked on its `label2` set.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from wordfreq import zipf_frequency

from backend.backends.base import LabelSpec
from backend.backends.local.text import STOPWORDS, is_identifier, normalize, stem, tokens

CATCH_ALL_NAMES = frozenset(
    {"other", "others", "misc", "miscellaneous", "unknown", "none", "unclassified"}
)
CATCH_ALL_DESCRIPTION = re.compile(
    r"none of the above|anything else|any (other )?document (that )?(is|does) not|does not fit|"
    r"not (one|any) of the|everything else|all other|no other category",
    re.IGNORECASE,
)

# Constants (see the module docstring for how they were chosen).
LEXICAL_WEIGHT = 9.0
SEMANTIC_WEIGHT = 6.0
CATCH_ALL_LOGIT = 2.2
MISSING_IDENTIFIER_FACTOR = 0.35
TITLE_CHARS = 400
TITLE_BOOST = 2.0
TEMPERATURE = 1.0


def is_catch_all(spec: LabelSpec) -> bool:
    name = normalize(spec.label).replace("_", " ").strip()
    return name in CATCH_ALL_NAMES or bool(CATCH_ALL_DESCRIPTION.search(spec.description))


@dataclass
class LabelTerms:
    label: str
    weights: dict[str, float]  # stemmed term (or joined phrase) -> weight
    identifiers: set[str]


def _specificity(word: str) -> float:
    if is_identifier(word):
        return 4.0
    if word in STOPWORDS or len(word) < 2:
        return 0.0
    return max(0.0, 6.5 - zipf_frequency(word, "en")) + 0.25


def label_terms(specs: list[LabelSpec]) -> list[LabelTerms]:
    raw: list[dict[str, float]] = []
    identifiers: list[set[str]] = []
    for spec in specs:
        name_words = tokens(spec.label.replace("_", " "))
        weights: dict[str, float] = {}
        idents: set[str] = set()
        for word in name_words + tokens(spec.description):
            weight = _specificity(word)
            if weight > 0:
                weights[stem(word)] = max(weights.get(stem(word), 0.0), weight)
            if is_identifier(word):
                idents.add(word)
        # The name is the strongest cue: its words count double, joined or split.
        for word in name_words:
            if stem(word) in weights:
                weights[stem(word)] *= 2.0
        if len(name_words) > 1:
            weights["".join(name_words)] = 4.0
        raw.append(weights)
        identifiers.append(idents)
    # Words several labels share tell them apart less.
    shared = Counter(term for weights in raw for term in weights)
    return [
        LabelTerms(spec.label, {t: w / shared[t] for t, w in weights.items()}, idents)
        for spec, weights, idents in zip(specs, raw, identifiers, strict=True)
    ]


def document_counts(text: str) -> tuple[Counter, Counter]:
    """Stemmed term counts of the whole text and of its title area; joined bigrams included."""

    def count(part: str) -> Counter:
        words = tokens(part)
        counter = Counter(stem(w) for w in words)
        counter.update(a + b for a, b in zip(words, words[1:], strict=False))
        return counter

    return count(text), count(text[:TITLE_CHARS])


def lexical_scores(terms: list[LabelTerms], text: str) -> np.ndarray:
    counts, title = document_counts(text)
    scores = []
    for label in terms:
        total = sum(label.weights.values())
        if total == 0:
            scores.append(0.0)
            continue
        got = 0.0
        for term, weight in label.weights.items():
            tf = counts.get(term, 0) + TITLE_BOOST * title.get(term, 0)
            got += weight * (1 - math.exp(-tf / 2))
        score = got / total
        if label.identifiers and not any(counts.get(i, 0) for i in label.identifiers):
            score *= MISSING_IDENTIFIER_FACTOR
        scores.append(score)
    return np.array(scores)


def label_text(spec: LabelSpec) -> str:
    return f"{spec.label.replace('_', ' ')}: {spec.description}"


def zero_shot_probabilities(
    specs: list[LabelSpec], text: str, doc_embedding: np.ndarray, label_embeddings: np.ndarray
) -> dict[str, float]:
    """Probabilities over `specs` for a document (its text and embedding)."""
    catch_all = [is_catch_all(s) for s in specs]
    named = [i for i, c in enumerate(catch_all) if not c]
    terms = label_terms([specs[i] for i in named])
    lexical = lexical_scores(terms, text)
    cosines = label_embeddings[named] @ doc_embedding
    semantic = cosines - cosines.mean() if len(named) > 1 else cosines * 0
    logits = np.full(len(specs), CATCH_ALL_LOGIT)
    logits[named] = LEXICAL_WEIGHT * lexical + SEMANTIC_WEIGHT * semantic
    if not any(catch_all):
        logits = logits  # closed set: the named labels compete only with each other
    z = logits / TEMPERATURE
    p = np.exp(z - z.max())
    p /= p.sum()
    return {spec.label: float(v) for spec, v in zip(specs, p, strict=True)}
