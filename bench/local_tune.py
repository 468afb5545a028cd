"""Choose the zero-shot constants of the `local` model on folds of docs-v1, not on all of it.

The evidence of every document for every label of the five label sets (bench/label_sets.py) is
computed once; the constants only weigh it. For each of 5 folds (stratified by the label3 genre)
the grid point with the best mean accuracy over the five label sets on the other 4 folds is
chosen, and its accuracy on the held-out fold is reported: that is the honest estimate of the
constants' accuracy. The constants shipped are the ones most folds chose.

    python -m bench.local_tune          # writes bench/results/local_tune.json
"""

import backend.offline  # noqa: F401, I001

import hashlib
import itertools
import json
import os
import pickle
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from backend.backends.local import TITLE_CHARS, document_embedding, label_embeddings
from backend.backends.local import zero_shot as z
from backend.backends.local.genres import _cue_counts
from bench.dataset import load
from bench.harness import write_result
from bench.label_sets import NAMES, schema, truths

GRID = {
    "GENRE_WEIGHT": [2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
    "CUE_SCALE": [1.0, 1.5, 2.0, 3.0],
    "CATCH_ALL_LOGIT": [1.8, 2.2, 2.6, 3.0],
}


# Document embeddings by a hash of the opening they embed: the bench reruns on a shared machine.
EMBEDDING_CACHE = Path(
    os.environ.get("DOCSIFT_EMBEDDING_CACHE", "/tmp/docsift-embedding-cache.pkl")
)


def embeddings(items) -> dict[str, np.ndarray]:
    cached = pickle.loads(EMBEDDING_CACHE.read_bytes()) if EMBEDDING_CACHE.exists() else {}
    out = {}
    for item in items:
        key = hashlib.sha256(item.text[:TITLE_CHARS].encode()).hexdigest()
        if key not in cached:
            cached[key] = document_embedding(item.text)
        out[item.text] = cached[key]
    EMBEDDING_CACHE.write_bytes(pickle.dumps(cached))
    return out


def evidence(items, name: str, truth: list[str], vectors_of: dict) -> dict:
    specs = schema(name)
    catch_all = [z.is_catch_all(s) for s in specs]
    named = [i for i, c in enumerate(catch_all) if not c]
    terms = z.label_terms([specs[i] for i in named])
    vectors = label_embeddings([specs[i] for i in named])
    rows = {"lexical": [], "semantic": [], "cues": [], "contradicted": []}
    for item in items:
        text = item.text
        lexical, contradicted = z.lexical_scores(terms, text)
        cosines = vectors @ vectors_of[text]
        counts = _cue_counts(text)
        rows["lexical"].append(lexical)
        rows["semantic"].append(cosines - cosines.mean())
        rows["cues"].append([max((counts[g] for g in t.genres), default=0.0) for t in terms])
        rows["contradicted"].append(contradicted)
    names = [s.label for s in specs]
    return {
        **{k: np.array(v, dtype=float) for k, v in rows.items()},
        "named": named,
        "n_labels": len(specs),
        "truth": np.array([names.index(t) for t in truth]),
    }


def predict(ev: dict, constants: dict) -> np.ndarray:
    genre = np.where(ev["cues"] > 0, 1 - np.exp(-ev["cues"] / constants["CUE_SCALE"]), 0.0)
    support = (
        z.LEXICAL_WEIGHT * ev["lexical"]
        + z.SEMANTIC_WEIGHT * ev["semantic"]
        + constants["GENRE_WEIGHT"] * genre
    )
    support = np.where(
        ev["contradicted"] > 0, np.minimum(support, support * z.CONTRADICTION_GATE), support
    )
    logits = np.full((len(support), ev["n_labels"]), constants["CATCH_ALL_LOGIT"])
    logits[:, ev["named"]] = support
    return logits.argmax(axis=1)


def main() -> None:
    items = load()
    truth = truths(items)
    vectors_of = embeddings(items)
    evidences = {name: evidence(items, name, truth[name], vectors_of) for name in NAMES}
    points = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    correct = {
        i: {name: predict(ev, p) == ev["truth"] for name, ev in evidences.items()}
        for i, p in enumerate(points)
    }
    folds = []
    splitter = StratifiedKFold(5, shuffle=True, random_state=0)
    for k, (train, test) in enumerate(splitter.split(np.zeros(len(items)), truth["label3"])):
        scores = [
            statistics.mean(float(c[name][train].mean()) for name in NAMES)
            for c in correct.values()
        ]
        best = int(np.argmax(scores))
        folds.append(
            {
                "fold": k,
                "chosen": points[best],
                "train_mean_accuracy": round(scores[best], 4),
                "test_accuracy": {
                    name: round(float(correct[best][name][test].mean()), 4) for name in NAMES
                },
                "test_size": len(test),
            }
        )
    votes = Counter(json.dumps(f["chosen"], sort_keys=True) for f in folds)
    chosen = json.loads(votes.most_common(1)[0][0])
    index = points.index({k: chosen[k] for k in GRID})
    result = {
        "grid": GRID,
        "folds": folds,
        "held_out_accuracy_mean": {
            name: round(statistics.mean(f["test_accuracy"][name] for f in folds), 4)
            for name in NAMES
        },
        "chosen_by_most_folds": chosen,
        "chosen_in_sample_accuracy": {
            name: round(float(correct[index][name].mean()), 4) for name in NAMES
        },
        "shipped": {k: getattr(z, k) for k in GRID},
        "shipped_in_sample_accuracy": {
            name: round(
                float((predict(ev, {k: getattr(z, k) for k in GRID}) == ev["truth"]).mean()), 4
            )
            for name, ev in evidences.items()
        },
        "command": "python -m bench.local_tune",
    }
    print(json.dumps(result, indent=1))
    print(f"written to {write_result('local_tune', result)}")


if __name__ == "__main__":
    main()
