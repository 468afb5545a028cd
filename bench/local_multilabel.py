"""Multi-label accuracy and calibration of the `local` model on documents put back to back.

docs-v1 has one label per document, so multi-label documents are built from it: every document
alone (one label), and pairs and triples of documents of different labels (their pages back to
back; their labels are the union). Documents are split into 5 folds (stratified by the label3
genre, as bench/local_tune.py does) and every combination is built inside one fold, so the
combinations of a fold share no document with the others. For each fold the calibration
constants (OFFSET, SCALE of backend/backends/local/multilabel.py) are fitted by log-loss on the
combinations of the other 4 folds (all label sets and both input shapes pooled) and the metrics
are computed on the fold's own: held-out numbers. The constants shipped are the folds' medians.

Two shapes of input: `pages` (each document's pages kept: a part per page) and `text` (every
page joined into one text, as a .txt upload gives: windows; five_way and label2 only, windows
cost several times the pages). Variants of the design are scored on the same folds: the part
score (`softmax`: each part's distribution, shipped; `margin`: each named label's logit over the
catch-all threshold, without competition), the catch-all rule (`max` like the other labels,
shipped; `long`: parts of 300+ characters only; `complement`: only when no part is a named
kind) and `/parts` (the offset grows with log(parts), a third constant). Baselines on the same
combinations: the single-label distribution thresholded at 0.5 (`softmax`), and a sigmoid of
the whole document's zero-shot logits, sigmoid((z - 3.0) / 0.6) (`whole_document_sigmoid`, the
attempt that missed the second document). With examples: for each fold a model trained on at
most 15 documents per label of the other folds scores the fold's combinations (pages shape).

    python -m bench.local_multilabel          # writes bench/results/local_multilabel.json
    python -m bench.local_multilabel --reuse  # the evidence of the last run (/tmp), refit only
    (--no-trained, --no-latency leave those parts out)
"""

import backend.offline  # noqa: F401, I001

import hashlib
import json
import pickle
import sys
from pathlib import Path
import random
import statistics
import time

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

from backend.backends.base import ClassifyRequest, LabelledText
from backend.backends.local import LocalBackend, label_embeddings, train
from backend.backends.local import multilabel as ml
from backend.backends.local.embedder import EMBEDDER
from backend.backends.local.zero_shot import (
    CATCH_ALL_LOGIT,
    TEMPERATURE,
    is_catch_all,
    zero_shot_logits,
)
from backend.config import Settings
from backend.evaluation.metrics import expected_calibration_error, multi_label_summary
from bench.dataset import load
from bench.harness import write_result
from bench.label_sets import schema, truths

LABEL_SETS = ("five_way", "label2", "label3")
SHAPES = ("pages", "text")
TRAINED_LABEL_SETS = ("five_way", "label2")
TEXT_LABEL_SETS = ("five_way", "label2")  # windows cost ~10x the pages: two sets only
FOLDS = 5
PAIRS_PER_FOLD = 30
TRIPLES_PER_FOLD = 10
SEED = 25
CACHE = Path("/tmp/docsift-local-multilabel-evidence.pkl")  # python -m ... --reuse


def combinations(indices: list[int], labels: list[str], rng: random.Random) -> list[list[int]]:
    """Each document alone, then pairs and triples of documents of different labels."""
    out = [[i] for i in indices]
    for size, count in ((2, PAIRS_PER_FOLD), (3, TRIPLES_PER_FOLD)):
        seen: set[tuple[int, ...]] = set()
        for _ in range(count * 50):
            if len(seen) == count:
                break
            pick = rng.sample(indices, size)
            if len({labels[i] for i in pick}) == size and tuple(pick) not in seen:
                seen.add(tuple(pick))
                out.append(pick)
    return out


_EMBEDDINGS: dict[str, np.ndarray] = {}


def embeddings(texts: list[str]) -> np.ndarray:
    """ml.part_logits' embeddings, cached across label sets (the windows are the same)."""
    keys = [hashlib.sha1(t[: ml.TITLE_CHARS].encode()).hexdigest() for t in texts]
    missing = {k: t[: ml.TITLE_CHARS] for k, t in zip(keys, texts, strict=True)}
    missing = {k: t for k, t in missing.items() if k not in _EMBEDDINGS}
    if missing:
        _EMBEDDINGS.update(zip(missing, EMBEDDER.embed(list(missing.values())), strict=True))
    return np.vstack([_EMBEDDINGS[k] for k in keys])


