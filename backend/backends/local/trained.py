"""A classifier trained on a classifier's labelled examples, on top of the zero-shot model.

The trained model's logits are the zero-shot logits (what the label descriptions say) plus a
*correction* learned from the examples, never a replacement:
- logistic regression on TF-IDF of words (1-2 grams) and character 3-5 grams of the normalized
  text (form titles, layouts, words in any language) plus the zero-shot logits;
- a nearest-example term: each label's highest TF-IDF similarity to one of its examples, so a
  reviewed document teaches its near-duplicates (the same form, the same payroll template).
Each label's correction is weighted by how many examples back it, `weight * n / (n + kappa)`
(shrinkage toward the zero-shot prior); a label without examples takes the catch-all's
correction (to the learned model its documents are "none of the taught kinds"), so the zero-shot
evidence decides between it and the catch-all. `weight` (0 is plain zero-shot), `kappa` and the
nearest-example strength are chosen per classifier by cross-validation on its own examples;
with too few to cross-validate, defaults apply. Probabilities are calibrated with one
temperature fitted on the same held-out predictions, which also give the accuracy estimate
shown on the classifier. On docs-v1 the MiniLM embedding as a feature lowered accuracy (it
enters through the zero-shot logits instead). Numbers: BENCHMARKS.md, issues 23 and 24.
"""

import io
import math
import pickle
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from backend.backends.local.text import normalize

TEXT_CHARS = 6000
C = 1.0  # C=0.3 scored the same on docs-v1 but could not learn labels from 3 examples each
# Candidates for the learned correction's weight and its shrinkage (pseudo-examples per label),
# chosen per classifier on its examples' cross-validation; weight 0 is the zero-shot model.
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5)
KAPPAS = (0.0, 2.0, 8.0)
# Strength of the nearest-example term (similarity to the closest example of each label, 0-1):
# a reviewed document teaches its near-duplicates (the same form, the same payroll template)
# even when the regularized regression cannot yet outweigh the descriptions.
NEAREST = (0.0, 4.0, 8.0)
DEFAULT_NEAREST = 4.0
# Used when the examples are too few to cross-validate (chosen on folds of docs-v1).
DEFAULT_WEIGHT = 1.0
DEFAULT_KAPPA = 2.0


def prepare(text: str) -> str:
    return normalize(text[:TEXT_CHARS])


