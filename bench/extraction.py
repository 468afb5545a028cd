"""Document extraction on docs-v1: text-layer speed against bare PyMuPDF, OCR seconds per page,
and how many files are processed, need OCR, fail or are refused.

    python -m bench.extraction            # writes bench/results/extraction.json (~5 minutes)

Our side is `backend.documents.service.extract_pages`, the code the server runs (sniffing,
validation, the text layer in a thread, OCR in a 2-process pool); the baseline is a bare
`pymupdf.open(...)` + `page.get_text()` loop over the same text PDFs. While each runs, a ticker task
measures how late the event loop wakes up: the server's other requests would wait that long.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import csv
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pymupdf
from anyio import to_thread

from backend.config import Settings
from backend.documents import ocr
from backend.documents.extraction import OcrJob, read_text_layer, render_page
from backend.documents.service import extract_pages, limits
from backend.documents.sniff import FileKind, sniff
from backend.errors import ApiError, UnsupportedFile
from bench.harness import write_result

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "docs-v1"
T = TypeVar("T")


@dataclass
class FileInfo:
    name: str
    data: bytes
    kind: FileKind | None
    pages: int = 0
    ocr_jobs: list[OcrJob] = field(default_factory=list)
    refused: str | None = None  # error code of a clean 4xx
    failed: str | None = None  # an unexpected exception: would be a failed document


def survey(settings: Settings, tessdata: str | None) -> list[FileInfo]:
    """Every docs-v1 file, sniffed and validated, with the OCR jobs its pages need."""
    with (DATASET / "MANIFEST.tsv").open() as handle:
        names = [row["file"] for row in csv.DictReader(handle, delimiter="\t")]
    files = []
    for name in names:
        data = (DATASET / name).read_bytes()
        info = FileInfo(name, data, sniff(data))
        try:
            if info.kind is None or info.kind.kind == "zip":
                raise UnsupportedFile("not a single document")
            layer = read_text_layer(
                data,
                info.kind,
                limits(settings),
                min_text_chars=settings.min_text_chars,
                ocr_dpi=settings.ocr_dpi if tessdata else None,
            )
            info.pages, info.ocr_jobs = len(layer.pages), layer.ocr_jobs
        except ApiError as error:
            info.refused = error.code
        except Exception as error:
            info.failed = repr(error)
        files.append(info)
    return files


async def with_loop_lag(work: Awaitable[T]) -> tuple[T, float]:
    """Run `work` and return its result and the event loop's worst lateness (ms) meanwhile."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - started - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        return await work, round(worst * 1000, 1)
    finally:
        done.set()
        await tick


def bare_pages(data: bytes) -> int:
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for page in doc:
            page.get_text()
        return doc.page_count


async def text_speed(files: list[FileInfo], settings: Settings, rounds: int) -> dict[str, Any]:
    """Pages per second on the PDFs that need no OCR: ours vs bare PyMuPDF (best of `rounds`)."""
    text_pdfs = [f for f in files if f.kind and f.kind.kind == "pdf" and f.pages and not f.ocr_jobs]
    pages = sum(f.pages for f in text_pdfs)

    async def ours() -> float:
        started = time.perf_counter()
        for info in text_pdfs:
            assert info.kind is not None
            await extract_pages(info.data, info.kind, settings, None)
        return time.perf_counter() - started

    ours_times, bare_times, lags = [], [], []
    for _ in range(rounds):  # interleaved, so machine load hits both alike
        started = time.perf_counter()
        for info in text_pdfs:
            bare_pages(info.data)
        bare_times.append(time.perf_counter() - started)
        seconds, lag = await with_loop_lag(ours())
        ours_times.append(seconds)
        lags.append(lag)
    ours_pps, bare_pps = pages / min(ours_times), pages / min(bare_times)
    return {
        "files": len(text_pdfs),
        "pages": pages,
        "rounds": rounds,
        "ours_pages_per_s": round(ours_pps, 1),
        "bare_pymupdf_pages_per_s": round(bare_pps, 1),
        "ratio": round(ours_pps / bare_pps, 3),
        "goal_ratio": 0.8,
        "loop_max_lag_ms": max(lags),
    }


async def ocr_latency(
    files: list[FileInfo], settings: Settings, tessdata: str, pool: Any
) -> dict[str, Any]:
    """Seconds for each OCR page alone (one job at a time in a warm worker)."""
    loop = asyncio.get_running_loop()
    times = []
    for info in files:
        for job in info.ocr_jobs:
            started = time.perf_counter()
            await loop.run_in_executor(
                pool, ocr.ocr_page, job.pdf, job.dpi, settings.ocr_language, tessdata
            )
            times.append(time.perf_counter() - started)
    times.sort()
    return {
        "pages": len(times),
        "median_s_per_page": round(statistics.median(times), 2),
        "p90_s_per_page": round(times[int(0.9 * (len(times) - 1))], 2),
        "max_s_per_page": round(times[-1], 2),
        "mean_s_per_page": round(statistics.fmean(times), 2),
    }


