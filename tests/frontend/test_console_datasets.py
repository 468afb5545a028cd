"""Labelled zips: one folder per label."""

import io
import zipfile

import pytest

from frontend.datasets import read_labelled_zip


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_label_is_the_folder_holding_the_file() -> None:
    data = make_zip(
        {
            "set/invoice/a.pdf": b"A",
            "set/invoice/b.pdf": b"B",
            "set/w9/c.png": b"C",
            "readme.txt": b"top level",
            "__MACOSX/set/invoice/._a.pdf": b"junk",
            "set/w9/.DS_Store": b"junk",
        }
    )
    labelled = read_labelled_zip(data)
    assert labelled.counts() == {"invoice": 2, "w9": 1}
    assert labelled.labels == ["invoice", "w9"]
    assert {(f.label, f.filename, f.content) for f in labelled.files} == {
        ("invoice", "a.pdf", b"A"),
        ("invoice", "b.pdf", b"B"),
        ("w9", "c.png", b"C"),
    }
    assert labelled.skipped == ["readme.txt (not inside a label folder)"]


def test_not_a_zip_is_a_readable_error() -> None:
    with pytest.raises(ValueError, match="not a valid zip"):
        read_labelled_zip(b"%PDF-1.7")