@dataclass
class TrainedModel:
    labels: list[str]
    word: TfidfVectorizer
    char: TfidfVectorizer
    model: "KernelLogistic"
    # Examples per label the model was fitted on, and the chosen correction weight and kappa.
    counts: dict[str, int] = field(default_factory=dict)
    # The open-set label ("other"), if any: labels without examples are, to the learned model,
    # part of what is not any taught kind, so they take the catch-all's correction.
    catch_all: str | None = None
    weight: float = DEFAULT_WEIGHT
    kappa: float = DEFAULT_KAPPA
    nearest: float = DEFAULT_NEAREST
    # The examples' TF-IDF rows (word and character halves, each of norm 1) and labels.
    example_rows: csr_matrix | None = None
    example_labels: list[str] = field(default_factory=list)
    temperature: float = 1.0
    # Share of probability spread evenly over the labels (shrinkage toward uniform): a model
    # trained on a few dozen examples has not earned certainty, and a probability of exactly
    # 1.0 would make its wrong answers unrankable (coverage tables, reliability plots).
    shrinkage: float = 0.0
    metrics: dict = field(default_factory=dict)

    def features(self, texts: list[str], zero_shot: np.ndarray):  # noqa: ANN201
        prepared = [prepare(t) for t in texts]
        return hstack(
            [self.word.transform(prepared), self.char.transform(prepared), csr_matrix(zero_shot)]
        ).tocsr()

    def parts(self, texts: list[str], zero_shot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(learned logits, nearest-example similarities) over `labels`, each centred on the
        taught labels' mean. A label without examples gets the catch-all's (when that is taught:
        the model learned "none of the taught kinds", which is what such a label's documents
        look like to it), else 0; the zero-shot logits then decide between it and the
        catch-all."""
        features = self.features(texts, zero_shot)
        learned = self.model.decision_function(features)
        if learned.ndim == 1:  # binary: sklearn returns one column
            learned = np.stack([-learned, learned], axis=1) / 2
        tfidf = features[:, : features.shape[1] - len(self.labels)]
        similarity = np.asarray((tfidf @ self.example_rows.T).todense()) / 2
        nearest = np.column_stack(
            [
                similarity[:, [i for i, y in enumerate(self.example_labels) if y == label]].max(
                    axis=1
                )
                for label in self.model.classes_
            ]
        )
        return self._spread(learned), self._spread(nearest)

    def _spread(self, taught: np.ndarray) -> np.ndarray:
        taught = taught - taught.mean(axis=1, keepdims=True)
        out = np.zeros((len(taught), len(self.labels)))
        for column, label in enumerate(self.model.classes_):
            out[:, self.labels.index(label)] = taught[:, column]
        if self.catch_all in self.model.classes_:
            untaught = [i for i, label in enumerate(self.labels) if label not in self.counts]
            out[:, untaught] = out[:, [self.labels.index(self.catch_all)]]
        return out

    def correction(self, texts: list[str], zero_shot: np.ndarray) -> np.ndarray:
        learned, nearest = self.parts(texts, zero_shot)
        return learned + self.nearest * nearest

    def class_weights(self) -> np.ndarray:
        return correction_weights(self.labels, self.counts, self.weight, self.kappa, self.catch_all)

    def logits(self, texts: list[str], zero_shot: np.ndarray) -> np.ndarray:
        """Uncalibrated logits over `labels`; zero_shot holds the zero-shot logits, one row each."""
        zero = np.asarray(zero_shot, dtype=float)
        if not self.class_weights().any():
            return zero.copy()
        return zero + self.class_weights()[None, :] * self.correction(texts, zero)

    def predict_proba(self, texts: list[str], zero_shot: np.ndarray) -> np.ndarray:
        """Rows of calibrated probabilities over `labels`, never exactly 0 or 1."""
        return shrink(_softmax(self.logits(texts, zero_shot) / self.temperature), self.shrinkage)

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer)
        return buffer.getvalue()

    @staticmethod
    def loads(data: bytes) -> "TrainedModel":
        # Only ever loads what DocSift itself pickled into its own storage directory.
        return pickle.loads(data)  # noqa: S301


def correction_weights(
    labels: list[str],
    counts: dict[str, int],
    weight: float,
    kappa: float,
    catch_all: str | None = None,
) -> np.ndarray:
    """Per label: weight * n / (n + kappa), n its examples; a label without examples takes the
    catch-all's n (it takes its correction too), else 0."""
    fallback = counts.get(catch_all, 0) if catch_all else 0
    n = np.array([counts.get(label, fallback) for label in labels], dtype=float)
    return weight * n / np.maximum(n + kappa, 1e-9)


def shrinkage_for(n_examples: int, n_labels: int) -> float:
    """Like add-one smoothing: the weight of one pseudo-example per label against the examples."""
    return n_labels / (n_examples + n_labels)


def shrink(probabilities: np.ndarray, shrinkage: float) -> np.ndarray:
    k = probabilities.shape[-1]
    return (1 - shrinkage) * probabilities + shrinkage / k


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy measured on n held-out examples."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# Below this many held-out predictions an accuracy estimate is flagged `too_few_examples`.
MIN_EXAMPLES_FOR_ESTIMATE = 30


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class KernelLogistic:
    """Multinomial logistic regression with an L2 penalty and balanced class weights, fitted in
    the span of the training rows. With a few dozen examples and 60,000 features the weights
    are X.T @ A: writing the Gram matrix X @ X.T = U S U.T, the rows are exactly represented by
    U sqrt(S) (n x n), on which the same regularized problem is solved in milliseconds (sklearn
    on the 60,000 columns took 20-60 s for 74 examples on this machine)."""

    def __init__(self, c: float = C) -> None:
        self.c = c

    def fit(self, features: csr_matrix, y: list[str]) -> "KernelLogistic":
        gram = (features @ features.T).toarray()
        values, vectors = np.linalg.eigh(gram)
        keep = values > values.max() * 1e-10
        values, vectors = values[keep], vectors[:, keep]
        model = LogisticRegression(C=self.c, max_iter=5000, class_weight="balanced")
        model.fit(vectors * np.sqrt(values), y)
        self.classes_ = model.classes_
        coef = model.coef_.T  # r x k (one column for two classes)
        self._rows = features
        self._coef = vectors @ (coef / np.sqrt(values)[:, None])  # n x k: weights = X.T @ this
        self.intercept_ = model.intercept_
        return self

    def decision_function(self, features: csr_matrix) -> np.ndarray:
        out = np.asarray(features @ self._rows.T @ self._coef) + self.intercept_
        return out[:, 0] if out.shape[1] == 1 else out


def _counts(y: list[str]) -> dict[str, int]:
    return {label: y.count(label) for label in dict.fromkeys(y)}


def _fit_core(
    labels: list[str],
    texts: list[str],
    y: list[str],
    zero_shot: np.ndarray,
    catch_all: str | None = None,
) -> TrainedModel:
    prepared = [prepare(t) for t in texts]
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=20000)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=40000
    )
    features = hstack(
        [word.fit_transform(prepared), char.fit_transform(prepared), csr_matrix(zero_shot)]
    ).tocsr()
    model = KernelLogistic(C).fit(features, y)
    return TrainedModel(
        labels=labels,
        word=word,
        char=char,
        model=model,
        counts=_counts(y),
        catch_all=catch_all,
        example_rows=features[:, : features.shape[1] - len(labels)],
        example_labels=list(y),
    )


