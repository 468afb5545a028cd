"""Text normalization shared by the zero-shot and trained local models."""

import re
import threading
import unicodedata
from functools import lru_cache

import snowballstemmer

# "W-9", "W 9", "w9" are one identifier; so are "IL-1040" and "OR-40" (but not "or 1040").
_IDENT_JOIN = re.compile(r"\b([a-z]{1,2})([-\s]?)(\d{1,4})\b")
_NOT_A_PREFIX = frozenset({"a", "an", "at", "by", "in", "is", "no", "of", "on", "or", "to", "and"})
_YEAR = re.compile(r"(19|20)\d\d")
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits of any script: "תלוש", "فاتورة"
_COMBINING = re.compile(r"[\u0300-\u036f]")  # accents, once NFKD has split them off
# Snowball stemmers keep per-word state: one per thread (the model runs in worker threads).
_STEMMERS = threading.local()

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "with",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "will",
        "would",
        "can",
        "could",
        "should",
        "may",
        "might",
        "must",
        "not",
        "no",
        "one",
        "two",
        "their",
        "them",
        "they",
        "these",
        "those",
        "there",
        "here",
        "such",
        "other",
        "others",
        "than",
        "then",
        "also",
        "into",
        "over",
        "under",
        "each",
        "every",
        "all",
        "both",
        "some",
        "same",
        "own",
        "very",
        "more",
        "most",
        "less",
        "least",
        "only",
        "just",
        "about",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "once",
        "including",
        "include",
        "includes",
        "showing",
        "shows",
        "show",
        "none",
        "above",
        "document",
        "documents",
        "fit",
        "fits",
        "category",
        "categories",
        "type",
        "types",
        "kind",
        "kinds",
    ]
)


def _join(match: re.Match) -> str:
    prefix, gap, number = match.groups()
    if gap == " " and prefix in _NOT_A_PREFIX:
        return match.group()
    return prefix + number


def normalize(text: str) -> str:
    """Lower case without accents ("Relevé" -> "releve"), so that words of other languages stay
    whole words for the tokenizers; form numbers joined ("W-9" -> "w9")."""
    text = unicodedata.normalize("NFKD", text.lower()).replace("ß", "ss")
    text = unicodedata.normalize("NFKC", _COMBINING.sub("", text))
    return _IDENT_JOIN.sub(_join, text)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def singular(word: str) -> str:
    """An English plural's singular, roughly ("slips" -> "slip", "policies" -> "policy"): the
    head of a joined compound ("pay slips" -> "payslip"), which is not stemmed."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def is_identifier(token: str) -> bool:
    """Form numbers and codes: a token with a digit in it (w9, 1040, 1099), but not a year."""
    if token.isdigit():
        return len(token) >= 3 and not (len(token) == 4 and _YEAR.fullmatch(token))
    return any(ch.isdigit() for ch in token)
