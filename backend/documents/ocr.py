"""Tesseract OCR through PyMuPDF, one page per job, in worker processes.

Measured on this code base's machines: PyMuPDF holds the GIL through OCR and rendering, and MuPDF's
Leptonica refuses two threads at once ("Attempt to use Leptonica from 2 threads at once"), so
threads give neither parallelism nor safety: OCR runs in a process pool (one worker per core).
This module stays light (PyMuPDF only) because every spawned worker imports it.
"""

import functools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pymupdf

log = logging.getLogger(__name__)

# MuPDF prints repairs of broken files to stderr; we report them through our own errors.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

# Guards OCR run in the calling process (no pool): Leptonica is not thread-safe.
_INLINE_LOCK = threading.Lock()


PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: a thread that ends this worker as soon as its parent is gone.

    A pool's workers otherwise outlive an API process that is SIGKILLed or OOM-killed (idle,
    each holding hundreds of MB). Not PR_SET_PDEATHSIG: it fires when the *thread* that started
    the worker ends, and pool workers may be started from short-lived threads."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="docsift-parent-watch", daemon=True).start()


def make_pool(workers: int = 0) -> ProcessPoolExecutor:
    """The OCR worker pool; "spawn" because forking a process that runs an event loop is unsafe.
    Its workers exit on their own when this process dies (`_exit_with_parent`)."""
    return ProcessPoolExecutor(
        max_workers=workers or os.cpu_count() or 1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def tessdata_for(language: str) -> str | None:
    """Tesseract's data folder if it holds every language of `language` ("eng", "eng+fra")."""
    return _tessdata_for(language, os.environ.get("TESSDATA_PREFIX"))


@functools.cache
def _tessdata_for(language: str, _prefix: str | None) -> str | None:
    try:
        folder = pymupdf.get_tessdata()  # TESSDATA_PREFIX, else asks the tesseract binary once
    except Exception as error:
        log.warning("OCR unavailable, pages without text stay empty: %s", error)
        return None
    missing = [
        lang for lang in language.split("+") if not (Path(folder) / f"{lang}.traineddata").exists()
    ]
    if missing:
        log.warning("OCR unavailable: no Tesseract data for %s in %s", ", ".join(missing), folder)
        return None
    return folder


def ocr_page(pdf: bytes, dpi: int, language: str, tessdata: str) -> str:
    """The text Tesseract reads on the only page of `pdf`, rendered at `dpi` (a worker job)."""
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        page = doc[0]
        textpage = page.get_textpage_ocr(dpi=dpi, full=True, language=language, tessdata=tessdata)
        return page.get_text(textpage=textpage)


def ocr_page_inline(pdf: bytes, dpi: int, language: str, tessdata: str) -> str:
    """`ocr_page` in the calling process, one at a time (tests and tools without a pool)."""
    with _INLINE_LOCK:
        return ocr_page(pdf, dpi, language, tessdata)
