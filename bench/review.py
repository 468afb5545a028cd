"""How well `local`'s confidence picks the documents a person should review, on docs-v1.

For the 5-way labels and the ten LABEL3 genres: 5-fold stratified cross-validation, `local`
trained on four folds (its own temperature calibration included) and classifying the fifth, so
every document gets one out-of-sample confidence. On those: AUROC of confidence (right vs
wrong), errors caught when the least confident 10% / 20% are reviewed, and coverage at 0.98
accuracy two ways:

- curve: the share of documents auto-accepted at the lowest threshold whose accepted results
  reach 0.98 on this very data (a property of the ranking; the threshold is chosen in-sample);
- derived: what a review policy `target_accuracy: 0.98` would do on documents it has not seen:
  for each fold the threshold is derived (as the server does from an evaluation) on the other
  folds' out-of-sample results, then applied to this fold; reported are the coverage and the
  accuracy actually reached on the held-out documents.

Zero-shot (no examples) is given beside each for comparison.

    python -m bench.review          # writes bench/results/review.json
"""

import backend.offline  # noqa: F401, I001

import csv
import json
import time
import warnings

import numpy as np
from sklearn.model_selection import StratifiedKFold

from backend.backends.base import LabelSpec
from backend.backends.local import document_embedding, label_embeddings
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.trained import fit
from backend.backends.local.zero_shot import catch_all_label, zero_shot_logits
from backend.evaluation.metrics import review_metrics, threshold_for_accuracy
from bench.dataset import DATASET, load
from bench.harness import write_result
from bench.local_model import FIVE_WAY

TARGET = 0.98
FOLDS = 5
LABEL3 = [
    LabelSpec("invoice", "A bill from a seller asking the customer to pay for goods or services"),
    LabelSpec("receipt", "A receipt or till slip confirming a purchase that has already been paid"),
    LabelSpec(
        "pay_stub", "An employee's pay slip showing gross pay, deductions and net pay for a period"
    ),
    LabelSpec(
        "tax_form",
        "A US tax form or return: IRS Form 1040 and its schedules, W-9, W-2, W-4, 1099, 1098, "
        "or a state income tax return",
    ),
    LabelSpec("bank_document", "A bank account statement or a bank check"),
    LabelSpec(
        "contract",
        "A legal agreement between parties, such as a lease, a loan note or a license agreement",
    ),
    LabelSpec("resume", "A resume, CV or biographical sketch of a person"),
    LabelSpec("correspondence", "A letter, memo, e-mail or press release addressed to someone"),
    LabelSpec(
        "technical_document", "A research paper, technical standard, tutorial or product manual"
    ),
    LabelSpec("other", "Any other document"),
]


def label3_of() -> dict[str, str]:
    with (DATASET / "LABEL3.tsv").open() as handle:
        return {row["file"]: row["label3"] for row in csv.DictReader(handle, delimiter="\t")}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def derived_policy(confidences, correct, folds) -> dict:
    """Threshold for TARGET derived on the other folds, applied to each held-out fold."""
    conf, ok = np.asarray(confidences), np.asarray(correct)
    accepted = []
    for k in range(FOLDS):
        held, rest = folds == k, folds != k
        found = threshold_for_accuracy(conf[rest], ok[rest], TARGET)
        threshold = found["threshold"] if found else 1.01
        accepted += list(zip(conf[held] >= threshold, ok[held], strict=True))
    taken = [right for keep, right in accepted if keep]
    return {
        "coverage": round(len(taken) / len(accepted), 4),
        "accuracy_of_accepted": round(sum(taken) / len(taken), 4) if taken else None,
    }


def summary(confidences, correct, folds) -> dict:
    review = review_metrics(confidences, correct)
    at = review["at_accuracy"][f"{TARGET:g}"]
    return {
        "accuracy": round(float(np.mean(correct)), 4),
        "auroc": review["auroc"],
        "errors": int(len(correct) - sum(correct)),
        "errors_caught_10pct": review["errors_caught"]["10"],
        "errors_caught_20pct": review["errors_caught"]["20"],
        "coverage_at_098_curve": at["coverage"] if at else 0.0,
        "threshold_at_098_curve": at["threshold"] if at else None,
        "coverage_at_098_derived": derived_policy(confidences, correct, folds),
    }


def evaluate(items, labels: list[LabelSpec], truth: list[str]) -> dict:
    names = [s.label for s in labels]
    texts = [i.text for i in items]
    vectors = label_embeddings(labels)
    zero = np.vstack([zero_shot_logits(labels, t, document_embedding(t), vectors) for t in texts])
    y = np.array([names.index(t) for t in truth])
    trained = np.zeros((len(items), len(names)))
    folds = np.zeros(len(items), dtype=int)
    with warnings.catch_warnings():  # LABEL3 has genres of one document: folds warn about them
        warnings.simplefilter("ignore", UserWarning)
        split = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(texts, y))
    for k, (train, test) in enumerate(split):
        model = fit(
            names,
            [texts[i] for i in train],
            [truth[i] for i in train],
            zero[train],
            catch_all=catch_all_label(labels),
        )
        trained[test] = model.predict_proba([texts[i] for i in test], zero[test])
        folds[test] = k
    zero_proba = _softmax(zero)
    out = {"documents": len(items), "labels": len(names)}
    for name, proba in (("trained", trained), ("zero_shot", zero_proba)):
        confidences = proba.max(axis=1).tolist()
        correct = (proba.argmax(axis=1) == y).tolist()
        out[name] = summary(confidences, correct, folds)
    return out


def main() -> None:
    started = time.perf_counter()
    items = [i for i in load() if i.text.strip()]
    EMBEDDER.embed(["warm"])
    genres = label3_of()
    root = str(DATASET) + "/"
    result = {
        "protocol": f"{FOLDS}-fold stratified CV (seed 0): local trained on 4 folds, tested on "
        "the fifth; zero-shot beside it. Coverage at 0.98: curve (in-sample threshold) and "
        "derived (threshold from the other folds, applied to the held-out one).",
        "five_way": evaluate(items, FIVE_WAY, [i.label for i in items]),
        "label3": evaluate(items, LABEL3, [genres[str(i.path).removeprefix(root)] for i in items]),
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python -m bench.review",
    }
    path = write_result("review", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
