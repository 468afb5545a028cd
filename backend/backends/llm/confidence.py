"""From the model's next-token log-probabilities to a distribution over the labels (SPEC §3).

Method "logprobs" (one call, labels fit the window):
1. Every alternative in `top_logprobs` of the first answer token is matched to a code after
   dropping spaces, quotes, brackets and case: " A", "A", "a", "(A" all count for code A, and
   their probabilities add up.
2. A code absent from the top alternatives has a probability no larger than the smallest one
   listed (else it would be listed), and all absent codes together share at most the mass the
   listed alternatives leave. Each absent code gets min(smallest listed, leftover / absent).
3. The code probabilities are normalized to sum to 1 (conditioning on "the answer is a code")
   and, at the end, rounded to 4 decimals with the rounding remainder put on the largest so the
   sum stays within 0.001 of 1 (`round_distribution`).
If no listed alternative is a code, the model did not answer the question: that is a junk
answer (retried, then a model error), not a uniform guess.

Method "logprobs_grouped" (more labels than the top-k window, k = top_logprobs, 20 for OpenAI):
a label outside the window would only ever get the "absent" bound, however likely it is. So the
labels are dealt into ceil(n / k) balanced groups that each fit the window; one call per group
(in parallel) gives P(label | group); the best label of every group then competes in a final
call (itself grouped again if there are still more than k groups), whose distribution stands in
for P(group). P(label) = P(group) * P(label | group) sums to 1 over all labels (`combine_groups`).
45 labels with k = 20 cost 4 calls: three groups of 15 and a final round of 3.

Method "sampling" (the provider returns no logprobs, e.g. LiteLLM's `ollama/` route): the same
prompt is answered 5 times at temperature 1 and the codes are counted with add-1/2 smoothing
(`from_counts`), so every label keeps a little mass and the most frequent answer wins. Coarse
(steps of about 0.15) but honest; `confidence_method` says so in every response.
"""

import math
import re
from collections.abc import Iterable

_STRIP = re.compile(r"[\s\"'`*()\[\]{}<>.,:;!?\-_]+")


class NoCodeInAnswer(ValueError):
    """The model's top alternatives hold none of the label codes."""


def canonical(token: str) -> str:
    return _STRIP.sub("", token).upper()


def code_probabilities(top: Iterable[tuple[str, float]], codes: list[str]) -> dict[str, float]:
    """Normalized probability per code from (token, logprob) alternatives."""
    alternatives = [(token, math.exp(logprob)) for token, logprob in top]
    if not alternatives:
        raise NoCodeInAnswer("no alternatives returned")
    wanted = set(codes)
    mass: dict[str, float] = {}
    for token, p in alternatives:
        code = canonical(token)
        if code in wanted:
            mass[code] = mass.get(code, 0.0) + p
    if not mass:
        raise NoCodeInAnswer(f"none of {codes} among {[t for t, _ in alternatives][:10]}")
    absent = [c for c in codes if c not in mass]
    if absent:
        smallest = min(p for _, p in alternatives)
        leftover = max(0.0, 1.0 - sum(p for _, p in alternatives))
        share = min(smallest, leftover / len(absent))
        for code in absent:
            mass[code] = share
    total = sum(mass.values())
    return {code: mass[code] / total for code in codes}


def from_counts(
    answers: Iterable[str], codes: list[str], smoothing: float = 0.5
) -> dict[str, float]:
    """Fallback for models without logprobs: answers of n samples, counted with add-k smoothing."""
    counts = dict.fromkeys(codes, 0)
    valid = 0
    for answer in answers:
        code = canonical(answer)
        if code in counts:
            counts[code] += 1
            valid += 1
    if valid == 0:
        raise NoCodeInAnswer("no sampled answer was a code")
    total = valid + smoothing * len(codes)
    return {code: (counts[code] + smoothing) / total for code in codes}


def combine_groups(
    within: list[dict[str, float]], group_probabilities: list[float]
) -> dict[str, float]:
    """Hierarchical scores for label sets larger than one call's window.

    Labels are split into groups that fit the window; each group is scored on its own, P(l | g);
    the best label of every group then competes in a final call, whose distribution stands for
    P(g). P(l) = P(g) * P(l | g) sums to 1 over all labels.
    """
    scores: dict[str, float] = {}
    for distribution, p_group in zip(within, group_probabilities, strict=True):
        for label, p in distribution.items():
            scores[label] = p_group * p
    return scores


def round_distribution(scores: dict[str, float], digits: int = 4) -> dict[str, float]:
    """Rounded to `digits`, summing to 1 within 0.001 (the remainder goes to the largest)."""
    total = sum(scores.values())
    normalized = {k: v / total for k, v in scores.items()} if total > 0 else scores
    rounded = {k: round(v, digits) for k, v in normalized.items()}
    top = max(rounded, key=lambda k: rounded[k])
    rounded[top] = round(rounded[top] + 1.0 - sum(rounded.values()), digits)
    return rounded