class Scorer:
    """The evidence of a label set, cached by part text (pages recur across combinations)."""

    def __init__(self, name: str) -> None:
        self.specs = schema(name)
        self.vectors = label_embeddings(self.specs)
        self.cache: dict[str, np.ndarray] = {}
        self.catch_all = np.array([is_catch_all(s) for s in self.specs])

    def logits(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}
        if missing:
            vectors = embeddings(list(missing.values()))
            rows = [
                zero_shot_logits(self.specs, t, e, self.vectors)
                for t, e in zip(missing.values(), vectors, strict=True)
            ]
            self.cache.update(zip(missing, rows, strict=True))
        return np.vstack([self.cache[k] for k in keys])

    def whole(self, text: str) -> np.ndarray:
        return zero_shot_logits(self.specs, text, embeddings([text])[0], self.vectors)


def evidence(items, combos, scorer: Scorer, shape: str) -> dict:
    """Per combination: each part's logits and length, and the baselines' scores."""
    logits, lengths, softmax, sigmoid = [], [], [], []
    for combo in combos:
        pages = [p for i in combo for p in items[i].pages]
        if shape == "text":
            pages = ["\n\n".join(pages)]
        parts = ml.parts(pages)
        logits.append(scorer.logits(parts))
        lengths.append(np.array([len(p.strip()) for p in parts]))
        z = scorer.whole("\n\n".join(pages))
        softmax.append(ml.softmax(z[None, :] / TEMPERATURE)[0])
        sigmoid.append(1 / (1 + np.exp(-(z - CATCH_ALL_LOGIT) / TEMPERATURE)))
    return {
        "logits": logits,
        "lengths": lengths,
        "catch_all": scorer.catch_all,
        "softmax": np.array(softmax),
        "sigmoid": np.array(sigmoid),
        "parts": [len(x) for x in logits],
    }


def margins(logits: np.ndarray, catch_all: np.ndarray) -> np.ndarray:
    """(parts x labels): how far a named label's logit is over the catch-all threshold (no
    competition between named labels), and for a catch-all label how far the threshold is over
    the best named label (a variant the module does not ship)."""
    out = logits - CATCH_ALL_LOGIT
    named = logits[:, ~catch_all]
    best = named.max(axis=1) if named.size else np.full(len(logits), -np.inf)
    out[:, catch_all] = (CATCH_ALL_LOGIT - best)[:, None]
    return out


def log_odds(scores: np.ndarray) -> np.ndarray:
    return np.log(np.clip(scores, ml.EPSILON, 1 - ml.EPSILON) / np.clip(1 - scores, ml.EPSILON, 1))


def presence(ev: dict, score: str, catch_all_rule: str) -> np.ndarray:
    """(combinations x labels): per label the max over parts of each part's score (`softmax`:
    its distribution's log-odds; `margin`: margins()), the catch-all label by its rule: `max`
    like the others, `long` over parts of at least MIN_CATCH_ALL_CHARS only, `complement` the
    margin of the threshold over the best named label of any part."""
    rows = []
    catch = ev["catch_all"]
    for logits, lengths in zip(ev["logits"], ev["lengths"], strict=True):
        if score == "softmax":
            per_part = log_odds(ml.softmax(logits / TEMPERATURE))
        else:
            per_part = margins(logits, catch)
        row = per_part.max(axis=0)
        if catch.any() and catch_all_rule == "long":
            long = lengths >= MIN_CATCH_ALL_CHARS
            row[catch] = per_part[long][:, catch].max() if long.any() else per_part[:, catch].min()
        if catch.any() and catch_all_rule == "complement":
            row[catch] = -margins(logits, catch)[:, ~catch].max()
        rows.append(row)
    return np.array(rows)


MIN_CATCH_ALL_CHARS = 300
VARIANTS = {  # name -> (part score, catch-all rule, offset grows with log(parts))
    f"{score}/{rule}": (score, rule, False)
    for score in ("softmax", "margin")
    for rule in ("max", "long", "complement")
}
VARIANTS["softmax/max/parts"] = ("softmax", "max", True)
VARIANTS["softmax/long/parts"] = ("softmax", "long", True)


def fit(x: np.ndarray, y: np.ndarray, log_parts: np.ndarray | None) -> dict:
    """OFFSET, SCALE (and with log_parts, PARTS_SLOPE) minimizing the log-loss of
    calibrated(x) against y."""
    x = np.clip(x, -50, 50)
    n = np.zeros_like(x) if log_parts is None else log_parts

    def loss(params: np.ndarray) -> float:
        z = (x - params[0] - params[2] * n) / np.exp(params[1])
        return float(np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)))

    start = np.zeros(3)
    if log_parts is None:
        best = minimize(lambda w: loss(np.append(w, 0.0)), start[:2], method="Nelder-Mead")
        params = np.append(best.x, 0.0)
    else:
        params = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 2000}).x
    return {
        "offset": round(float(params[0]), 4),
        "scale": round(float(np.exp(params[1])), 4),
        "parts_slope": round(float(params[2]), 4),
    }


