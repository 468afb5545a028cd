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

Method "verbalized" (the provider returns no logprobs, e.g. LiteLLM's `ollama/` route, Anthropic,
Gemini on Vertex): the model writes a JSON object code -> probability (`from_verbalized`).
Multi-label reads a JSON yes/no per code through each value token's logprobs
(`multi_label_probabilities`). Debiasing: `average` (permutations) and `divide_prior`
(contextual). Formulas in the README, "Confidence".

Method "sampling" (last resort: a model that writes no readable JSON either): the same
prompt is answered 5 times at temperature 1 and the codes are counted with add-1/2 smoothing
(`from_counts`), so every label keeps a little mass and the most frequent answer wins. Coarse
(steps of about 0.15) but honest; `confidence_method` says so in every response.
"""

import json
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


# --- Verbalized distribution -------------------------------------------------------------------

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_YES = {"YES", "Y", "TRUE"}
_NO = {"NO", "N", "FALSE"}


def _json_object(text: str) -> dict[str, object]:
    """The one JSON object in an answer (code fences and text around it tolerated)."""
    found = _JSON_OBJECT.search(text or "")
    if not found:
        raise NoCodeInAnswer(f"no JSON object in the answer {text[:80]!r}")
    try:
        value = json.loads(found.group(0))
    except json.JSONDecodeError as error:
        raise NoCodeInAnswer(f"answer is not JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise NoCodeInAnswer("answer is not a JSON object")
    return value


def _numbers_by_code(text: str, codes: list[str]) -> dict[str, float]:
    """Code -> number from a JSON answer: every key a code, every value a finite number >= 0."""
    values: dict[str, float] = {}
    wanted = set(codes)
    for key, value in _json_object(text).items():
        code = canonical(str(key))
        if code not in wanted:
            raise NoCodeInAnswer(f"key {key!r} is not one of the codes {codes}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NoCodeInAnswer(f"value for {key!r} is not a number")
        if not math.isfinite(value) or value < 0:
            raise NoCodeInAnswer(f"value for {key!r} is not a probability")
        values[code] = values.get(code, 0.0) + float(value)
    if not values:
        raise NoCodeInAnswer("the JSON object names no code")
    if max(values.values()) > 1.0:
        if max(values.values()) > 100.0:
            raise NoCodeInAnswer("values are neither probabilities nor percentages")
        values = {c: v / 100.0 for c, v in values.items()}  # percentages
    return values


def from_verbalized(text: str, codes: list[str]) -> dict[str, float]:
    """Method "verbalized": the model's JSON {code: probability}, normalized to sum to 1.

    p(code) = v(code) / sum(v); a code left out counts as 0. Percentages (any value above 1, none
    above 100) are read as such. Anything else (no object, a key that is not a code, a value that
    is not a number, all zeros) is a junk answer, retried by the caller."""
    values = _numbers_by_code(text, codes)
    total = sum(values.values())
    if total <= 0:
        raise NoCodeInAnswer("every probability is 0")
    return {code: values.get(code, 0.0) / total for code in codes}


def from_verbalized_independent(text: str, codes: list[str]) -> dict[str, float]:
    """Multi-label without logprobs: the model's JSON {code: probability}, each kept as given
    (independent, not summing to 1); a code left out is 0."""
    values = _numbers_by_code(text, codes)
    return {code: min(1.0, values.get(code, 0.0)) for code in codes}


# --- Multi-label from per-token logprobs -------------------------------------------------------


def _yes_share(alternatives: list[tuple[str, float]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) among a token's alternatives; None if neither is listed."""
    yes = sum(math.exp(lp) for t, lp in alternatives if canonical(t) in _YES)
    no = sum(math.exp(lp) for t, lp in alternatives if canonical(t) in _NO)
    if yes + no <= 0:
        return None
    return yes / (yes + no)


def multi_label_probabilities(
    tokens: list[tuple[str, list[tuple[str, float]]]], codes: list[str]
) -> dict[str, float]:
    """Method "logprobs" with multi_label: the model answers one JSON object {code: "yes"|"no"}
    and P(label) is read from the logprobs of the token where that code's value starts:
    P(yes) / (P(yes) + P(no)) over its top alternatives (" yes", "Yes", "\"yes" all count).

    The answer's text is rebuilt from its tokens, each code's value located in it, and mapped
    back to the token holding its first letter."""
    text = ""
    starts: list[int] = []
    for token, _ in tokens:
        starts.append(len(text))
        text += token
    found: dict[str, float] = {}
    for match in re.finditer(r'"\s*([A-Za-z0-9])\s*"\s*:\s*"?\s*([A-Za-z]+)', text):
        code = match.group(1).upper()
        if code not in codes or code in found:
            continue
        at = match.start(2)
        index = max(i for i, start in enumerate(starts) if start <= at)
        share = _yes_share(tokens[index][1])
        if share is None:
            raise NoCodeInAnswer(f"no yes/no alternatives for code {code}")
        found[code] = share
    missing = [c for c in codes if c not in found]
    if missing:
        raise NoCodeInAnswer(f"the answer gives no yes/no for {missing}")
    return found


# --- Debiasing ---------------------------------------------------------------------------------


def average(distributions: list[dict[str, float]]) -> dict[str, float]:
    """Debias "permutations": the mean of the label scores over the label orders asked."""
    labels = list(distributions[0])
    return {label: sum(d[label] for d in distributions) / len(distributions) for label in labels}


PRIOR_FLOOR = 1e-4  # a content-free prior of 0 would divide by zero; this caps the correction


def divide_prior(scores: dict[str, float], prior: dict[str, float]) -> dict[str, float]:
    """Debias "contextual" (Zhao et al. 2021, W = diag(p_cf)^-1, b = 0):
    q(l) = (p(l) / p_cf(l)) / sum_k (p(k) / p_cf(k))."""
    raw = {label: p / max(prior[label], PRIOR_FLOOR) for label, p in scores.items()}
    total = sum(raw.values())
    if total <= 0:
        return dict(scores)
    return {label: v / total for label, v in raw.items()}


def divide_prior_binary(p: float, prior: float) -> float:
    """Debias "contextual" for one multi-label yes/no: the same division over {yes, no},
    q = (p / p0) / (p / p0 + (1 - p) / (1 - p0))."""
    p0 = min(max(prior, PRIOR_FLOOR), 1 - PRIOR_FLOOR)
    yes, no = p / p0, (1 - p) / (1 - p0)
    return yes / (yes + no)