async def ocr_throughput(
    files: list[FileInfo], settings: Settings, pool: Any, *, workers: int, concurrency: int
) -> dict[str, Any]:
    """Wall time to extract every document that needs OCR, `concurrency` documents at a time
    (as a zip upload does), pages in parallel across the pool's workers."""
    needing = [f for f in files if f.ocr_jobs]
    slots = asyncio.Semaphore(concurrency)
    read: list[int] = []

    async def one(info: FileInfo) -> None:
        assert info.kind is not None
        async with slots:
            pages = await extract_pages(info.data, info.kind, settings, pool)
            read.append(sum(1 for p in pages if p.ocr))

    async def everything() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(f) for f in needing))
        return time.perf_counter() - started

    seconds, lag = await with_loop_lag(everything())
    pages = sum(len(f.ocr_jobs) for f in needing)
    return {
        "documents": len(needing),
        "ocr_pages": pages,
        "ocr_pages_read": sum(read),
        "workers": workers,
        "documents_at_once": concurrency,
        "wall_s": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 3),
        "wall_s_per_page": round(seconds / pages, 2),
        "loop_max_lag_ms": lag,
    }


def gil_check(files: list[FileInfo], settings: Settings, tessdata: str) -> dict[str, Any]:
    """Does PyMuPDF release the GIL? Two threads against the same work done twice in one."""
    pdfs = [f.data for f in files if f.kind and f.kind.kind == "pdf" and not f.ocr_jobs][:20]

    def render_all() -> None:
        for data in pdfs:
            with pymupdf.open(stream=data, filetype="pdf") as doc:
                doc[0].get_pixmap(dpi=150)

    started = time.perf_counter()
    render_all()
    render_all()
    one_thread = time.perf_counter() - started
    threads = [threading.Thread(target=render_all) for _ in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two_threads = time.perf_counter() - started

    job = next(job for f in files for job in f.ocr_jobs)
    errors: list[str] = []

    def ocr_unlocked() -> None:
        try:
            ocr.ocr_page(job.pdf, job.dpi, settings.ocr_language, tessdata)
        except Exception as error:
            errors.append(str(error))

    threads = [threading.Thread(target=ocr_unlocked) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "render_speedup_with_2_threads": round(one_thread / two_threads, 2),
        "ocr_errors_with_2_threads": sorted(set(errors)),
    }


async def preview_lag(files: list[FileInfo], settings: Settings) -> dict[str, Any]:
    """The event loop's worst lateness while previews render in a thread (as the route does)."""
    pdfs = [f for f in files if f.kind and f.kind.kind == "pdf" and not f.ocr_jobs][:20]

    async def render_all() -> float:
        started = time.perf_counter()
        for info in pdfs:
            assert info.kind is not None
            await to_thread.run_sync(render_page, info.data, info.kind, limits(settings), 1, 200)
        return (time.perf_counter() - started) / len(pdfs)

    seconds, lag = await with_loop_lag(render_all())
    return {"dpi": 200, "pages": len(pdfs), "mean_s": round(seconds, 3), "loop_max_lag_ms": lag}


async def main(rounds: int, workers: int) -> dict[str, Any]:
    settings = Settings(_env_file=None)
    tessdata = ocr.tessdata_for(settings.ocr_language)
    assert tessdata, "Tesseract with its language data is needed"
    started = time.perf_counter()
    files = survey(settings, tessdata)
    survey_s = time.perf_counter() - started
    pool = ocr.make_pool(workers)
    try:
        # Warm the workers (PyMuPDF import, Tesseract's first load) outside the timings.
        warm = next(job for f in files for job in f.ocr_jobs)
        await asyncio.gather(
            *(
                asyncio.wrap_future(
                    pool.submit(ocr.ocr_page, warm.pdf, warm.dpi, settings.ocr_language, tessdata)
                )
                for _ in range(workers)
            )
        )
        text = await text_speed(files, settings, rounds)
        previews = await preview_lag(files, settings)
        latency = await ocr_latency(files, settings, tessdata, pool)
        throughput = await ocr_throughput(files, settings, pool, workers=workers, concurrency=2)
    finally:
        pool.shutdown(cancel_futures=True)
    kinds = Counter(f.kind.content_type if f.kind else "unknown" for f in files)
    return {
        "dataset": "docs-v1",
        "settings": {
            "ocr_dpi": settings.ocr_dpi,
            "min_text_chars": settings.min_text_chars,
            "ocr_language": settings.ocr_language,
            "max_pages": settings.max_pages,
            "max_image_pixels": settings.max_image_pixels,
        },
        "counts": {
            "files": len(files),
            "by_type": dict(kinds),
            "processed": sum(1 for f in files if not f.refused and not f.failed),
            "needed_ocr": sum(1 for f in files if f.ocr_jobs),
            "ocr_pages": sum(len(f.ocr_jobs) for f in files),
            "pages": sum(f.pages for f in files),
            "refused": {f.name: f.refused for f in files if f.refused},
            "failed": {f.name: f.failed for f in files if f.failed},
        },
        "survey_s": round(survey_s, 2),
        "text_pdfs": text,
        "ocr_latency": latency,
        "ocr_throughput": throughput,
        "previews": previews,
        "gil": gil_check(files, settings, tessdata),
        "machine": {"cpus": os.cpu_count()},
        "command": f"python -m bench.extraction --rounds {rounds} --workers {workers}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="text-speed rounds (best is kept)")
    parser.add_argument("--workers", type=int, default=2, help="OCR worker processes")
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.workers))
    path = write_result("extraction", result)
    print(path.read_text())
