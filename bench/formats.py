"""Real-world intake on ../shared/datasets/formats-v1, through the API, and conversion cost.

    python -m bench.formats [--skip-direct]

1. Conversion alone: every Office file through `office.convert` (LibreOffice, as the worker runs
   it), one at a time: seconds per document and per page, LibreOffice's peak memory, and the
   DocSift process's own resident memory sampled while it converts.
2. Through the API (DocSift in this process (its peak memory sampled throughout) on SQLite, its queue worker embedded, the `local`
   model): every file is uploaded and followed until it leaves `processing`; pages, readable
   characters, seconds from upload to processed; every e-mail's children against the manifest's
   attachments.
3. `local` zero-shot on the manifest's `kind` labels (evals/schemas/formats_kind.json) for every
   file, and for every e-mail attachment: accuracy per format.

Writes bench/results/formats.json and bench/results/formats.png.
"""

import argparse
import asyncio
import csv
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from backend.documents import office
from backend.documents.sniff import sniff

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO.parent / "shared" / "datasets" / "formats-v1"
SCHEMA = json.loads((REPO / "evals" / "schemas" / "formats_kind.json").read_text())
OUT = REPO / "bench" / "results"


def manifest() -> list[dict[str, str]]:
    with (DATASET / "MANIFEST.tsv").open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def attachments_of(row: dict[str, str]) -> dict[str, str]:
    """{filename: kind} of an e-mail's manifest row."""
    if row["attachments"] in ("-", "none", ""):
        return {}
    pairs = [part.rsplit(":", 1) for part in row["attachments"].split("; ")]
    return {name: kind for name, kind in pairs}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Peak resident memory of this process, and of it plus its children, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak_self = 0.0
        self.peak_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[str]:
        me = str(os.getpid())
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if stat.rsplit(") ", 1)[1].split()[1] == me:
                    found.append(entry.name)
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            own = _rss_mb()
            self.peak_self = max(self.peak_self, own)
            self.peak_total = max(self.peak_total, own + sum(_rss_mb(c) for c in self._children()))
            time.sleep(0.05)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def direct_conversions(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    import pymupdf

    binary = office.soffice_binary()
    assert binary, "LibreOffice is not installed (bash .ci/setup)"
    results = []
    for row in rows:
        data = (DATASET / row["file"]).read_bytes()
        kind = sniff(data)
        if kind is None or kind.kind != "office":
            continue
        with RssSampler() as sampler:
            converted = office.convert(data, kind, timeout=300, binary=binary)
        with pymupdf.open(stream=converted.pdf, filetype="pdf") as pdf:
            pages = pdf.page_count
        results.append(
            {
                "file": row["file"],
                "format": row["format"],
                "pages": pages,
                "seconds": round(converted.seconds, 3),
                "seconds_per_page": round(converted.seconds / pages, 3),
                "libreoffice_peak_rss_mb": round(converted.peak_rss_mb, 1),
                "docsift_rss_mb_while_converting": round(sampler.peak_self, 1),
                "total_rss_mb_while_converting": round(sampler.peak_total, 1),
            }
        )
        print(f"converted {row['file']}: {pages} pages in {converted.seconds:.1f} s", flush=True)
    return results


async def through_api(rows: list[dict[str, str]]) -> dict[str, Any]:
    from backend.accounts.service import create_account
    from backend.config import Settings
    from backend.main import create_app

    work = Path(tempfile.mkdtemp(prefix="docsift-bench-formats-"))
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{work / 'docsift.db'}",
        storage_dir=work / "files",
        default_model="local",
        rate_limit_per_minute=0,
        log_json=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.docsift
        async with state.sessionmaker() as session:
            _, key = await create_account(
                session, name="bench", credits=100_000, key_prefix=settings.api_key_prefix
            )
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"x-api-key": key}, timeout=600
        ) as client:
            files = []
            for row in rows:
                files.append(await _one_file(client, row))
                print(
                    f"{row['file']}: {files[-1]['status']}, {files[-1]['pages']} pages", flush=True
                )
    return {"files": files}


async def _follow(client: httpx.AsyncClient, document_id: str) -> dict[str, Any]:
    while True:
        document = (await client.get(f"/v1/documents/{document_id}")).json()
        if document["status"] != "processing":
            return document
        await asyncio.sleep(0.1)


async def _texts(client: httpx.AsyncClient, document: dict[str, Any]) -> list[str]:
    return [
        (await client.get(f"/v1/documents/{document['document_id']}/pages/{n}")).json()["text"]
        for n in range(1, document["num_pages"] + 1)
    ]


async def _classify(client: httpx.AsyncClient, document_id: str) -> str | None:
    response = await client.post(
        "/v1/classify",
        json={"document_id": document_id, "classification_schema": SCHEMA, "query_model": "local"},
    )
    return response.json()["classification"] if response.status_code == 200 else None


