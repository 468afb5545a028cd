"""Evaluate a DocSift classifier on a labelled folder through the REST API.

    python -m evals.run DATASET (--schema FILE.json | --classifier ID) [--model M]
        [--input-mode text|image|text+image|auto]
        [--api-url URL] [--api-key KEY] [--out DIR] [--min-accuracy X] [--label-column label]
        [--concurrency N] [--reuse OLD/report.json]
    python -m evals.run --compare A/report.json B/report.json

DATASET has a MANIFEST.tsv (`file` and label columns, as ../shared/datasets/docs-v1) or one
subfolder per label. Each file is uploaded (text extraction and OCR happen on the server; with
--reuse, documents of an earlier report that are still on the server are used again), the
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

POLL_SECONDS = 1.0
POLL_RETRIES = 30  # connection errors tolerated while polling (a server restart resumes the run)


class ApiError(SystemExit):
    """An API error ends the script with its message."""


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body.get('error')}: {body.get('message')}"
        except ValueError:
            message = response.text[:300]
        raise ApiError(f"API error {response.status_code}: {message}")
    return response.json()


def _reusable(client: httpx.Client, previous: Path | None) -> dict[str, dict[str, Any]]:
    """Documents of an earlier report still on the server, by file: {file: document}."""
    if previous is None:
        return {}
    found = {}
    for item in json.loads(previous.read_text()).get("items", []):
        response = client.get(f"/v1/documents/{item['document_id']}")
        if response.status_code == 200 and response.json()["status"] == "processed":
            found[item["file"]] = response.json()
    return found


def upload_all(
    client: httpx.Client,
    entries: list[Entry],
    dataset: Path,
    concurrency: int,
    reuse: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Upload every file (or reuse its earlier document); one record per entry."""
    reuse = reuse or {}

    def upload(entry: Entry) -> dict[str, Any]:
        known = reuse.get(str(entry.path.relative_to(dataset)))
        if known and known.get("size_bytes") == entry.path.stat().st_size:
            return {"entry": entry, "document": known, "error": None, "reused": True}
        with entry.path.open("rb") as handle:
            response = client.post(
                "/v1/documents", files={"file": (entry.path.name, handle)}, timeout=900
            )
        if response.status_code >= 400:
            return {"entry": entry, "document": None, "error": response.text[:300]}
        body = response.json()
        document = body["documents"][0] if "documents" in body else body
        document = _until_converted(client, document)
        return {"entry": entry, "document": document, "error": document.get("error")}

    with (
        ThreadPoolExecutor(max(1, concurrency)) as pool,
        tqdm(total=len(entries), desc="upload", unit="doc") as bar,
    ):
        results = []
        for result in pool.map(upload, entries):
            results.append(result)
            bar.update()
    return results


def _until_converted(client: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    """An Office file is converted on the server's queue: wait until it is processed or failed."""
    while document.get("status") == "processing":
        time.sleep(POLL_SECONDS)
        document = _check(client.get(f"/v1/documents/{document['document_id']}"))
    return document


def follow(client: httpx.Client, evaluation_id: str, total: int) -> dict[str, Any]:
    """Poll the run with a progress bar until it ends; returns its final state."""
    failures = 0
    with tqdm(total=total, desc="classify", unit="doc") as bar:
        while True:
            try:
                state = _check(client.get(f"/v1/evaluations/{evaluation_id}"))
                failures = 0
            except httpx.TransportError:
                failures += 1
                if failures > POLL_RETRIES:
                    raise
                time.sleep(POLL_SECONDS)
                continue
            bar.update(state["done"] - bar.n)
            if state["status"] in ("completed", "failed"):
                return state
            time.sleep(POLL_SECONDS)


def _processed(upload: dict[str, Any]) -> bool:
    return bool(upload["document"]) and upload["document"]["status"] == "processed"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Upload, evaluate server-side, and assemble the report."""
    dataset = Path(args.dataset)
    entries = read_dataset(dataset, args.label_column)
    client = httpx.Client(base_url=args.api_url, headers={"x-api-key": args.api_key}, timeout=60)
    reuse = _reusable(client, Path(args.reuse) if args.reuse else None)
    uploaded = upload_all(client, entries, dataset, args.concurrency, reuse)
    usable = [u for u in uploaded if _processed(u)]
    skipped = [u for u in uploaded if not _processed(u)]
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
    if args.input_mode:
        body["input_mode"] = args.input_mode
    started = time.perf_counter()
    accepted = _check(client.post("/v1/evaluations", json=body))
    state = follow(client, accepted["evaluation_id"], accepted["total"])
    wall = time.perf_counter() - started
    if state["status"] == "failed":
        raise ApiError(f"evaluation failed: {state.get('error')}")
    return reporting.build(
        state,
        name=body["name"],
        dataset=str(dataset),
        label_column=args.label_column,
        files=[str(u["entry"].path.relative_to(dataset)) for u in usable],  # in item order
        not_uploaded=[
            {"file": str(u["entry"].path.relative_to(dataset)), "error": u["error"]}
            for u in skipped
        ],
        reused=sum(1 for u in usable if u.get("reused")),
        wall_seconds=round(wall, 1),
    )


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
    parser.add_argument("--model", help="query_model (default: the classifier's or the server's)")
    parser.add_argument(
        "--api-url", default=os.environ.get("DOCSIFT_API_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument(
        "--input-mode",
        choices=["text", "image", "text+image", "auto"],
        help="what the model reads (default: the classifier's, else text); run once with text "
        "and once with image, then --compare the two reports",
    )
    parser.add_argument("--api-key", default=os.environ.get("DOCSIFT_API_KEY"))
    parser.add_argument("--out", default="eval-report", help="folder for the report and plots")
    parser.add_argument("--name", help="the run's name (default: dataset and label column)")
    parser.add_argument("--label-column", default="label", help="MANIFEST.tsv column to use")
    parser.add_argument("--concurrency", type=int, default=2, help="parallel uploads")
    parser.add_argument("--reuse", help="an earlier report.json whose documents to use again")
    parser.add_argument("--min-accuracy", type=float, help="exit 1 when accuracy is below")
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
