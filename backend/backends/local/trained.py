"""A classifier trained on a classifier's labelled examples, on top of the zero-shot model.

Features: TF-IDF of words (1-2 grams) and of character 3-5 grams on the normalized text, which
catch form titles, layouts and words in any language, plus the zero-shot logits (what the
label descriptions say). Model: logistic regression; its logits are added to the zero-shot
logits, so that with few examples the descriptions still decide what the examples do not
cover, notably the open-set catch-all ("other": 15 examples cannot cover everything else).
On docs-v1 the MiniLM embedding as a feature lowered accuracy (it enters through the zero-shot
logits instead). Probabilities are calibrated with one temperature fitted by cross-validation on
the examples themselves (minimizing log-loss of held-out predictions), and the same
cross-validation gives the accuracy estimate shown on the classifier.
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
from sklearn.model_selection import StratifiedKFold

from backend.backends.local.text import normalize

TEXT_CHARS = 6000
C = 1.0  # C=0.3 scored the same on docs-v1 but could not learn labels from 3 examples each
ZERO_SHOT_WEIGHT = 1.0  # of the zero-shot logits added to the model's


def prepare(text: str) -> str:
    return normalize(text[:TEXT_CHARS])


@dataclass
class TrainedModel:
    labels: list[str]
    word: TfidfVectorizer
    char: TfidfVectorizer
    model: LogisticRegression
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

    def logits(self, texts: list[str], zero_shot: np.ndarray) -> np.ndarray:
        """Uncalibrated logits over `labels`; zero_shot holds the zero-shot logits, one row each."""
        learned = self.model.decision_function(self.features(texts, zero_shot))
        if learned.ndim == 1:  # binary: sklearn returns one column
            learned = np.stack([-learned, learned], axis=1) / 2
        out = ZERO_SHOT_WEIGHT * np.asarray(zero_shot, dtype=float).copy()
        taught = np.zeros(len(self.labels), dtype=bool)
        for column, label in enumerate(self.model.classes_):
            out[:, self.labels.index(label)] += learned[:, column]
            taught[self.labels.index(label)] = True
        # Labels without examples keep their zero-shot logit, shifted like the taught ones.
        if taught.any() and not taught.all():
            out[:, ~taught] += learned.mean(axis=1, keepdims=True)
        return out

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


def _fit_core(
    labels: list[str], texts: list[str], y: list[str], zero_shot: np.ndarray
) -> TrainedModel:
    prepared = [prepare(t) for t in texts]
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=20000)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=40000
    )
    features = hstack(
        [word.fit_transform(prepared), char.fit_transform(prepared), csr_matrix(zero_shot)]
    ).tocsr()
    model = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    model.fit(features, y)
    return TrainedModel(labels=labels, word=word, char=char, model=model)


def cross_validate(
    labels: list[str], texts: list[str], y: list[str], zero_shot: np.ndarray, folds: int = 5
) -> tuple[np.ndarray, np.ndarray] | None:
    """Held-out logits and their true class indices, or None when there are too few examples."""
    counts = {label: y.count(label) for label in set(y)}
    if len(counts) < 2 or min(counts.values()) < 2:
        return None
    splitter = StratifiedKFold(
        n_splits=min(folds, min(counts.values())), shuffle=True, random_state=0
    )
    all_logits, all_truth = [], []
    for train, test in splitter.split(texts, y):
        fold = _fit_core(labels, [texts[i] for i in train], [y[i] for i in train], zero_shot[train])
        all_logits.append(fold.logits([texts[i] for i in test], zero_shot[test]))
        all_truth.extend(labels.index(y[i]) for i in test)
    return np.vstack(all_logits), np.array(all_truth)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    def nll(t: float) -> float:
        p = _softmax(logits / t)
        return float(-np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, None)).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


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


def fit(labels: list[str], texts: list[str], y: list[str], zero_shot: np.ndarray) -> TrainedModel:
    """Train on all examples (zero_shot: their zero-shot logits over `labels`); calibrate and
    estimate accuracy by cross-validation."""
    model = _fit_core(labels, texts, y, zero_shot)
    model.shrinkage = shrinkage_for(len(texts), len(labels))
    held_out = cross_validate(labels, texts, y, zero_shot)
    if held_out is not None:
        logits, truth = held_out
        model.temperature = fit_temperature(logits, truth)
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
            "n_examples": len(texts),
            "temperature": model.temperature,
            "shrinkage": model.shrinkage,
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
            "per_label": {},
        }
    return model
