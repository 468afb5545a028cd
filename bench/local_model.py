"""The `local` model on docs-v1 over five label sets (bench/label_sets.py): zero-shot accuracy,
ECE and per-label recall; trained accuracy with at most 15 examples per class; latency and cold
start.

Trained protocol: for each of 10 seeds, draw at most 15 examples of each class (leaving at least
one of each class out) as the training set, train on them and test on ALL the other documents;
mean and standard deviation over the seeds. Zero-shot accuracy on the same test sets is given
beside it. A second protocol (5-fold, training folds cut to <= 15 per class, every document
tested once) is reported too.

    python -m bench.local_model            # writes bench/results/local_model.json
    python -m bench.local_model --zero-shot-only   # zero-shot and its latency only, all sets:
                                                   # writes bench/results/local_model_zero_shot.json
    python -m bench.local_model --zero-shot-only --sets label3,coarse   # quick, writes nothing

Texts come from DocSift's own extraction (OCR included), cached in /tmp/docsift-text-cache.
"""

import backend.offline  # noqa: F401, I001

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np

from backend.backends.base import ClassifyRequest, LabelledText
from sklearn.model_selection import StratifiedKFold

from backend.backends.local import LocalBackend, document_embedding, label_embeddings
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.trained import expected_calibration_error, fit
from backend.backends.local.zero_shot import catch_all_label, zero_shot_logits
from backend.config import Settings
from bench.dataset import load
from bench.harness import write_result
from bench.label_sets import CHECK_NAMES, NAMES, schema, truths

FIVE_WAY = schema("five_way")
LABEL2 = schema("label2")


def zero_shot(items, labels, truth: list[str]) -> dict:
    """Accuracy, ECE and per-label recall of the zero-shot model; `mistakes` name the files."""
    backend = LocalBackend(Settings(_env_file=None))
    predicted, probabilities = [], []
    for item in items:
        result = backend._classify(
            ClassifyRequest(model="local", labels=labels, pages=item.pages or [""])
        )
        predicted.append(result.label)
        probabilities.append([result.scores[s.label] for s in labels])
    names = [s.label for s in labels]
    truth_idx = np.array([names.index(t) for t in truth])
    accuracy = float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
    confusion = {t: {p: 0 for p in names} for t in names}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    recall = {
        t: {"support": sum(row.values()), "recall": round(row[t] / sum(row.values()), 3)}
        for t, row in confusion.items()
        if sum(row.values())
    }
    return {
        "accuracy": round(accuracy, 4),
        "n": len(items),
        "ece": round(expected_calibration_error(np.array(probabilities), truth_idx), 4),
        "ece_n": len(items),
        "max_probability": round(float(np.max(probabilities)), 6),
        "per_label": recall,
        "confusion": confusion,
        "mistakes": [
            f"{item.path.parent.name}/{item.path.name}: {t} -> {p}"
            for item, t, p in zip(items, truth, predicted, strict=True)
            if t != p
        ],
    }


# The trained model before issue 24: the learned correction at full weight for every taught
# label (weight 1, kappa 0) and labels without examples at the taught labels' mean (no catch-all
# given), kept here to show what the change did.
OLD = {"weights": (1.0,), "kappas": (0.0,), "nearest": (0.0,)}


def _evaluate(y, names, texts, zero, train_idx, test_idx, catch_all=None, **variant) -> dict:
    """Accuracy and ECE of a model trained on train_idx, and the zero-shot's, on test_idx."""
    model = fit(
        names,
        [texts[i] for i in train_idx],
        [y[i] for i in train_idx],
        zero[train_idx],
        catch_all=catch_all,
        **variant,
    )
    proba = model.predict_proba([texts[i] for i in test_idx], zero[test_idx])
    truth = np.array([names.index(y[i]) for i in test_idx])
    return {
        "accuracy": float((proba.argmax(axis=1) == truth).mean()),
        "ece": expected_calibration_error(proba, truth),
        "zero_shot": float((zero[test_idx].argmax(axis=1) == truth).mean()),
        "estimate": model.metrics["accuracy"],
        "top": float(proba.max()),
        "weight": model.weight,
        "kappa": model.kappa,
    }


def _mean_sd(values: list[float]) -> list[float | None]:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return [round(statistics.mean(values), 4), round(sd, 4) if sd is not None else None]


