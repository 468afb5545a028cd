"""Labelled sets from a zip with one folder per label (`invoice/a.pdf`, `set/w9/b.png`...)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

MAX_TOTAL_BYTES = 500 * 1024 * 1024  # refuse zip bombs before reading them into memory


@dataclass(frozen=True)
class LabelledFile:
    """One file of the set and the label its folder gives it."""

    label: str
    filename: str
    content: bytes = field(repr=False)


@dataclass
class LabelledSet:
    """The files of a labelled zip and the entries that were left out (with why)."""

    files: list[LabelledFile]
    skipped: list[str]

    def counts(self) -> dict[str, int]:
        """Documents per label, by label name."""
        return dict(sorted(Counter(f.label for f in self.files).items()))

    @property
    def labels(self) -> list[str]:
        """The labels found, sorted."""
        return list(self.counts())


def _is_junk(path: PurePosixPath) -> bool:
    """Finder and Explorer leftovers, hidden files."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts) or (
        path.name.lower() in {"thumbs.db", "desktop.ini"}
    )


def read_labelled_zip(data: bytes) -> LabelledSet:
    """Each file's label is the name of the folder holding it; files at the top level are skipped."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError("This file is not a valid zip archive.") from exc
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if sum(info.file_size for info in entries) > MAX_TOTAL_BYTES:
            raise ValueError("The zip expands to more than 500 MB; split it into smaller sets.")
        files: list[LabelledFile] = []
        skipped: list[str] = []
        for info in entries:
            path = PurePosixPath(info.filename)
            if _is_junk(path):
                continue
            if len(path.parts) < 2:
                skipped.append(f"{info.filename} (not inside a label folder)")
                continue
            files.append(LabelledFile(path.parent.name, path.name, archive.read(info)))
    return LabelledSet(files=files, skipped=skipped)
