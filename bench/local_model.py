"""The `local` model on docs-v1: zero-shot accuracy (5-way and label2), trained accuracy with at
most 15 examples per class (cross-validated), calibration, latency and cold start.

Trained protocol: for each of 10 seeds, draw at most 15 examples of each class (leaving at least
one of each class out) as the training set, train on them and test on ALL the other documents;
mean and standard deviation over the seeds. Zero-shot accuracy on the same test sets is given
beside it. A second protocol (5-fold, training folds cut to <= 15 per class, every document
tested once) is reported too.

    python -m bench.local_model            # writes bench/results/local_model.json

Texts come from DocSift's own extraction (OCR included), cached in /tmp/docsift-text-cache.
"""

import backend.offline  # noqa: F401, I001

import json
import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np

from backend.backends.base import ClassifyRequest, LabelledText, LabelSpec
from sklearn.model_selection import StratifiedKFold

from backend.backends.local import LocalBackend, document_embedding, label_embeddings
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.trained import expected_calibration_error, fit
from backend.backends.local.zero_shot import zero_shot_logits
from backend.config import Settings
from bench.dataset import load
from bench.harness import write_result

FIVE_WAY = [
    LabelSpec("w9", "IRS Form W-9, Request for Taxpayer Identification Number and Certification"),
    LabelSpec(
        "form_1040",
        "IRS Form 1040 U.S. Individual Income Tax Return, or one of its numbered schedules",
    ),
    LabelSpec(
        "invoice",
        "A bill from a seller asking a customer to pay for goods or services, including utility bills",
    ),
    LabelSpec(
        "payslip",
        "A pay stub or salary slip showing an employee's earnings and deductions for a pay period",
    ),
    LabelSpec("other", "Any document that is none of the above"),
]
LABEL2 = [
    LabelSpec("invoice", "A document requesting payment for goods or services rendered"),
    LabelSpec("purchase_order", "A buyer-issued document authorizing a purchase from a supplier"),
    LabelSpec("contract", "A legally binding agreement between two or more parties"),
    LabelSpec("other", "Any document that does not fit the above categories"),
]


def zero_shot(items, labels, attr) -> dict:
    backend = LocalBackend(Settings(_env_file=None))
    truth, predicted, probabilities = [], [], []
    for item in items:
        result = backend._classify(
            ClassifyRequest(model="local", labels=labels, pages=item.pages or [""])
        )
        truth.append(getattr(item, attr))
        predicted.append(result.label)
        probabilities.append([result.scores[s.label] for s in labels])
    names = [s.label for s in labels]
    truth_idx = np.array([names.index(t) for t in truth])
    accuracy = float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
    confusion = {t: {p: 0 for p in names} for t in names}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    return {
        "accuracy": round(accuracy, 4),
        "n": len(items),
        "ece": round(expected_calibration_error(np.array(probabilities), truth_idx), 4),
        "confusion": confusion,
    }


def _evaluate(items, names, texts, zero, train_idx, test_idx) -> tuple[float, float, float, float]:
    """Accuracy and ECE of a model trained on train_idx, and the zero-shot's on test_idx."""
    model = fit(
        names,
        [texts[i] for i in train_idx],
        [items[i].label for i in train_idx],
        zero[train_idx],
    )
    proba = model.predict_proba([texts[i] for i in test_idx], zero[test_idx])
    truth = np.array([names.index(items[i].label) for i in test_idx])
    return (
        float((proba.argmax(axis=1) == truth).mean()),
        expected_calibration_error(proba, truth),
        float((zero[test_idx].argmax(axis=1) == truth).mean()),
        model.metrics["accuracy"],
    )


