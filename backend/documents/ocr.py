"""Tesseract OCR of one page per job, in worker processes.

A page is rendered by PyMuPDF and read by the `tesseract` program (PyMuPDF's built-in OCR when
the program is missing): the program takes options PyMuPDF's OCR has no way to pass, Sauvola's
local thresholding (a photo's shadows and dark surroundings no longer blank out a whole page)
and word confidences. With the language "auto" a page read poorly as English is read again with
each installed non-Latin script's language (Hebrew, Arabic, Cyrillic...), and the clearly more
confident reading is kept (Tesseract's own script detection, OSD, was measured and not used).

Measured on this code base's machines: PyMuPDF holds the GIL through OCR and rendering, and MuPDF's
Leptonica refuses two threads at once ("Attempt to use Leptonica from 2 threads at once"), so
threads give neither parallelism nor safety: OCR runs in a process pool (one worker per core).
This module stays light (PyMuPDF only) because every spawned worker imports it.
"""

import functools
import io
import logging
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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


# The language setting's automatic mode: English, and a page's own script when it reads poorly.
AUTO = "auto"
AUTO_BASE = "eng"
# Mean word confidence (0-100) of the English reading under which other scripts are tried: on
# docs-v1's 62 scanned pages, the two Hebrew ones read as English score 34 and 48, English pages
# 48-96 (photos and low-resolution images lowest).
SCRIPT_CHECK_CONFIDENCE = 60.0
# How much more confident a reading with another script's language must be to replace the
# English one: the Hebrew pages gain 22 and 31 with Hebrew, English pages at most 10.5 with any.
SCRIPT_GAIN = 15.0
# Scripts other than Latin, each read by its first language whose Tesseract data is installed.
# Tesseract's own script detection (OSD, `--psm 0`) was measured and not used: on docs-v1 it
# named Cyrillic, Greek or Arabic for 10 of 60 English pages and Latin for a Hebrew one.
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "Hebrew": ("heb",),
    "Arabic": ("ara", "fas", "urd"),
    "Cyrillic": ("rus", "ukr", "bul", "srp"),
    "Greek": ("ell",),
    "Han": ("chi_sim", "chi_tra"),
    "Japanese": ("jpn",),
    "Hangul": ("kor",),
    "Devanagari": ("hin", "mar", "nep"),
    "Thai": ("tha",),
    "Armenian": ("hye",),
    "Georgian": ("kat",),
}
# Tesseract's time grows with pixels and gains nothing past ~400 dpi on a Letter page; the cap
# keeps a huge page (PDF allows 200x200 inches) from allocating gigabytes.
MAX_PIXELS = 16_000_000
IMAGE_PAGE_SHARE = 0.5  # of a page's area an image covers for the page to count as that image
TESSERACT_SECONDS = 300  # one run on one page; a hung program must not hold a worker forever


def base_language(language: str) -> str:
    """The languages every page is read with: the setting's, or English for "auto"."""
    return AUTO_BASE if language.strip().lower() == AUTO else language


def tessdata_for(language: str) -> str | None:
    """Tesseract's data folder if it holds every language of `language` ("eng", "eng+fra"; for
    "auto", English)."""
    return _tessdata_for(base_language(language), os.environ.get("TESSDATA_PREFIX"))


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
    """The text Tesseract reads on the only page of `pdf`, rendered at `dpi` (a worker job).
    `language` "auto": English, then the page's script if English reads it poorly."""
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        page = doc[0]
        if _tesseract_program() is None:  # PyMuPDF's own Tesseract: no options, no OSD
            textpage = page.get_textpage_ocr(
                dpi=dpi, full=True, language=base_language(language), tessdata=tessdata
            )
            return page.get_text(textpage=textpage)
        png = _render(page, dpi)
    reading = read_words(png, dpi, base_language(language), tessdata)
    if language.strip().lower() != AUTO or not reading.text:
        return reading.text
    if reading.confidence >= SCRIPT_CHECK_CONFIDENCE:
        return reading.text
    # A poor English reading: each installed script is tried (English kept for the Latin words
    # such pages hold), and the clearly more confident reading wins.
    best, best_confidence = reading.text, reading.confidence + SCRIPT_GAIN
    for lang in script_languages(tessdata):
        other = read_words(png, dpi, f"{lang}+{AUTO_BASE}", tessdata)
        if other.confidence >= best_confidence:
            best, best_confidence = other.text, other.confidence
    return best


