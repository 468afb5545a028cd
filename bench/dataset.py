"""Read a labelled dataset (docs-v1's MANIFEST.tsv, or one folder per label) and extract its text
with DocSift's own extraction (OCR included), cached by file hash so experiments stay fast."""

import csv
import functools
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings
from backend.documents import extraction
from backend.documents.sniff import sniff

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "docs-v1"
CACHE = Path(os.environ.get("DOCSIFT_TEXT_CACHE", "/tmp/docsift-text-cache"))
LIMITS = extraction.Limits(max_pages=500, max_image_pixels=200_000_000)
OCR_LANGUAGE = Settings(_env_file=None).ocr_language  # the service's default
# The extraction code is part of the cache key: a change to how pages are read (OCR above all)
# re-extracts, so the benches measure the code they run.
EXTRACTION_CODE = [
    Path(extraction.__file__).parent / name for name in ("extraction.py", "ocr.py", "images.py")
]


@functools.cache
def extraction_version() -> str:
    code = b"".join(path.read_bytes() for path in EXTRACTION_CODE)
    return hashlib.sha256(code + OCR_LANGUAGE.encode()).hexdigest()[:12]


@dataclass
class Item:
    path: Path
    label: str
    label2: str | None
    pages: list[str]

    @property
    def text(self) -> str:
        return "\n\n".join(self.pages)


def manifest(folder: Path = DATASET) -> list[tuple[Path, str, str | None]]:
    manifest_path = folder / "MANIFEST.tsv"
    if manifest_path.exists():
        with manifest_path.open() as handle:
            return [
                (folder / row["file"], row["label"], row.get("label2"))
                for row in csv.DictReader(handle, delimiter="\t")
            ]
    return [
        (path, sub.name, None)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
        for path in sorted(sub.iterdir())
        if path.is_file()
    ]


def _extract(path: Path) -> list[str]:
    data = path.read_bytes()
    key = hashlib.sha256(data).hexdigest()
    cached = CACHE / f"{key}-{extraction_version()}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    kind = sniff(data)
    pages: list[str] = []
    if kind is not None and kind.kind != "zip":
        try:
            pages = [
                p.text
                for p in extraction.extract(
                    data,
                    kind,
                    LIMITS,
                    min_text_chars=20,
                    ocr=True,
                    ocr_dpi=200,
                    ocr_language=OCR_LANGUAGE,
                    pool=None,
                )
            ]
        except Exception:  # unreadable files count as empty documents
            pages = []
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(pages))
    return pages


def load(folder: Path = DATASET, workers: int = 2) -> list[Item]:
    rows = manifest(folder)
    with ProcessPoolExecutor(workers) as pool:
        texts = list(pool.map(_extract, [path for path, _, _ in rows]))
    return [
        Item(path, label, label2, pages)
        for (path, label, label2), pages in zip(rows, texts, strict=True)
    ]


if __name__ == "__main__":
    items = load()
    print(len(items), "documents;", sum(1 for i in items if not i.text.strip()), "without text")
