"""Gemma 3 270M (llama.cpp server) on docs-v1's 5-way set through DocSift's LiteLLM backend.

    python -m bench.local_llm.eval_gemma                 # all 134 documents
    python -m bench.local_llm.eval_gemma --text-layer    # only files with a text layer
    python -m bench.local_llm.eval_gemma --base-url http://127.0.0.1:8081/v1   # a running server
    python -m bench.local_llm.eval_gemma --per-label 4 --debias none,contextual,permutations \
        --out local_llm_debias   # the same documents under each debias method (issue 25)

Without --base-url it starts bench/local_llm/start_server.sh on a free port and stops it at the
end. Texts come from DocSift's own extraction (OCR included), cached by bench.dataset. Writes
accuracy, the confusion matrix, calibration and latency to bench/results/local_llm.json. A 270M
model is a plumbing test, not a quality bar: the numbers are reported, never asserted.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import csv
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.backends.base import ClassifyRequest, LabelSpec
from backend.backends.llm import LiteLLMBackend
from backend.backends.llm.confidence import round_distribution
from backend.config import ModelConfig, Settings
from backend.evaluation.metrics import summarize
from bench.dataset import DATASET, load
from bench.harness import REPO, free_port, wait_healthy, write_result

SCHEMA = REPO / "evals" / "schemas" / "five_way.json"
SCRIPT = Path(__file__).resolve().parent / "start_server.sh"
MODEL = "gemma3-270m"
# Figures repeated at the top level of a multi-method result (from the first method's run).
SHOWN = ("accuracy", "majority_baseline")


@contextmanager
def llama_server(base_url: str | None) -> Iterator[tuple[str, float | None]]:
    """(base URL, start-up seconds): the given server, or one started for this run."""
    if base_url:
        yield base_url, None
        return
    port = free_port()
    env = {**os.environ, "LLM_FOREGROUND": "1", "LLM_PORT": str(port)}
    log = Path(f"/tmp/docsift-llm-eval-{port}.log")
    started = time.monotonic()
    with log.open("w") as handle:
        proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=handle, stderr=handle)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/v1/models", timeout=300)
        yield f"{url}/v1", time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(30)


def text_layer_files() -> set[str]:
    """Files docs-v1's manifest describes as digital (with a text layer)."""
    with (DATASET / "MANIFEST.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {str(DATASET / r["file"]) for r in rows if "text layer" in r["notes"]}


async def evaluate(
    base_url: str,
    items: list,
    labels: list[LabelSpec],
    *,
    debias: str = "none",
    permutations: int = 3,
    backend: LiteLLMBackend | None = None,
) -> dict:
    settings = Settings(
        _env_file=None,
        models=[
            ModelConfig(
                name=MODEL,
                litellm_model="openai/gemma3",
                api_base=base_url,
                api_key="x",
                supports_system_message=False,
            )
        ],
        # CPU inference of a 3000-token prompt takes seconds, more when the cores are shared.
        model_timeout_seconds=300,
        model_total_timeout_seconds=600,
    )
    backend = backend or LiteLLMBackend(settings)
    await backend.startup()
    names = [s.label for s in labels]
    expected, predicted, scores, durations, rows = [], [], [], [], []
    methods: Counter[str] = Counter()
    tokens = [0, 0]
    failures: list[dict] = []
    for index, item in enumerate(items, 1):
        request = ClassifyRequest(
            model=MODEL,
            labels=labels,
            pages=item.pages or [""],
            debias=debias,
            permutations=permutations,
        )
        started = time.perf_counter()
        try:
            result = await backend.classify(request)
        except Exception as error:  # a failed document is counted, not fatal
            failures.append({"file": item.path.name, "error": f"{type(error).__name__}: {error}"})
            print(f"[{index}/{len(items)}] {item.path.name}: FAILED {error}", flush=True)
            continue
        seconds = time.perf_counter() - started
        distribution = round_distribution(result.scores)
        expected.append(item.label)
        predicted.append(result.label)
        scores.append(distribution)
        durations.append(seconds)
        methods[result.confidence_method] += 1
        tokens[0] += result.prompt_tokens
        tokens[1] += result.completion_tokens
        rows.append(
            {
                "file": str(item.path.relative_to(DATASET)),
                "expected": item.label,
                "predicted": result.label,
                "scores": distribution,
                "seconds": round(seconds, 3),
                "prompt_tokens": result.prompt_tokens,
            }
        )
        print(
            f"[{index}/{len(items)}] {item.path.name}: {item.label} -> {result.label} "
            f"{distribution[result.label]:.3f} ({seconds:.1f} s)",
            flush=True,
        )
    await backend.shutdown()
    metrics = summarize(
        names,
        expected,
        predicted,
        scores,
        durations=durations,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        failed=len(failures),
    )
    majority = Counter(expected).most_common(1)[0] if expected else ("", 0)
    return {
        **metrics,
        "confidence_methods": dict(methods),
        "predicted_distribution": dict(Counter(predicted)),
        "majority_baseline": {
            "label": majority[0],
            "accuracy": round(majority[1] / len(expected), 4) if expected else None,
        },
        "mean_top_score": round(sum(max(s.values()) for s in scores) / len(scores), 4)
        if scores
        else None,
        "failures": failures,
        "items": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running llama.cpp server's /v1 URL")
    parser.add_argument("--text-layer", action="store_true", help="only digital documents")
    parser.add_argument("--limit", type=int, help="the first N documents (smoke runs)")
    parser.add_argument("--per-label", type=int, help="the first N documents of each label")
    parser.add_argument(
        "--debias", default="none", help="comma-separated: none, contextual, permutations"
    )
    parser.add_argument("--permutations", type=int, default=5, help="k for permutations")
    parser.add_argument("--out", default="local_llm", help="name of the bench/results file")
    args = parser.parse_args()
    labels = [LabelSpec(s["label"], s["description"]) for s in json.loads(SCHEMA.read_text())]
    items = load()
    if args.text_layer:
        digital = text_layer_files()
        items = [item for item in items if str(item.path) in digital]
    if args.per_label:
        seen: Counter[str] = Counter()
        items = [i for i in items if (seen.update([i.label]) or seen[i.label]) <= args.per_label]
    items = items[: args.limit] if args.limit else items
    methods = args.debias.split(",")
    with llama_server(args.base_url) as (base_url, startup):
        started = time.monotonic()
        results = {
            method: asyncio.run(
                evaluate(base_url, items, labels, debias=method, permutations=args.permutations)
            )
            for method in methods
        }
        wall = time.monotonic() - started
    result = results[methods[0]]
    if len(methods) > 1:
        result = {"debias": results, "n": result["n"], **{k: result[k] for k in SHOWN}}
    data = {
        "model": "Gemma 3 270M (gemma-3-270m-q4_k_m.gguf) via llama-cpp-python server",
        "litellm_model": "openai/gemma3",
        "dataset": "docs-v1, 5-way" + (", text-layer documents only" if args.text_layer else ""),
        "documents": len(items),
        "server_startup_seconds": None if startup is None else round(startup, 2),
        "wall_seconds": round(wall, 1),
        "cpu_cores": os.cpu_count(),
        **result,
    }
    if len(methods) > 1:
        data["permutations"] = args.permutations
    path = write_result(args.out, data)
    for method, r in results.items():
        print(
            f"{method}: accuracy {r['accuracy']} ECE {r['ece']} over {r['n']} documents "
            f"(majority baseline {r['majority_baseline']['accuracy']}), "
            f"predicted {r['predicted_distribution']}, p50 {r['latency_p50']} s"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
