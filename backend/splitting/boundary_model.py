"""The boundary model: a logistic regression over the named gap features (features.py).

log-odds(new document starts here) = intercept + sum(weight[name] * feature[name])

Its weights live in boundary_weights.json beside this file (numbers only, no document text):
fitted by `python -m bench.split_accuracy --fit` on gaps of packets glued from docs-v1
documents. The benchmark itself refits the model per fold, on packets made only of the other
folds' documents, so its figures are out-of-sample.
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from backend.splitting.features import NAMES

WEIGHTS_FILE = Path(__file__).with_name("boundary_weights.json")
# The prior: log-odds a person gives each feature (the hand-set weights DocSift used before the
# model was fitted), and how far the data may move them (standard deviation, in log-odds).
PRIOR_INTERCEPT = -2.5  # content_change 0.5 (fairly unrelated text) is even odds alone
PRIOR_WEIGHTS = {
    "first_page": 3.5,
    "later_page": -3.5,
    "numbering_continues": -2.0,
    "follows_last_page": 1.5,
    "promised_more": -1.5,
    "continued": -2.0,
    "title": 1.5,
    "untitled": -0.5,
    "doc_number_new": 2.0,
    "doc_number_same": -1.5,
    "ids_new": 1.0,
    "ids_same": -1.0,
    "dates_new": 0.5,
    "dates_same": -0.5,
    "amounts_new": 0.0,
    "amounts_same": 0.0,
    "header_same": -1.0,
    "footer_same": -1.0,
    "content_change": 5.0,
    "no_text": 0.0,
    "size_change": 1.0,
}
# The prior's standard deviation when boundary_weights.json names none: the value chosen on
# folds by `python -m bench.split_accuracy --fit` is stored there as "prior_sd".
PRIOR_SD = 0.3


@dataclass(frozen=True)
class BoundaryModel:
    intercept: float
    weights: dict[str, float]
    # How much the pages' label log-probabilities count against the gap evidence in the
    # segmentation (boundaries.py); chosen with the weights, on the same packets.
    label_weight: float = 1.0
    prior_sd: float = PRIOR_SD  # the prior the weights were fitted with (for the record)

    def contributions(self, features: dict[str, float]) -> dict[str, float]:
        """Each feature's share of the log-odds (zero ones left out), and the prior."""
        out = {"prior": round(self.intercept, 3)}
        for name, value in features.items():
            if value and self.weights.get(name):
                out[name] = round(self.weights[name] * value, 3)
        return out

    def log_odds(self, features: dict[str, float]) -> float:
        return self.intercept + sum(self.weights.get(n, 0.0) * v for n, v in features.items())

    def to_json(self) -> dict:
        return {
            "label_weight": self.label_weight,
            "prior_sd": self.prior_sd,
            "intercept": round(self.intercept, 4),
            "weights": {n: round(self.weights[n], 4) for n in NAMES},
        }


def fit(
    rows: list[dict[str, float]], boundary: list[bool], prior_sd: float = PRIOR_SD
) -> BoundaryModel:
    """Weights fitted on gaps whose truth is known (True where a new document starts).

    Logistic regression with a Gaussian prior centred on PRIOR_WEIGHTS (maximum a posteriori):
    the data moves a weight as far as it has evidence for, and a feature that is rare in the
    training packets (a "continued" mark, an invoice number on both pages) keeps roughly the
    log-odds a person would give it instead of being shrunk to zero or taking an accidental
    sign from a few collinear cases."""
    x = np.array([[1.0] + [row[n] for n in NAMES] for row in rows])
    y = np.array(boundary, dtype=float)
    prior = np.array([PRIOR_INTERCEPT] + [PRIOR_WEIGHTS[n] for n in NAMES])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        nll = float(np.sum(np.logaddexp(0, z) - y * z))
        grad = x.T @ (expit(z) - y)
        return nll + float(np.sum((w - prior) ** 2)) / (2 * prior_sd**2), grad + (
            w - prior
        ) / prior_sd**2

    w = minimize(loss, prior, jac=True, method="L-BFGS-B").x
    weights = {n: float(v) for n, v in zip(NAMES, w[1:], strict=True)}
    return BoundaryModel(float(w[0]), weights, prior_sd=prior_sd)


@cache
def default_model() -> BoundaryModel:
    """The shipped weights."""
    data = json.loads(WEIGHTS_FILE.read_text())
    return BoundaryModel(
        float(data["intercept"]),
        {k: float(v) for k, v in data["weights"].items()},
        label_weight=float(data.get("label_weight", 1.0)),
        prior_sd=float(data.get("prior_sd", PRIOR_SD)),
    )
