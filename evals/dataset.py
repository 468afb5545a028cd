"""Labelled datasets: a folder with a MANIFEST.tsv (`file`, `label`, other label columns) or one
subfolder per label."""

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    path: Path
    label: str


def read_dataset(folder: Path, label_column: str = "label") -> list[Entry]:
    """The labelled files of a dataset folder, in a stable order."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder")
    manifest = folder / "MANIFEST.tsv"
    if manifest.exists():
        with manifest.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if rows and label_column not in rows[0]:
            raise SystemExit(f"{manifest} has no column '{label_column}'")
        return [
            Entry(folder / row["file"], row[label_column]) for row in rows if row.get(label_column)
        ]
    entries = [
        Entry(path, sub.name)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(sub.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    ]
    if not entries:
        raise SystemExit(f"{folder} has neither a MANIFEST.tsv nor label subfolders with files")
    return entries
