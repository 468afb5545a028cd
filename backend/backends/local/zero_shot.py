"""Zero-shot classification from label names and descriptions alone.

Only what the user wrote is used, with general rules about how documents name themselves:
- Name evidence: does the document call itself by the label's name? The names are the label's
  own name ("payslip", "purchase_order" -> "purchase order"), the head nouns of the
  description's opening noun phrases ("A pay stub or salary slip showing ..." -> "pay stub",
  "salary slip") and its identifiers ("W-9", "1040"), plus the names other languages give the
  common kinds (lexicon.py: "invoice" -> "facture", "Rechnung"). Mentions near the top count
  most.
- Description evidence: the weighted share of the description's content words the document
  contains. A word weighs by its specificity: rare words in general English (wordfreq's Zipf
  scale) count most, words several labels share count less, stop words nothing.
- Identifier gate: a label that names a form number ("IRS Form 1040") is contradicted when the
  document never mentions that number, or when its title names itself another form ("Form
  6251", "Form W-4"): forms state their own number at the top, and cite others only below it.
  Likewise a document titled as a common kind ("PURCHASE ORDER", "POS Receipt") contradicts
  every label that does not name that kind: amounts and addresses make a purchase order look
  like an invoice, its title says it is not one.
- Semantic evidence: cosine similarity between the opening's embedding and the label's
  ("name: description"), relative to the other labels.
- Open set: a catch-all label ("other", or a description like "none of the above", "anything
  else", "does not fit") is not matched by its own words; it wins when no named label is
  supported well enough (a fixed threshold logit the named labels must beat).
- Enumerated kinds: the kinds a description lists after a colon, a comma or "such as" ("...:
  invoice, receipt, bank statement, check or pay slip") are names too, when they are known kinds
  (lexicon.py) or genres (genres.py).
- Categories: a label whose description enumerates two or more known kinds ("financial: ...:
  invoice, receipt, ...") is found by those kinds; its own word is not a name unless it is a
  kind itself. A description quoting a kind's hallmark line ("net pay") names that kind.
- Genre evidence: a label naming a genre (a letter, a paper, a resume, ...) gets the genre's cues
  found in the document (genres.py), whatever the document calls itself.
Most constants were chosen on docs-v1's 5-way label set and checked on its `label2` set;
GENRE_WEIGHT, CUE_SCALE and CATCH_ALL_LOGIT on 5 folds of docs-v1 over five label sets
(bench/local_tune.py, fold-wise numbers in BENCHMARKS.md).
"""

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from wordfreq import zipf_frequency

from backend.backends.base import LabelSpec
from backend.backends.local.genres import genre_evidence, genres_named
from backend.backends.local.lexicon import kinds_hallmarked, kinds_named, title_kind, translations
from backend.backends.local.text import (
    STOPWORDS,
    is_identifier,
    normalize,
    singular,
    stem,
    tokens,
)

CATCH_ALL_NAMES = frozenset(
    {"other", "others", "misc", "miscellaneous", "unknown", "none", "unclassified"}
)
CATCH_ALL_DESCRIPTION = re.compile(
    r"none of the above|anything else|any (other )?document (that )?(is|does) not|does not fit|"
    r"not (one|any) of the|everything else|all other|no other category",
    re.IGNORECASE,
)
# Nouns too general to name a kind of document ("A document requesting payment ...").
GENERIC_HEADS = frozenset(
    {"document", "documents", "file", "form", "paper", "page", "record", "item", "thing", "one"}
)
# Words that end a description's opening noun phrase.
PHRASE_BREAKS = (STOPWORDS | {"between", "among", "against", "within", "without", "per", "via"}) - {
    "and",
    "or",
    "a",
    "an",
    "the",
}

