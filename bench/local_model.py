"""The `local` model on docs-v1: zero-shot accuracy (5-way and label2), trained accuracy with at
most 15 examples per class (cross-validated), calibration, latency and cold start.

    python -m bench.local_model            # writes bench/results/local_model.json

Texts come from DocSift's own extraction (OCR included), cached in /tmp/docsift-text-cache.
"""

import backend.offline  # noqa: F401, I001

import json
import random
import statistics
import subprocess
import sys
import time

import numpy as np

from backend.backends.base import ClassifyRequest, LabelledText, LabelSpec
from backend.backends.local import LocalBackend, document_embedding, train
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.trained import expected_calibration_error
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


def trained_cv(items, labels, per_class: int = 15, rounds: int = 5) -> dict:
    """Repeatedly: train on <= per_class random examples of each class, test on all the others."""
    names = [s.label for s in labels]
    accuracies, eces = [], []
    texts = [item.text for item in items]
    embeddings = np.vstack([document_embedding(t) for t in texts])
    for seed in range(rounds):
        rng = random.Random(seed)
        train_idx = []
        for name in names:
            members = [i for i, item in enumerate(items) if item.label == name]
            train_idx += rng.sample(members, min(per_class, len(members) - 1))
        test_idx = [i for i in range(len(items)) if i not in set(train_idx)]
        model = train(labels, [LabelledText(items[i].label, texts[i]) for i in train_idx])
        proba = model.predict_proba([texts[i] for i in test_idx], embeddings[test_idx])
        truth = np.array([names.index(items[i].label) for i in test_idx])
        accuracies.append(float((proba.argmax(axis=1) == truth).mean()))
        eces.append(expected_calibration_error(proba, truth))
    return {
        "per_class": per_class,
        "rounds": rounds,
        "accuracy_mean": round(statistics.mean(accuracies), 4),
        "accuracy_min": round(min(accuracies), 4),
        "ece_mean": round(statistics.mean(eces), 4),
        "train_size": len(train_idx),
        "test_size": len(test_idx),
    }


def latency(items) -> dict:
    backend = LocalBackend(Settings(_env_file=None))
    two_page = next(i for i in items if len(i.pages) == 2 and sum(map(len, i.pages)) > 2000)
    request = ClassifyRequest(model="local", labels=FIVE_WAY, pages=two_page.pages)
    backend._classify(request)  # warm
    times = []
    for _ in range(30):
        started = time.perf_counter()
        backend._classify(request)
        times.append(time.perf_counter() - started)
    examples = [LabelledText(i.label, i.text) for i in items[:60]]
    trained_request = ClassifyRequest(
        model="local",
        labels=FIVE_WAY,
        pages=two_page.pages,
        examples=examples,
        training_key="bench",
    )
    backend._classify(trained_request)
    trained_times = []
    for _ in range(30):
        started = time.perf_counter()
        backend._classify(trained_request)
        trained_times.append(time.perf_counter() - started)
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
        "warm_two_page_zero_shot_ms_median": round(statistics.median(times) * 1000, 1),
        "warm_two_page_trained_ms_median": round(statistics.median(trained_times) * 1000, 1),
        "classifications_per_second_one_core": round(1 / statistics.median(times), 1),
        "cold_start_s": round(float(cold.stdout.strip()), 2),
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
