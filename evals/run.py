"""Evaluate a DocSift classifier on a labelled folder through the REST API.

    python -m evals.run DATASET (--schema FILE.json | --classifier ID) [--model M]
        [--api-url URL] [--api-key KEY] [--out DIR] [--min-accuracy X] [--label-column label]
    python -m evals.run --compare A/report.json B/report.json

DATASET has a MANIFEST.tsv (`file` and label columns, as ../shared/datasets/docs-v1) or one
subfolder per label. Each file is uploaded (text extraction and OCR happen on the server), the
evaluation runs server-side (so the console shows it too) while a progress bar follows it, and
DIR gets report.json, report.md, confusion_matrix.png and reliability.png. With --min-accuracy
the exit code is 1 when accuracy is below it, for CI.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from evals import report as reporting
from evals.dataset import Entry, read_dataset


class ApiError(SystemExit):
    pass


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body.get('error')}: {body.get('message')}"
        except ValueError:
            message = response.text[:300]
        raise ApiError(f"API error {response.status_code}: {message}")
    return response.json()


def upload_all(
    client: httpx.Client, entries: list[Entry], concurrency: int
) -> list[dict[str, Any]]:
    """Upload every file; returns one record per entry with its document (or its error)."""

    def upload(entry: Entry) -> dict[str, Any]:
        with entry.path.open("rb") as handle:
            response = client.post(
                "/v1/documents", files={"file": (entry.path.name, handle)}, timeout=600
            )
        if response.status_code >= 400:
            return {"entry": entry, "document": None, "error": response.text[:300]}
        body = response.json()
        document = body["documents"][0] if "documents" in body else body
        return {"entry": entry, "document": document, "error": document.get("error")}

    with (
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(total=len(entries), desc="upload", unit="doc") as bar,
    ):
        results = []
        for result in pool.map(upload, entries):
            results.append(result)
            bar.update()
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    dataset = Path(args.dataset)
    entries = read_dataset(dataset, args.label_column)
    client = httpx.Client(base_url=args.api_url, headers={"x-api-key": args.api_key}, timeout=60)
    uploaded = upload_all(client, entries, args.concurrency)
    usable = [u for u in uploaded if u["document"] and u["document"]["status"] == "processed"]
    skipped = [u for u in uploaded if u not in usable]
    body: dict[str, Any] = {
        "name": args.name or f"{dataset.name} ({args.label_column})",
        "items": [
            {"document_id": u["document"]["document_id"], "expected_label": u["entry"].label}
            for u in usable
        ],
    }
    if args.schema:
        body["classification_schema"] = json.loads(Path(args.schema).read_text())
    else:
        body["classifier_id"] = args.classifier
    if args.model:
        body["query_model"] = args.model
    started = _check(client.post("/v1/evaluations", json=body))
    evaluation_id = started["evaluation_id"]
    with tqdm(total=started["total"], desc="classify", unit="doc") as bar:
        while True:
            state = _check(client.get(f"/v1/evaluations/{evaluation_id}"))
            bar.update(state["done"] - bar.n)
            if state["status"] in ("completed", "failed"):
                break
            time.sleep(1)
    if state["status"] == "failed":
        raise ApiError(f"evaluation failed: {state.get('error')}")
    by_document = {u["document"]["document_id"]: u for u in usable}
    items = [
        {
            "file": str(by_document[i["document_id"]]["entry"].path.relative_to(dataset)),
            "document_id": i["document_id"],
            "expected_label": i["expected_label"],
            "predicted_label": i["predicted_label"],
            "confidence": max((i["confidence_scores"] or {}).values(), default=None),
            "confidence_scores": i["confidence_scores"],
            "status": i["status"],
            "error": i["error"],
            "duration": i["duration"],
        }
        for i in state["items"]
    ]
    metrics = state["metrics"]
    return {
        "evaluation_id": evaluation_id,
        "name": body["name"],
        "dataset": str(dataset),
        "label_column": args.label_column,
        "model": state["model"],
        "n": metrics["n"],
        "failed": metrics["failed"],
        "not_uploaded": [
            {"file": str(u["entry"].path.relative_to(dataset)), "error": u["error"]}
            for u in skipped
        ],
        **{k: v for k, v in metrics.items() if k not in ("n", "failed")},
        "items": items,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evals.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", nargs="?")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--schema", help="JSON file with the classification schema")
    source.add_argument("--classifier", help="a saved classifier's id")
    parser.add_argument("--model")
    parser.add_argument(
        "--api-url", default=os.environ.get("DOCSIFT_API_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--api-key", default=os.environ.get("DOCSIFT_API_KEY"))
    parser.add_argument("--out", default="eval-report")
    parser.add_argument("--name")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--min-accuracy", type=float)
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two report.json files")
    args = parser.parse_args(argv)
    if not args.compare:
        if not args.dataset or not (args.schema or args.classifier):
            parser.error("give DATASET and one of --schema/--classifier (or --compare A B)")
        if not args.api_key:
            parser.error("give --api-key or set DOCSIFT_API_KEY")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        print(reporting.compare(a, b))
        return 0
    result = run(args)
    out = Path(args.out)
    reporting.write(result, out)
    print(reporting.markdown(result))
    print(f"report written to {out}/")
    if args.min_accuracy is not None and (result["accuracy"] or 0) < args.min_accuracy:
        print(
            f"accuracy {result['accuracy']} is below --min-accuracy {args.min_accuracy}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