def trained_cv(
    items,
    labels,
    y: list[str],
    per_class: int = 15,
    rounds: int = 10,
    five_fold: bool = True,
    compare_old: bool = True,
) -> dict:
    """Repeatedly: train on <= per_class random examples of each class, test on all the others;
    the zero-shot model and (compare_old) the unshrunk model of before on the same test sets."""
    names = [s.label for s in labels]
    texts = [item.text for item in items]
    vectors = label_embeddings(labels)
    zero = np.vstack([zero_shot_logits(labels, t, document_embedding(t), vectors) for t in texts])
    catch_all = catch_all_label(labels)
    runs, old_runs = [], []
    for seed in range(rounds):
        rng = random.Random(seed)
        train_idx = []
        for name in names:
            members = [i for i, label in enumerate(y) if label == name]
            train_idx += rng.sample(members, max(0, min(per_class, len(members) - 1)))
        chosen = set(train_idx)
        test_idx = [i for i in range(len(items)) if i not in chosen]
        runs.append(_evaluate(y, names, texts, zero, train_idx, test_idx, catch_all))
        if compare_old:
            old_runs.append(_evaluate(y, names, texts, zero, train_idx, test_idx, **OLD))
    estimates = [r["estimate"] for r in runs if r["estimate"] is not None]
    gains = [r["accuracy"] - r["zero_shot"] for r in runs]
    out = {
        "protocol": f"{rounds} draws: <= {per_class} examples per class train, all others test",
        "per_class": per_class,
        "rounds": rounds,
        "accuracy_mean_sd": _mean_sd(r["accuracy"] for r in runs),
        "accuracy_min": round(min(r["accuracy"] for r in runs), 4),
        "zero_shot_same_test_sets_mean_sd": _mean_sd(r["zero_shot"] for r in runs),
        "gain_over_zero_shot_mean_sd": _mean_sd(gains),
        "draws_worse_than_zero_shot": sum(g < 0 for g in gains),
        "ece_mean": round(statistics.mean(r["ece"] for r in runs), 4),
        "ece_n_per_round": len(test_idx),
        "max_probability": round(max(r["top"] for r in runs), 6),
        "chosen_weight_kappa": [[r["weight"], r["kappa"]] for r in runs],
        "estimate_from_examples_mean": round(statistics.mean(estimates), 4) if estimates else None,
        "train_size": len(train_idx),
        "test_size": len(test_idx),
    }
    if compare_old:
        out["old_unshrunk_accuracy_mean_sd"] = _mean_sd(r["accuracy"] for r in old_runs)
        out["old_unshrunk_ece_mean"] = round(statistics.mean(r["ece"] for r in old_runs), 4)
    if five_fold:
        out["five_fold_every_document_once_accuracy"] = _five_fold(
            y, names, texts, zero, per_class, catch_all
        )
    return out


def _five_fold(y, names, texts, zero, per_class: int, catch_all: str | None) -> float:
    """Every document tested once: 5 folds, each training fold cut to <= per_class per class.
    Genres with fewer than 5 documents cannot be stratified: folds by a coarser key keep the
    split deterministic; those genres are then taught by whatever examples land in training."""
    strata = [label if y.count(label) >= 5 else "rare" for label in y]
    splits = StratifiedKFold(5, shuffle=True, random_state=0).split(texts, strata)
    correct = 0
    rng = random.Random(0)
    for train_fold, test_idx in splits:
        train_idx = []
        for name in names:
            members = [int(i) for i in train_fold if y[i] == name]
            train_idx += rng.sample(members, min(per_class, len(members)))
        accuracy = _evaluate(y, names, texts, zero, train_idx, list(test_idx), catch_all)[
            "accuracy"
        ]
        correct += round(accuracy * len(test_idx))
    return round(correct / len(texts), 4)


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


def _two_page(items):
    return next(i for i in items if len(i.pages) == 2 and sum(map(len, i.pages)) > 2000)