# Constants (see the module docstring for how they were chosen).
NAME_WEIGHT = 1.0  # name evidence relative to description evidence
LEXICAL_WEIGHT = 8.0
SEMANTIC_WEIGHT = 6.0
CATCH_ALL_LOGIT = 2.6
IDENTIFIER_GATE = 0.3  # evidence kept by a label whose form number is absent
# Evidence kept by a label the title contradicts (another form number or kind): stronger than an
# absent number, which OCR or a terse filled form may explain.
CONTRADICTION_GATE = 0.2
UNNAMED_FACTOR = 0.5  # lexical evidence kept when the document never uses the label's name
GENRE_WEIGHT = 6.0  # of the genre cues (genres.py) of the genres a label names
CUE_SCALE = 3.0  # three cues for about two thirds of the genre evidence: 1 - exp(-3 / CUE_SCALE)
# A label naming this many form numbers names a family of forms ("W-9, W-2, W-4, 1099"): a
# document of the family may carry a number the list leaves out, so neither identifier gate.
FAMILY_IDENTIFIERS = 3
# A description enumerating this many known kinds makes its label a category (_name_terms).
CATEGORY_KINDS = 2
TEMPERATURE = 0.6  # of the softmax over logits: lowest ECE on docs-v1 5-way + label2
TITLE_CHARS = 400
TITLE_BOOST = 2.0
DECAY_CHARS = 2000
FAR_WEIGHT = 0.1
_WORD = re.compile(r"[^\W_]+")
# What follows a field label's name: a colon, then a value that is not a number or code (a
# title may read "FACTURE: ABC12345"; a field reads "E-mail: ann@example.com").
_FIELD = re.compile(r"\s?:(?!\s*\S*\d)")
# Words every form has as a field ("E-mail", "Phone"): never evidence that a document is one.
FIELD_WORDS = frozenset({"email", "mail", "phone", "fax", "address", "date", "name", "signatur"})


def is_catch_all(spec: LabelSpec) -> bool:
    name = normalize(spec.label).replace("_", " ").strip()
    return name in CATCH_ALL_NAMES or bool(CATCH_ALL_DESCRIPTION.search(spec.description))


def catch_all_label(specs: list[LabelSpec]) -> str | None:
    """The label set's open-set label ("other"), if it has one."""
    return next((s.label for s in specs if is_catch_all(s)), None)


@dataclass
class LabelTerms:
    label: str
    names: set[str]  # stemmed words, joined phrases ("paystub") and identifiers
    description: dict[str, float]  # stemmed description word -> weight
    identifiers: set[str]
    genres: set[str]  # genres.py: whose cues count for the label

    @property
    def family(self) -> bool:
        return len(self.identifiers) >= FAMILY_IDENTIFIERS


def _specificity(word: str) -> float:
    if is_identifier(word):
        return 4.0
    if word in STOPWORDS or len(word) < 2:
        return 0.0
    return max(0.0, 6.5 - zipf_frequency(word, "en")) + 0.25


def _opening_phrases(description: str) -> list[list[str]]:
    """The description's opening noun phrases: "A pay stub or salary slip showing ..." ->
    [pay, stub], [salary, slip]; stops at the first preposition, verb form or punctuation."""
    text = re.sub(r"(?<=\b[a-z])\.", "", normalize(description))  # "u.s." -> "us"
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", "", text)  # "buyer-issued" -> "buyerissued"
    phrases, current = [], []
    for match in re.finditer(r"[^\W_]+|\S", text):
        word = match.group()
        if word in ("or", "and"):
            if current:
                phrases.append(current)
            current = []
            continue
        if word in ("a", "an", "the") and not current:
            continue
        if word in GENERIC_HEADS:  # kept, so that "A buyer-issued document" has no usable head
            current.append(word)
            continue
        # An "-ing" word ends the phrase ("slip showing"), unless an adverb makes it an
        # adjective ("legally binding agreement").
        participle = word.endswith("ing") and not (current and current[-1].endswith("ly"))
        # A past participle after a noun ends it too ("press release addressed to ...").
        participle |= bool(current) and word.endswith("ed") and len(word) > 4
        if not word[0].isalnum() or word in PHRASE_BREAKS or participle:
            break
        current.append(word)
    if current:
        phrases.append(current)
    return phrases


_LIST_INTRO = re.compile(
    r"^\s*(?:such as|for example|for instance|e\.?g\.?|i\.?e\.?|including|includes|like|"
    r"especially|namely)\s+"
)


def _enumerated_phrases(description: str) -> list[list[str]]:
    """The noun phrases of every comma, colon or semicolon separated part of the description
    after the first: the kinds a description enumerates ("... earnings: invoice, receipt, bank
    statement, check or pay slip", "such as a lease, a loan note or a license agreement")."""
    parts = re.split(r"[,:;()]", normalize(description))
    return [phrase for part in parts[1:] for phrase in _opening_phrases(_LIST_INTRO.sub("", part))]


def _phrase_terms(phrase: list[str]) -> set[str]:
    """The head and the compound of a phrase, as name terms ("bank statement" ->
    "bankstatement", "statement")."""
    head = phrase[-1]
    terms = {head if is_identifier(head) else stem(singular(head))}
    if len(phrase) > 1:
        terms.add(phrase[-2] + singular(head))
        terms.add("".join(phrase[:-1]) + singular(head))
    return terms