def folds_of(y: list[str], folds: int = 5, seed: int = 0) -> list[np.ndarray] | None:
    """Test indices of up to `folds` folds, each label's examples dealt round the folds in a
    random order (a label with one example is in one fold's test set and absent from its
    training: what a rare label is); None when fewer than two folds can be made."""
    n_folds = min(folds, max(y.count(label) for label in set(y)))
    if n_folds < 2 or len(set(y)) < 2:
        return None
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(y), dtype=int)
    position = 0
    for label in sorted(set(y)):
        members = [i for i, v in enumerate(y) if v == label]
        for i in rng.permutation(members):
            assignment[i] = position % n_folds
            position += 1
    return [np.flatnonzero(assignment == f) for f in range(n_folds)]


@dataclass
class HeldOut:
    """Cross-validated predictions: zero-shot logits, learned corrections, the examples per
    label of the fold that predicted each row, and the true class indices."""

    zero: np.ndarray
    learned: np.ndarray
    nearest: np.ndarray
    counts: list[dict[str, int]]
    truth: np.ndarray
    catch_all: str | None = None

    def logits(self, labels: list[str], weight: float, kappa: float, nearest: float) -> np.ndarray:
        weights = np.vstack(
            [correction_weights(labels, c, weight, kappa, self.catch_all) for c in self.counts]
        )
        return self.zero + weights * (self.learned + nearest * self.nearest)


def cross_validate(
    labels: list[str],
    texts: list[str],
    y: list[str],
    zero_shot: np.ndarray,
    folds: int = 5,
    catch_all: str | None = None,
) -> HeldOut | None:
    """Held-out predictions of models trained on the other folds, or None when there are too
    few examples (a training fold needs two labels)."""
    splits = folds_of(y, folds)
    if splits is None:
        return None
    zero, learned, nearest, counts, truth = [], [], [], [], []
    for test in splits:
        train = np.setdiff1d(np.arange(len(y)), test)
        if len({y[i] for i in train}) < 2 or len(test) == 0:
            continue
        fold = _fit_core(
            labels, [texts[i] for i in train], [y[i] for i in train], zero_shot[train], catch_all
        )
        zero.append(zero_shot[test])
        parts = fold.parts([texts[i] for i in test], zero_shot[test])
        learned.append(parts[0])
        nearest.append(parts[1])
        counts += [fold.counts] * len(test)
        truth += [labels.index(y[i]) for i in test]
    if not truth:
        return None
    return HeldOut(
        np.vstack(zero),
        np.vstack(learned),
        np.vstack(nearest),
        counts,
        np.array(truth),
        catch_all,
    )


def example_losses(logits: np.ndarray, truth: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    p = _softmax(logits / temperature)
    return -np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, None))


def log_loss(logits: np.ndarray, truth: np.ndarray, temperature: float = 1.0) -> float:
    return float(example_losses(logits, truth, temperature).mean())


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    return float(
        minimize_scalar(
            lambda t: log_loss(logits, truth, t), bounds=(0.05, 20.0), method="bounded"
        ).x
    )