def calibrated(x: np.ndarray, log_parts: np.ndarray, constants: dict) -> np.ndarray:
    z = (x - constants["offset"] - constants["parts_slope"] * log_parts) / constants["scale"]
    return sigmoid(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def metrics(names: list[str], truth_sets: list[set[str]], probs: np.ndarray) -> dict:
    scores = [dict(zip(names, row.tolist(), strict=True)) for row in probs]
    summary = multi_label_summary(names, [sorted(t) for t in truth_sets], scores)
    truth = np.array([[n in t for n in names] for t in truth_sets])
    summary["ece_per_label"] = {
        n: round(expected_calibration_error(probs[:, j].tolist(), truth[:, j].tolist()), 4)
        for j, n in enumerate(names)
    }
    summary["mean_ece"] = round(statistics.mean(summary["ece_per_label"].values()), 4)
    del summary["reliability_per_label"]
    return summary


def trained_results(items, truth, fold_of, data: dict, per_class: int = 15) -> dict:
    """With examples (pages shape): for each fold, a model trained on at most `per_class`
    documents of each label of the other folds (single documents, as examples are); each
    held-out combination's parts scored by it, then the shipped max and map (no refit)."""
    out = {}
    rng = random.Random(SEED)
    for name in TRAINED_LABEL_SETS:
        ev = data[(name, "pages")]
        specs = schema(name)
        chunks = [None] * len(ev["combos"])
        for k in range(FOLDS):
            pool = [i for i in range(len(items)) if fold_of[i] != k]
            chosen = []
            for label in sorted(set(truth[name])):
                members = [i for i in pool if truth[name][i] == label]
                chosen += rng.sample(members, min(per_class, len(members)))
            examples = [LabelledText(truth[name][i], items[i].text) for i in chosen]
            model = train(specs, examples)
            for c in np.where(ev["folds"] == k)[0]:
                pages = [p for i in ev["combos"][c] for p in items[i].pages]
                distributions = model.predict_proba(ml.parts(pages), ev["logits"][c])
                chunks[c] = ml.probabilities(ml.presence(distributions))
            print(f"trained {name} fold {k}: {len(examples)} examples", flush=True)
        order = np.concatenate([np.where(ev["folds"] == k)[0] for k in range(FOLDS)])
        truth_sets = [{ev["names"][j] for j in np.where(ev["truth"][i])[0]} for i in order]
        probs = np.vstack([chunks[i] for i in order])
        out[f"{name}/pages"] = metrics(ev["names"], truth_sets, probs)
    return out


def latency(items) -> dict:
    """Warm latency of one 2-page document (two one-page documents of docs-v1 back to back),
    single-label and multi-label, through the backend (no HTTP, no database)."""
    backend = LocalBackend(Settings(_env_file=None))
    specs = schema("five_way")
    singles = [i for i in items if len(i.pages) == 1 and len(i.pages[0]) > 500]
    pairs = [[singles[k].pages[0], singles[k + 7].pages[0]] for k in range(0, 20, 2)]
    out = {}
    for multi in (False, True):
        times = []
        for _ in range(3):
            for pages in pairs:
                request = ClassifyRequest("local", specs, pages, multi_label=multi)
                started = time.perf_counter()
                backend._classify(request)
                times.append(time.perf_counter() - started)
        times = times[len(pairs) :]  # the first round warms the caches
        key = "multi_label" if multi else "single_label"
        out[key] = {
            "median_ms": round(1000 * statistics.median(times), 1),
            "p90_ms": round(1000 * float(np.percentile(times, 90)), 1),
            "n": len(times),
        }
    return out


def evidences(items, truth, fold_of, rng: random.Random, started: float) -> dict:
    """(label set, shape) -> evidence, combinations and the fold of each combination."""
    data = {}
    for name in LABEL_SETS:
        scorer = Scorer(name)
        combos, folds = [], []
        for k in range(FOLDS):
            members = [i for i in range(len(items)) if fold_of[i] == k]
            made = combinations(members, truth[name], rng)
            combos += made
            folds += [k] * len(made)
        for shape in SHAPES:
            if shape == "text" and name not in TEXT_LABEL_SETS:
                continue
            ev = evidence(items, combos, scorer, shape)
            ev["combos"], ev["folds"] = combos, np.array(folds)
            ev["names"] = [s.label for s in scorer.specs]
            ev["truth"] = np.array(
                [[n in {truth[name][i] for i in c} for n in ev["names"]] for c in combos],
                dtype=float,
            )
            data[(name, shape)] = ev
            print(f"{name}/{shape}: {len(combos)} combinations, {time.monotonic() - started:.0f}s")
    return data


def main() -> None:
    started = time.monotonic()
    items = load()
    truth = truths(items)
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    fold_of = np.zeros(len(items), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(items)), truth["label3"])):
        fold_of[test] = k
    rng = random.Random(SEED)
    if "--reuse" in sys.argv and CACHE.exists():
        data = pickle.loads(CACHE.read_bytes())
    else:
        data = evidences(items, truth, fold_of, rng, started)
        CACHE.write_bytes(pickle.dumps(data))
    for ev in data.values():
        ev["features"] = {v: presence(ev, score, rule) for v, (score, rule, _) in VARIANTS.items()}
        parts = np.log(np.array(ev["parts"], dtype=float))[:, None]
        ev["log_parts"] = np.repeat(parts, len(ev["names"]), axis=1)
    fits: dict = {variant: [] for variant in VARIANTS}
    held_out: dict = {key: {} for key in data}
    for k in range(FOLDS):
        train_truth = np.concatenate(
            [ev["truth"][ev["folds"] != k].ravel() for ev in data.values()]
        )
        for variant, (_, _, by_parts) in VARIANTS.items():
            evs = list(data.values())
            x = np.concatenate([ev["features"][variant][ev["folds"] != k].ravel() for ev in evs])
            log_parts = np.concatenate([ev["log_parts"][ev["folds"] != k].ravel() for ev in evs])
            constants = fit(x, train_truth, log_parts if by_parts else None)
            fits[variant].append(constants)
            for key, ev in data.items():
                test = ev["folds"] == k
                held_out[key].setdefault(variant, []).append(
                    calibrated(ev["features"][variant][test], ev["log_parts"][test], constants)
                )
        for key, ev in data.items():
            test = ev["folds"] == k
            held_out[key].setdefault("softmax", []).append(ev["softmax"][test])
            held_out[key].setdefault("whole_document_sigmoid", []).append(ev["sigmoid"][test])
    results = {}
    for (name, shape), ev in data.items():
        order = np.concatenate([np.where(ev["folds"] == k)[0] for k in range(FOLDS)])
        truth_sets = [{ev["names"][j] for j in np.where(ev["truth"][i])[0]} for i in order]
        sizes = [len(ev["combos"][i]) for i in order]
        entry = {
            "combinations": len(order),
            "by_size": {str(s): sizes.count(s) for s in sorted(set(sizes))},
            "parts_mean": round(statistics.mean(ev["parts"]), 2),
        }
        for method, chunks in held_out[(name, shape)].items():
            probs = np.vstack(chunks)
            entry[method] = metrics(ev["names"], truth_sets, probs)
            multi = [i for i, s in enumerate(sizes) if s > 1]
            both = [
                all(probs[i, ev["names"].index(label)] >= 0.5 for label in truth_sets[i])
                for i in multi
            ]
            entry[method]["combinations_with_every_label_found"] = round(statistics.mean(both), 4)
            exact = [
                {ev["names"][j] for j in np.where(probs[i] >= 0.5)[0]} == truth_sets[i]
                for i in range(len(order))
            ]
            entry[method]["exact_match_by_size"] = {
                str(n): round(
                    statistics.mean(e for e, s in zip(exact, sizes, strict=True) if s == n), 4
                )
                for n in sorted(set(sizes))
            }
        results[f"{name}/{shape}"] = entry
    shipped = {
        variant: {key: round(statistics.median(f[key] for f in fs), 3) for key in fs[0]}
        for variant, fs in fits.items()
    }
    result = {
        "design": "per part (page, or 1500-char window every 500 chars) zero-shot distribution; "
        "per label the max over parts; p = sigmoid((logit(s) - OFFSET) / SCALE)",
        "shipped_constants": shipped,
        "module_constants": {"OFFSET": ml.OFFSET, "SCALE": ml.SCALE},
        "fits_per_fold": fits,
        "summary": {
            key: {
                method: {
                    m: entry[method][m]
                    for m in (
                        "micro_f1",
                        "macro_f1",
                        "exact_match",
                        "mean_ece",
                        "combinations_with_every_label_found",
                    )
                }
                for method in entry
                if isinstance(entry[method], dict) and "micro_f1" in entry[method]
            }
            for key, entry in results.items()
        },
        "held_out": results,
        "held_out_trained": trained_results(items, truth, fold_of, data)
        if "--no-trained" not in sys.argv
        else None,
        "latency": latency(items) if "--no-latency" not in sys.argv else None,
        "documents": len(items),
        "seconds": round(time.monotonic() - started),
        "command": "python -m bench.local_multilabel",
    }
    print(json.dumps(result["summary"], indent=1))
    print(f"written to {write_result('local_multilabel', result)}")


if __name__ == "__main__":
    main()