def _known_kinds(terms: set[str]) -> set[str]:
    """The terms that name a kind (lexicon.py) or a genre (genres.py)."""
    return {t for t in terms if kinds_named({t}) or genres_named({t})}


def _name_terms(spec: LabelSpec) -> set[str]:
    name_words = tokens(spec.label.replace("_", " "))
    names = {"".join(name_words)} if len(name_words) > 1 else {stem(w) for w in name_words}
    # A label whose description lists the kinds it covers names a category ("financial: ...:
    # invoice, receipt, bank statement"): documents call themselves by the kinds, and use the
    # category's word in passing ("financial institution"). Unless the name is a kind itself.
    enumerated = [_known_kinds(_phrase_terms(p)) for p in _enumerated_phrases(spec.description)]
    if not _known_kinds(names) and sum(bool(k) for k in enumerated) >= CATEGORY_KINDS:
        names = set()
    previous: list[str] = []
    for phrase in _opening_phrases(spec.description):
        # Coordinated heads share the modifier before them: "tax form or return" -> "tax return"
        # (a bare "return" would match every program listing).
        if len(phrase) == 1 and len(previous) > 1 and previous[-2] not in GENERIC_HEADS:
            phrase = [previous[-2], phrase[0]]
        previous = phrase
        head = phrase[-1]
        if head in GENERIC_HEADS or head in STOPWORDS or len(head) < 2 or head.isdigit():
            continue
        modifier = phrase[-2] if len(phrase) > 1 else None
        if modifier is None or is_identifier(head) or modifier.endswith(("ly", "ing", "ed")):
            names.add(
                head if is_identifier(head) else stem(singular(head))
            )  # "bill", "w9", "agreement"
        else:  # a compound: "pay stub" -> "paystub", which also matches "paystub" written as one
            names.add(modifier + singular(head))
    # Enumerated kinds are names when they are known kinds or genres: a list's other items
    # ("Request for ...", "charge or earnings") need not be what the document calls itself.
    for phrase in _enumerated_phrases(spec.description):
        if phrase[-1] not in GENERIC_HEADS or len(phrase) > 1:
            names |= {t for t in _known_kinds(_phrase_terms(phrase)) if t not in GENERIC_HEADS}
    names |= kinds_hallmarked(tokens(spec.description))
    return (names | translations(names)) - FIELD_WORDS


def _genres(spec: LabelSpec, names: set[str], identifiers: set[str]) -> set[str]:
    """The genres the label's name, names and described kinds name. None for a label naming
    one or two form numbers: it is about a form, whose near-duplicates share its genre's cues."""
    if identifiers and len(identifiers) < FAMILY_IDENTIFIERS:
        return set()
    name_words = tokens(spec.label.replace("_", " "))
    terms = set(names) | {stem(w) for w in name_words} | {"".join(name_words)}
    for phrase in _opening_phrases(spec.description) + _enumerated_phrases(spec.description):
        terms |= _phrase_terms(phrase)
    return genres_named(terms)


def label_terms(specs: list[LabelSpec]) -> list[LabelTerms]:
    out = []
    for spec in specs:
        words = tokens(spec.label.replace("_", " ")) + tokens(spec.description)
        identifiers = {w for w in words if is_identifier(w)}
        names = _name_terms(spec) | identifiers
        description: dict[str, float] = {}
        for word in tokens(spec.description):
            weight = 0.0 if word in PHRASE_BREAKS else _specificity(word)
            if weight > 0 and stem(word) not in names and word not in names:
                description[stem(word)] = max(description.get(stem(word), 0.0), weight)
        out.append(
            LabelTerms(
                spec.label, names, description, identifiers, _genres(spec, names, identifiers)
            )
        )
    # Words several labels share tell them apart less.
    shared = Counter(term for label in out for term in label.description)
    for label in out:
        label.description = {t: w / shared[t] for t, w in label.description.items()}
    return out


def document_counts(text: str) -> tuple[Counter, Counter]:
    """Stemmed word counts plus joined bigrams ("pay stub" -> "paystub") and trigrams, weighted
    by position:
    a document says what it is at the top, so a mention counts less the further down it is
    (never below FAR_WEIGHT), and the title area (top of page 1) counts TITLE_BOOST more.
    Second: the same counts of the mentions that are field labels ("E-mail:", "Receipt No.:"),
    which name what is filled in beside them, not the document."""
    counts: Counter = Counter()
    fields: Counter = Counter()
    normalized = normalize(text)
    previous = before = None
    position = 0  # characters of words before this one: a table's numbers do not push it down
    for match in _WORD.finditer(normalized):
        word = match.group()
        weight = max(FAR_WEIGHT, math.exp(-position / DECAY_CHARS))
        weight += TITLE_BOOST if position < TITLE_CHARS else 0.0
        field = _FIELD.match(normalized, match.end()) is not None
        counts[stem(word)] += weight
        if field:
            fields[stem(word)] += weight
        if previous is not None:
            counts[previous + word] += weight
            if field:
                fields[previous + word] += weight
            if before is not None:  # "bon de commande" -> "bondecommande" (lexicon.py)
                counts[before + previous + word] += weight
        previous, before = word, previous
        if not word.isdigit():
            position += len(word) + 1
    return counts, fields


