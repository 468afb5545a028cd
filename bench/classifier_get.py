"""How fast `GET /v1/classifiers/{id}` answers right after its examples change (issue 28).

Training `local` takes seconds; it runs on the task queue, so a GET must answer at once with the
training state instead of training in the request. This starts DocSift (uvicorn, SQLite, `local`),
uploads digital docs-v1 documents, creates a 5-way classifier, then adds examples one at a time
and, right after each addition, times `GET /v1/classifiers/{id}` and `GET .../examples` (which
carries the accuracy estimate). At the end it waits for the one debounced training and reports how
long the model took to be ready and what the estimate said (with its example count).

    python -m bench.classifier_get [--examples 20]   # writes bench/results/classifier_get.json
"""

import argparse
import time

import httpx

from bench.dataset import DATASET, manifest
from bench.harness import docsift_server, percentile, write_result

SCHEMA = [
    {"label": "w9", "description": "IRS Form W-9, request for taxpayer identification number"},
    {"label": "form_1040", "description": "IRS Form 1040 individual income tax return"},
    {"label": "invoice", "description": "An invoice or bill asking for payment"},
    {"label": "payslip", "description": "An employee's pay slip or pay stub"},
    {"label": "other", "description": "Anything else"},
]


def pick(per_label: int) -> list[tuple[str, str]]:
    """(path, label): the first digital PDFs of each label, round-robin, so examples alternate."""
    by_label: dict[str, list[str]] = {}
    for path, label, _ in manifest(DATASET):
        if path.suffix.lower() == ".pdf":
            by_label.setdefault(label, []).append(str(path))
    rows = []
    for i in range(per_label):
        for label, paths in sorted(by_label.items()):
            if i < len(paths):
                rows.append((paths[i], label))
    return rows


def timed(client: httpx.Client, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    reply = client.get(url)
    reply.raise_for_status()
    return (time.perf_counter() - started) * 1000, reply.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=20)
    args = parser.parse_args()
    rows = pick(per_label=args.examples // 5 + 1)[: args.examples]
    with (
        docsift_server() as server,
        httpx.Client(
            base_url=server.url, headers={"x-api-key": server.api_key}, timeout=600
        ) as client,
    ):
        created = client.post(
            "/v1/classifiers",
            json={"name": "bench", "classification_schema": SCHEMA, "query_model": "local"},
        )
        created.raise_for_status()
        cid = created.json()["classifier_id"]
        get_ms, examples_ms, states = [], [], []
        for path, label in rows:
            with open(path, "rb") as handle:
                up = client.post("/v1/documents", files={"file": (path.split("/")[-1], handle)})
            up.raise_for_status()
            document_id = up.json()["document_id"]
            added = client.post(
                f"/v1/classifiers/{cid}/examples", json={"document_id": document_id, "label": label}
            )
            if added.status_code == 409:  # the same bytes twice in the dataset
                continue
            added.raise_for_status()
            ms, detail = timed(client, f"/v1/classifiers/{cid}")
            get_ms.append(ms)
            states.append((detail.get("training") or {}).get("state"))
            ms, _ = timed(client, f"/v1/classifiers/{cid}/examples")
            examples_ms.append(ms)
        waited = time.perf_counter()
        estimate = None
        while time.perf_counter() - waited < 600:
            _, detail = timed(client, f"/v1/classifiers/{cid}")
            if (detail.get("training") or {}).get("state") == "ready":
                _, listing = timed(client, f"/v1/classifiers/{cid}/examples")
                estimate = listing.get("estimate")
                break
            time.sleep(0.5)
        ready_s = time.perf_counter() - waited
    result = {
        "examples_added": len(get_ms),
        "get_classifier_ms": {
            "p50": round(percentile(get_ms, 50), 1),
            "p95": round(percentile(get_ms, 95), 1),
            "max": round(max(get_ms), 1),
        },
        "get_examples_ms": {
            "p50": round(percentile(examples_ms, 50), 1),
            "p95": round(percentile(examples_ms, 95), 1),
            "max": round(max(examples_ms), 1),
        },
        "training_states_seen": sorted({s for s in states if s}),
        "seconds_to_ready_after_last_example": round(ready_s, 1),
        "estimate": estimate,
    }
    print(result)
    print("wrote", write_result("classifier_get", result))


if __name__ == "__main__":
    main()
