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
        """Rows of calibrated probabilities over `labels`."""
        return _softmax(self.logits(texts, zero_shot) / self.temperature)

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer)
        return buffer.getvalue()

    @staticmethod
    def loads(data: bytes) -> "TrainedModel":
        # Only ever loads what DocSift itself pickled into its own storage directory.
        return pickle.loads(data)  # noqa: S301


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
    held_out = cross_validate(labels, texts, y, zero_shot)
    if held_out is not None:
        logits, truth = held_out
        model.temperature = fit_temperature(logits, truth)
        calibrated = _softmax(logits / model.temperature)
        predicted = calibrated.argmax(axis=1)
        model.metrics = {
            "accuracy": float((predicted == truth).mean()),
            "ece": expected_calibration_error(calibrated, truth),
            "ece_uncalibrated": expected_calibration_error(_softmax(logits), truth),
            "n_examples": len(texts),
            "temperature": model.temperature,
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
        model.metrics = {"accuracy": None, "ece": None, "n_examples": len(texts), "per_label": {}}
    return model
