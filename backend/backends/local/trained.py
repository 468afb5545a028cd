"""A classifier trained on a classifier's labelled examples.

Features: TF-IDF of words (1-2 grams) and of character 3-5 grams on the normalized text, which
catch form titles and layouts in any language, plus the MiniLM embedding. Model: logistic
regression. Its probabilities are calibrated with one temperature fitted by cross-validation on
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
EMBEDDING_WEIGHT = 1.0


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

    def features(self, texts: list[str], embeddings: np.ndarray):  # noqa: ANN201
        prepared = [prepare(t) for t in texts]
        return hstack(
            [
                self.word.transform(prepared),
                self.char.transform(prepared),
                csr_matrix(embeddings * EMBEDDING_WEIGHT),
            ]
        ).tocsr()

    def predict_proba(self, texts: list[str], embeddings: np.ndarray) -> np.ndarray:
        """Rows of probabilities over `labels` (a label without examples gets 0 before smoothing)."""
        logits = self.model.decision_function(self.features(texts, embeddings))
        if logits.ndim == 1:  # binary: sklearn returns one column
            logits = np.stack([-logits, logits], axis=1) / 2
        known = _softmax(logits / self.temperature)
        out = np.zeros((len(texts), len(self.labels)))
        for column, label in enumerate(self.model.classes_):
            out[:, self.labels.index(label)] = known[:, column]
        return out

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer)
        return buffer.getvalue()

    @staticmethod
    def loads(data: bytes) -> "TrainedModel":
        # Only ever loads what DocSift itself pickled into its own database.
        return pickle.loads(data)  # noqa: S301


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_core(
    labels: list[str], texts: list[str], y: list[str], embeddings: np.ndarray
) -> TrainedModel:
    prepared = [prepare(t) for t in texts]
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=20000)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, max_features=40000
    )
    features = hstack(
        [
            word.fit_transform(prepared),
            char.fit_transform(prepared),
            csr_matrix(embeddings * EMBEDDING_WEIGHT),
        ]
    ).tocsr()
    model = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")
    model.fit(features, y)
    return TrainedModel(labels=labels, word=word, char=char, model=model)


def cross_validate(
    labels: list[str], texts: list[str], y: list[str], embeddings: np.ndarray, folds: int = 5
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
        fold = _fit_core(
            labels, [texts[i] for i in train], [y[i] for i in train], embeddings[train]
        )
        if len(set(y[i] for i in train)) < 2:
            continue
        logits = fold.model.decision_function(
            fold.features([texts[i] for i in test], embeddings[test])
        )
        if logits.ndim == 1:
            logits = np.stack([-logits, logits], axis=1) / 2
        full = np.full((len(test), len(labels)), -1e3)
        for column, label in enumerate(fold.model.classes_):
            full[:, labels.index(label)] = logits[:, column]
        all_logits.append(full)
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


def fit(labels: list[str], texts: list[str], y: list[str], embeddings: np.ndarray) -> TrainedModel:
    """Train on all examples; calibrate and estimate accuracy by cross-validation."""
    model = _fit_core(labels, texts, y, embeddings)
    held_out = cross_validate(labels, texts, y, embeddings)
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
