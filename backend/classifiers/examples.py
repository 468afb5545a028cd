"""Few-shot context for LLMs: the labelled examples most like the document at hand.

Similarity is TF-IDF cosine over character n-grams (cheap, no model call; robust to OCR noise
and to languages without spaces). At most `limit` examples, the nearest of each label first so
the model sees contrasts, then the nearest of the rest; each cut so that all fit `token_budget`.
"""

from dataclasses import replace

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from backend.backends.base import LabelledText
from backend.backends.llm.budget import count_tokens, fit_pages

MAX_EXAMPLES = 3
TOKEN_BUDGET = 1500  # all few-shot examples together, beside the document's own budget
TEXT_CHARS = 4000  # compared for similarity (where a document's type shows)


def _ranked(document: str, examples: list[LabelledText]) -> list[int]:
    """Indexes of the examples, most similar to the document first (input order if unknown)."""
    if not document.strip():
        return list(range(len(examples)))
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform(
            [document[:TEXT_CHARS], *(e.text[:TEXT_CHARS] for e in examples)]
        )
    except ValueError:  # no characters to compare at all
        return list(range(len(examples)))
    similarity = cosine_similarity(matrix[0], matrix[1:])[0]
    return sorted(range(len(examples)), key=lambda i: -similarity[i])


def most_similar(
    document: str,
    examples: list[LabelledText],
    limit: int = MAX_EXAMPLES,
    token_budget: int = TOKEN_BUDGET,
) -> list[LabelledText]:
    """Up to `limit` examples for the prompt, most useful first, cut to `token_budget` in all."""
    if not examples or limit < 1:
        return []
    ranked = _ranked(document, examples)
    chosen: list[int] = []
    for index in ranked:  # first pass: the nearest example of each label
        if len(chosen) < limit and examples[index].label not in {examples[i].label for i in chosen}:
            chosen.append(index)
    for index in ranked:  # then the nearest of the rest
        if len(chosen) < limit and index not in chosen:
            chosen.append(index)
    share = token_budget // len(chosen)
    picked = []
    for index in chosen:
        example = examples[index]
        text = example.text[: share * 8]  # a cheap first cut: tokens rarely exceed 8 chars
        if count_tokens(text) > share:
            text = fit_pages([(1, text)], share)[0][1]
        picked.append(replace(example, text=text))  # an example's image goes along
    return picked
