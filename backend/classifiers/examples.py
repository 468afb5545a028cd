"""Few-shot context for LLMs: the labelled examples most like the document at hand.

Similarity is TF-IDF cosine over the examples and the document (cheap, no model call); at most
`limit` examples, preferring different labels so the model sees contrasts, each cut to a token
budget later by the LLM backend.
"""

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from backend.backends.base import LabelledText

TEXT_CHARS = 4000


def most_similar(document: str, examples: list[LabelledText], limit: int = 3) -> list[LabelledText]:
    if not examples or not document.strip():
        return examples[:limit]
    texts = [e.text[:TEXT_CHARS] for e in examples]
    try:
        matrix = TfidfVectorizer(sublinear_tf=True).fit_transform([document[:TEXT_CHARS], *texts])
    except ValueError:  # no words at all
        return examples[:limit]
    similarity = cosine_similarity(matrix[0], matrix[1:])[0]
    ranked = sorted(range(len(examples)), key=lambda i: -similarity[i])
    chosen: list[int] = []
    for index in ranked:  # first pass: one per label
        if len(chosen) < limit and examples[index].label not in {examples[i].label for i in chosen}:
            chosen.append(index)
    for index in ranked:  # then the nearest of the rest
        if len(chosen) < limit and index not in chosen:
            chosen.append(index)
    return [examples[i] for i in chosen]