def _render(page: pymupdf.Page, dpi: int) -> bytes:
    """The page as a gray PNG at `dpi`. A page that is mostly one image of lower resolution (a
    scan, a photo, a screenshot) is rendered at the image's own resolution and enlarged with
    Lanczos resampling: MuPDF's own enlargement blurs small print enough to change digits."""
    native = _image_dpi(page)
    if native is None or native >= dpi * 0.9:
        return page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")
    from PIL import Image  # only here: most workers never need it

    zoom = native / 72
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
    image = Image.frombytes("L", (pixmap.width, pixmap.height), pixmap.samples)
    scale = dpi / native
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.LANCZOS).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _image_dpi(page: pymupdf.Page) -> float | None:
    """The resolution of the image covering at least IMAGE_PAGE_SHARE of the page, if any."""
    page_area = max(page.rect.width * page.rect.height, 1.0)
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"]) & page.rect
        area = box.width * box.height
        if area >= IMAGE_PAGE_SHARE * page_area and info["width"] and info["height"]:
            return 72 * math.sqrt(info["width"] * info["height"] / area)
    return None


def capped_dpi(rect: pymupdf.Rect, dpi: int, max_pixels: int = MAX_PIXELS) -> int:
    """`dpi`, lowered so the page renders to at most `max_pixels` pixels (at least 1 dpi)."""
    area_in2 = max(rect.width * rect.height, 1.0) / (72 * 72)
    return max(1, min(dpi, math.floor(math.sqrt(max_pixels / area_in2))))


@functools.cache
def script_languages(tessdata: str) -> list[str]:
    """One installed language per non-Latin script of SCRIPT_LANGUAGES."""
    installed = []
    for languages in SCRIPT_LANGUAGES.values():
        found = [lang for lang in languages if (Path(tessdata) / f"{lang}.traineddata").exists()]
        installed += found[:1]
    return installed


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # the words' mean, 0-100 (0 without words)


def read_words(png: bytes, dpi: int, language: str, tessdata: str) -> Reading:
    """What Tesseract reads on a page image. Lines come top to bottom, as a text layer usually
    gives them (a title at the top of a page comes first), not in Tesseract's block order,
    which may put a page's title after its columns."""
    tsv = _run(png, dpi, tessdata, ["-l", language, "-c", "thresholding_method=2", "tsv"])
    lines: dict[tuple[str, ...], list[str]] = {}
    boxes: dict[tuple[str, ...], tuple[int, int]] = {}
    confidences = []
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12:
            continue
        key = tuple(cells[1:5])  # page, block, paragraph, line
        if cells[0] == "4":
            boxes[key] = (int(cells[7]), int(cells[6]))  # top, left
        elif cells[0] == "5" and cells[11].strip():
            lines.setdefault(key, []).append(cells[11])
            confidences.append(float(cells[10]))
    order = sorted(lines, key=lambda key: boxes.get(key, (0, 0)))
    return Reading(
        "\n".join(" ".join(lines[key]) for key in order),
        statistics.fmean(confidences) if confidences else 0.0,
    )


def _run(png: bytes, dpi: int, tessdata: str, args: list[str]) -> str:
    program = _tesseract_program()
    assert program is not None
    result = subprocess.run(
        [program, "stdin", "stdout", "--dpi", str(dpi), "--tessdata-dir", tessdata, *args],
        input=png,
        capture_output=True,
        timeout=TESSERACT_SECONDS,
        # One thread: the pool already runs one page per core.
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace").strip()[-300:])
    return result.stdout.decode(errors="replace")


@functools.cache
def _tesseract_program() -> str | None:
    return shutil.which("tesseract")


def ocr_page_inline(pdf: bytes, dpi: int, language: str, tessdata: str) -> str:
    """`ocr_page` in the calling process, one at a time (tests and tools without a pool)."""
    with _INLINE_LOCK:
        return ocr_page(pdf, dpi, language, tessdata)