def zero_shot_latency(items) -> dict:
    """Warm zero-shot classification of a 2-page document, with the 5-way and the ten LABEL3
    labels: median wall and CPU milliseconds."""
    backend = LocalBackend(Settings(_env_file=None))
    two_page = _two_page(items)
    out = {"two_page_document": f"{two_page.path.name}, {sum(map(len, two_page.pages))} characters"}
    for name in ("five_way", "label3"):
        request = ClassifyRequest(model="local", labels=schema(name), pages=two_page.pages)
        backend._classify(request)  # warm
        wall, cpu = _timed(lambda request=request: backend._classify(request))
        out[f"{name}_wall_ms_median"], out[f"{name}_cpu_ms_median"] = wall, cpu
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    return out


def latency(items) -> dict:
    backend = LocalBackend(Settings(_env_file=None))
    two_page = _two_page(items)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", default=",".join(NAMES + CHECK_NAMES), help="label sets, comma separated"
    )
    parser.add_argument("--zero-shot-only", action="store_true", help="skip training and latency")
    parser.add_argument("--rounds", type=int, default=10, help="seeds of the trained protocol")
    parser.add_argument(
        "--no-five-fold", action="store_true", help="skip the every-document-once protocol"
    )
    parser.add_argument(
        "--per-class", default="15,3", help="examples per class of the trained protocol(s)"
    )
    parser.add_argument("--no-old", action="store_true", help="skip the unshrunk model of before")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency figures")
    args = parser.parse_args()
    items = load()
    truth = truths(items)
    EMBEDDER.embed(["warm"])
    result: dict = {
        "documents": len(items),
        "documents_with_text": sum(bool(i.text.strip()) for i in items),
    }
    for name in args.sets.split(","):
        labels = schema(name)
        result[f"zero_shot_{name}"] = zero_shot(items, labels, truth[name])
        for per_class in [] if args.zero_shot_only else map(int, args.per_class.split(",")):
            suffix = "" if per_class == 15 else f"_{per_class}_per_class"
            result[f"trained_{name}{suffix}"] = trained_cv(
                items,
                labels,
                truth[name],
                per_class=per_class,
                rounds=args.rounds,
                five_fold=not args.no_five_fold and per_class == 15,
                compare_old=not args.no_old,
            )
    if not args.zero_shot_only and not args.no_latency:
        result["latency"] = latency(items)
    else:
        result["latency_zero_shot"] = zero_shot_latency(items)
    result["command"] = "python -m bench.local_model " + " ".join(sys.argv[1:])
    for name in args.sets.split(","):
        zero = result[f"zero_shot_{name}"]
        recall = ", ".join(
            f"{k} {v['recall']:.2f}/{v['support']}" for k, v in zero["per_label"].items()
        )
        line = f"{name:9s} zero-shot {zero['accuracy']:.3f} ECE {zero['ece']:.3f} (n={zero['n']})"
        print(line)
        for key in [k for k in result if k.startswith(f"trained_{name}")]:
            trained = result[key]
            accuracy, sd = trained["accuracy_mean_sd"]
            zero_mean, zero_sd = trained["zero_shot_same_test_sets_mean_sd"]
            line = f"   trained <= {trained['per_class']}/class ({trained['rounds']} draws,"
            line += f" {trained['train_size']} train / {trained['test_size']} test):"
            line += f" {accuracy:.3f} ± {sd} vs zero-shot {zero_mean:.3f} ± {zero_sd}"
            if "old_unshrunk_accuracy_mean_sd" in trained:
                old, old_sd = trained["old_unshrunk_accuracy_mean_sd"]
                line += f", unshrunk {old:.3f} ± {old_sd}"
            line += f"; worse than zero-shot in {trained['draws_worse_than_zero_shot']} draws;"
            line += f" ECE {trained['ece_mean']:.3f}, max p {trained['max_probability']:.4f}"
            if trained.get("five_fold_every_document_once_accuracy") is not None:
                line += f", 5-fold {trained['five_fold_every_document_once_accuracy']}"
            print(line)
        print("   recall:", recall)
        for mistake in zero["mistakes"]:
            print("   ", mistake)
    for key in ("latency", "latency_zero_shot"):
        if key in result:
            print(json.dumps(result[key], indent=1))
    if not args.zero_shot_only:
        print(f"written to {write_result('local_model', result)}")
    elif args.sets == ",".join(NAMES + CHECK_NAMES):  # every set: the zero-shot record
        print(f"written to {write_result('local_model_zero_shot', result)}")


if __name__ == "__main__":
    main()