async def _one_file(client: httpx.AsyncClient, row: dict[str, str]) -> dict[str, Any]:
    path = DATASET / row["file"]
    started = time.monotonic()
    response = await client.post("/v1/documents", files={"file": (path.name, path.read_bytes())})
    answered = time.monotonic() - started
    if response.status_code != 201:
        return {"file": row["file"], "format": row["format"], "status": response.status_code,
                "error": response.text[:300], "pages": 0}  # fmt: skip
    document = await _follow(client, response.json()["document_id"])
    done = time.monotonic() - started
    texts = await _texts(client, document)
    result: dict[str, Any] = {
        "file": row["file"],
        "format": row["format"],
        "kind": row["kind"],
        "status": document["status"],
        "error": document["error"],
        "pages": document["num_pages"],
        "chars": sum(len(t.strip()) for t in texts),
        "upload_answer_seconds": round(answered, 3),
        "seconds_to_processed": round(done, 3),
        "predicted": await _classify(client, document["document_id"]),
        "children": [],
    }
    expected = attachments_of(row)
    for child in document["children"]:
        child = await _follow(client, child["document_id"])
        child_texts = await _texts(client, child)
        result["children"].append(
            {
                "filename": child["filename"],
                "status": child["status"],
                "pages": child["num_pages"],
                "chars": sum(len(t.strip()) for t in child_texts),
                "kind": expected.get(child["filename"]),
                "predicted": await _classify(client, child["document_id"]),
            }
        )
    result["attachments_expected"] = sorted(expected)
    result["attachments_found"] = sorted(c["filename"] for c in result["children"])
    return result


def summarize(direct: list[dict[str, Any]], api: dict[str, Any]) -> dict[str, Any]:
    files = api["files"]
    by_format: dict[str, dict[str, Any]] = {}
    for item in files:
        entry = by_format.setdefault(item["format"], {"files": 0, "correct": 0, "processed": 0})
        entry["files"] += 1
        entry["processed"] += item["status"] == "processed"
        entry["correct"] += item.get("predicted") == item.get("kind")
    for fmt, entry in by_format.items():
        entry["accuracy"] = round(entry["correct"] / entry["files"], 3)
        seconds = [d["seconds"] for d in direct if d["format"] == fmt]
        per_page = [d["seconds_per_page"] for d in direct if d["format"] == fmt]
        if seconds:
            entry["conversion_seconds_median"] = round(statistics.median(seconds), 2)
            entry["conversion_seconds_p90"] = round(percentile(seconds, 0.9), 2)
            entry["conversion_seconds_per_page_median"] = round(statistics.median(per_page), 2)
            entry["conversion_seconds_per_page_p90"] = round(percentile(per_page, 0.9), 2)
        to_processed = [
            f["seconds_to_processed"]
            for f in files
            if f["format"] == fmt and "seconds_to_processed" in f
        ]
        entry["upload_to_processed_seconds_median"] = round(statistics.median(to_processed), 2)
        entry["upload_to_processed_seconds_p90"] = round(percentile(to_processed, 0.9), 2)
    children = [c for f in files for c in f["children"] if c["kind"]]
    every_attachment = all(f["attachments_expected"] == f["attachments_found"] for f in files)
    total = len(files)
    return {
        "files": total,
        "processed": sum(f["status"] == "processed" for f in files),
        "with_pages_and_text": sum(f["status"] == "processed" and f["pages"] > 0 and f["chars"] > 0 for f in files),
        "accuracy": round(sum(f.get("predicted") == f.get("kind") for f in files) / total, 3),
        "attachments": len(children),
        "attachments_processed": sum(c["status"] == "processed" for c in children),
        "attachment_accuracy": round(sum(c["predicted"] == c["kind"] for c in children) / max(1, len(children)), 3),
        "every_attachment_is_a_child": every_attachment,
        "by_format": by_format,
        "libreoffice_peak_rss_mb_max": max((d["libreoffice_peak_rss_mb"] for d in direct), default=None),
        "docsift_rss_mb_while_converting_max": max((d["docsift_rss_mb_while_converting"] for d in direct), default=None),
        "total_rss_mb_while_converting_max": max((d["total_rss_mb_while_converting"] for d in direct), default=None),
    }  # fmt: skip


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = sorted(summary["by_format"])
    stats = summary["by_format"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(formats, [stats[f]["accuracy"] for f in formats], color="#4c72b0")
    left.set_ylim(0, 1.15)
    left.set_title("local zero-shot accuracy on `kind`, per format")
    for i, f in enumerate(formats):
        left.text(
            i,
            stats[f]["accuracy"] + 0.02,
            f"{stats[f]['correct']}/{stats[f]['files']}",
            ha="center",
        )
    office_formats = [f for f in formats if "conversion_seconds_median" in stats[f]]
    medians = [stats[f]["conversion_seconds_median"] for f in office_formats]
    p90s = [stats[f]["conversion_seconds_p90"] for f in office_formats]
    x = range(len(office_formats))
    right.bar([i - 0.2 for i in x], medians, width=0.4, label="median")
    right.bar([i + 0.2 for i in x], p90s, width=0.4, label="p90")
    right.set_xticks(list(x), office_formats)
    right.set_ylabel("seconds per document")
    right.set_title("LibreOffice conversion time")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-direct", action="store_true", help="only the API part")
    args = parser.parse_args()
    rows = manifest()
    direct = [] if args.skip_direct else direct_conversions(rows)
    with RssSampler() as sampler:
        api = asyncio.run(through_api(rows))
    summary = summarize(direct, api)
    # The API process with its embedded queue worker (and the `local` model loaded) converting
    # and extracting the dataset, alone and with its LibreOffice child.
    summary["api_worker_peak_rss_mb"] = round(sampler.peak_self, 1)
    summary["api_worker_with_libreoffice_peak_rss_mb"] = round(sampler.peak_total, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"summary": summary, "conversions": direct, **api, "schema": SCHEMA}
    (OUT / "formats.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot(summary, OUT / "formats.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