def choose_correction(
    labels: list[str],
    held_out: HeldOut,
    weights: tuple[float, ...] = WEIGHTS,
    kappas: tuple[float, ...] = KAPPAS,
    nearest: tuple[float, ...] = NEAREST,
) -> tuple[float, float, float, float]:
    """(weight, kappa, nearest, temperature) with the lowest held-out log-loss at its own
    temperature; the zero-shot model (weight 0) unless the best correction's gain over it
    exceeds one standard error of the per-example gains: the best of 30 candidates on a few
    dozen held-out examples flatters itself, and the descriptions are the safer prior."""
    candidates = []
    for weight in weights:
        for kappa in kappas if weight else (0.0,):
            for strength in nearest if weight else (0.0,):
                logits = held_out.logits(labels, weight, kappa, strength)
                temperature = fit_temperature(logits, held_out.truth)
                losses = example_losses(logits, held_out.truth, temperature)
                candidates.append(
                    (float(losses.mean()), weight, kappa, strength, temperature, losses)
                )
    best = min(candidates, key=lambda c: c[0])
    zero = next((c for c in candidates if c[1] == 0.0), None)
    if zero is not None and best is not zero:
        gains = zero[5] - best[5]
        if len(gains) < 2 or gains.mean() <= gains.std(ddof=1) / np.sqrt(len(gains)):
            best = zero
    return best[1], best[2], best[3], best[4]


def expected_calibration_error(
    probabilities: np.ndarray, truth: np.ndarray, bins: int = 10
) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    ece = 0.0
    for lower in np.linspace(0, 1, bins, endpoint=False):
        mask = (confidence > lower) & (confidence <= lower + 1 / bins)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def fit(
    labels: list[str],
    texts: list[str],
    y: list[str],
    zero_shot: np.ndarray,
    weights: tuple[float, ...] = WEIGHTS,
    kappas: tuple[float, ...] = KAPPAS,
    catch_all: str | None = None,
    nearest: tuple[float, ...] = NEAREST,
) -> TrainedModel:
    """Train on all examples (zero_shot: their zero-shot logits over `labels`); choose the
    correction's weight and kappa, calibrate and estimate accuracy by cross-validation."""
    model = _fit_core(labels, texts, y, zero_shot, catch_all)
    model.shrinkage = shrinkage_for(len(texts), len(labels))
    held_out = cross_validate(labels, texts, y, zero_shot, catch_all=catch_all)
    if held_out is None:  # too few examples to choose on: the defaults (or the one candidate)
        single = len(weights) * len(kappas) * len(nearest) == 1
        model.weight = weights[0] if single else DEFAULT_WEIGHT
        model.kappa = kappas[0] if single else DEFAULT_KAPPA
        model.nearest = nearest[0] if single else DEFAULT_NEAREST
    else:
        model.weight, model.kappa, model.nearest, model.temperature = choose_correction(
            labels, held_out, weights, kappas, nearest
        )
    if held_out is not None:
        logits = held_out.logits(labels, model.weight, model.kappa, model.nearest)
        truth = held_out.truth
        calibrated = shrink(_softmax(logits / model.temperature), model.shrinkage)
        predicted = calibrated.argmax(axis=1)
        correct = int((predicted == truth).sum())
        low, high = wilson_interval(correct, len(truth))
        model.metrics = {
            "accuracy": correct / len(truth),
            "accuracy_interval": [round(low, 4), round(high, 4)],
            "too_few_examples": len(truth) < MIN_EXAMPLES_FOR_ESTIMATE,
            "ece": expected_calibration_error(calibrated, truth),
            "ece_uncalibrated": expected_calibration_error(_softmax(logits), truth),
            "zero_shot_accuracy": float((held_out.zero.argmax(axis=1) == truth).mean()),
            "n_examples": len(texts),
            "temperature": model.temperature,
            "shrinkage": model.shrinkage,
            "correction_weight": model.weight,
            "kappa": model.kappa,
            "nearest": model.nearest,
            "per_label": {
                label: {
                    "support": int((truth == i).sum()),
                    "recall": float((predicted[truth == i] == i).mean())
                    if (truth == i).any()
                    else None,
                }
                for i, label in enumerate(labels)
            },
        }
    else:
        model.metrics = {
            "accuracy": None,
            "accuracy_interval": None,
            "too_few_examples": True,
            "ece": None,
            "n_examples": len(texts),
            "correction_weight": model.weight,
            "kappa": model.kappa,
            "nearest": model.nearest,
            "per_label": {},
        }
    return model