def trained_cv(items, labels, per_class: int = 15, rounds: int = 10) -> dict:
    """Repeatedly: train on <= per_class random examples of each class, test on all the others."""
    names = [s.label for s in labels]
    texts = [item.text for item in items]
    vectors = label_embeddings(labels)
    zero = np.vstack([zero_shot_logits(labels, t, document_embedding(t), vectors) for t in texts])
    runs = []
    for seed in range(rounds):
        rng = random.Random(seed)
        train_idx = []
        for name in names:
            members = [i for i, item in enumerate(items) if item.label == name]
            train_idx += rng.sample(members, min(per_class, len(members) - 1))
        chosen = set(train_idx)
        test_idx = [i for i in range(len(items)) if i not in chosen]
        runs.append(_evaluate(items, names, texts, zero, train_idx, test_idx))
    test_idx_last, train_size = test_idx, len(train_idx)
    accuracies, eces, zero_accuracies, estimates = (
        list(column) for column in zip(*runs, strict=True)
    )
    # Every document tested once: 5 folds, each training fold cut to <= per_class per class.
    y = [item.label for item in items]
    correct = 0
    rng = random.Random(0)
    for train_fold, test_idx in StratifiedKFold(5, shuffle=True, random_state=0).split(texts, y):
        train_idx = []
        for name in names:
            members = [int(i) for i in train_fold if y[i] == name]
            train_idx += rng.sample(members, min(per_class, len(members)))
        accuracy = _evaluate(items, names, texts, zero, train_idx, list(test_idx))[0]
        correct += round(accuracy * len(test_idx))
    return {
        "protocol": f"{rounds} seeds: <= {per_class} examples per class train, all others test",
        "per_class": per_class,
        "rounds": rounds,
        "accuracy_mean": round(statistics.mean(accuracies), 4),
        "accuracy_std": round(statistics.stdev(accuracies), 4),
        "accuracy_min": round(min(accuracies), 4),
        "ece_mean": round(statistics.mean(eces), 4),
        "zero_shot_accuracy_same_test_sets": round(statistics.mean(zero_accuracies), 4),
        "estimate_from_examples_mean": round(statistics.mean(estimates), 4),
        "train_size": train_size,
        "test_size": len(test_idx_last),
        "five_fold_every_document_once_accuracy": round(correct / len(items), 4),
    }


def _timed(function, runs: int = 30) -> tuple[float, float]:
    """Median wall and CPU (this thread's) milliseconds; CPU time is what the machine's load
    does not inflate much, wall time is what a caller sees."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.thread_time()
        function()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return round(statistics.median(walls) * 1000, 1), round(statistics.median(cpus) * 1000, 1)


def latency(items) -> dict:
    backend = LocalBackend(Settings(_env_file=None))
    two_page = next(i for i in items if len(i.pages) == 2 and sum(map(len, i.pages)) > 2000)
    request = ClassifyRequest(model="local", labels=FIVE_WAY, pages=two_page.pages)
    backend._classify(request)  # warm
    zero_wall, zero_cpu = _timed(lambda: backend._classify(request))
    examples = [
        LabelledText(i.label, i.text)
        for name in (s.label for s in FIVE_WAY)
        for i in [i for i in items if i.label == name][:12]
    ]
    trained_request = ClassifyRequest(
        model="local",
        labels=FIVE_WAY,
        pages=two_page.pages,
        examples=examples,  # no training_key: kept in memory, never loaded from storage
    )
    started = time.perf_counter()
    backend._classify(trained_request)  # trains (with its cross-validation), then classifies
    training_s = time.perf_counter() - started
    trained_wall, trained_cpu = _timed(lambda: backend._classify(trained_request))
    cold = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); import backend.offline;"
            "from backend.backends.local.embedder import EMBEDDER; EMBEDDER.embed(['x']); print(time.perf_counter()-t)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "two_page_document": f"{two_page.path.name}, {sum(map(len, two_page.pages))} characters",
        "warm_two_page_zero_shot_ms_median": zero_wall,
        "warm_two_page_zero_shot_cpu_ms_median": zero_cpu,
        "warm_two_page_trained_ms_median": trained_wall,
        "warm_two_page_trained_cpu_ms_median": trained_cpu,
        "classifications_per_second_one_core": round(1000 / zero_cpu, 1),
        "training_60_examples_s": round(training_s, 2),
        "cold_start_s": round(float(cold.stdout.strip()), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    items = load()
    usable = [i for i in items if i.text.strip()]
    EMBEDDER.embed(["warm"])
    result = {
        "documents": len(items),
        "documents_with_text": len(usable),
        "zero_shot_five_way": zero_shot(items, FIVE_WAY, "label"),
        "zero_shot_label2": zero_shot(items, LABEL2, "label2"),
        "trained_five_way": trained_cv(items, FIVE_WAY),
        "latency": latency(items),
        "command": "python -m bench.local_model",
    }
    path = write_result("local_model", result)
    print(json.dumps({k: v for k, v in result.items() if k != "zero_shot_five_way"}, indent=2))
    print("5-way zero-shot", json.dumps(result["zero_shot_five_way"], indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