def title_identifier(text: str) -> str | None:
    """The form number a document gives itself at the top ("Form 6251", "(Form 1040)")."""
    words = tokens(text[:TITLE_CHARS])
    for a, b in zip(words, words[1:], strict=False):
        if a in ("form", "forms") and is_identifier(b):
            return b
    return None


def _saturate(count: float) -> float:
    return 1 - math.exp(-count / 2)


def lexical_scores(terms: list[LabelTerms], text: str) -> tuple[np.ndarray, np.ndarray]:
    """Per label: lexical evidence in [0, 1], and whether the title names another form or
    another kind of document."""
    counts, fields = document_counts(text)
    own = title_identifier(text)
    own_kind = title_kind(text[:TITLE_CHARS])
    scores, contradicted = [], []
    for label in terms:
        name = max(
            (_saturate(counts.get(t, 0) - fields.get(t, 0)) for t in label.names), default=0.0
        )
        total = sum(label.description.values())
        described = (
            sum(w * _saturate(counts.get(t, 0)) for t, w in label.description.items()) / total
            if total
            else 0.0
        )
        score = (NAME_WEIGHT * name + described) / (NAME_WEIGHT + 1)
        if label.names and name == 0:  # described, but never called by its name
            score *= UNNAMED_FACTOR
        absent = not any(counts.get(i, 0) for i in label.identifiers)
        if label.identifiers and absent and not label.family:
            score *= IDENTIFIER_GATE
        scores.append(score)
        kinds = kinds_named(label.names)
        other_form = own is not None and own not in label.identifiers and not label.family
        contradicted.append(
            (other_form and bool(label.identifiers or kinds))
            or (own_kind is not None and own_kind not in kinds)
        )
    return np.array(scores), np.array(contradicted)


def genre_scores(terms: list[LabelTerms], text: str) -> np.ndarray:
    return np.array([genre_evidence(text, label.genres, CUE_SCALE) for label in terms])


def label_text(spec: LabelSpec) -> str:
    return f"{spec.label.replace('_', ' ')}: {spec.description}"


def kind_texts(spec: LabelSpec) -> list[str]:
    """The kinds the description enumerates, each as its own short text to embed ("a letter",
    "a press release"): a document is one of them, and matches it better than the whole list."""
    return [" ".join(phrase) for phrase in _enumerated_phrases(spec.description)]


def zero_shot_logits(
    specs: list[LabelSpec], text: str, doc_embedding: np.ndarray, label_embeddings: np.ndarray
) -> np.ndarray:
    """One logit per label; a catch-all label gets the fixed threshold."""
    catch_all = [is_catch_all(s) for s in specs]
    named = [i for i, c in enumerate(catch_all) if not c]
    terms = label_terms([specs[i] for i in named])
    lexical, contradicted = lexical_scores(terms, text)
    cosines = label_embeddings[named] @ doc_embedding
    semantic = cosines - cosines.mean() if len(named) > 1 else cosines * 0
    support = LEXICAL_WEIGHT * lexical + SEMANTIC_WEIGHT * semantic
    support += GENRE_WEIGHT * genre_scores(terms, text)
    # A document titled as another form is not this one, however similar its wording.
    support = np.where(contradicted, np.minimum(support, support * CONTRADICTION_GATE), support)
    logits = np.full(len(specs), CATCH_ALL_LOGIT)
    logits[named] = support
    return logits


def zero_shot_probabilities(
    specs: list[LabelSpec], text: str, doc_embedding: np.ndarray, label_embeddings: np.ndarray
) -> dict[str, float]:
    """Probabilities over `specs` for a document (its text and opening's embedding)."""
    z = zero_shot_logits(specs, text, doc_embedding, label_embeddings) / TEMPERATURE
    p = np.exp(z - z.max())
    p /= p.sum()
    return {spec.label: float(v) for spec, v in zip(specs, p, strict=True)}
