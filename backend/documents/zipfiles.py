"""Zip archives, read defensively: a zip bomb is refused from its directory before any inflating,
and every entry is inflated in bounded chunks that stop at the declared size."""

import io
import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from backend.errors import PayloadTooLarge, UnsupportedFile

CHUNK = 1 << 16


@dataclass(frozen=True)
class ZipEntry:
    name: str  # the entry's base name only: never a path
    data: bytes


def _skipped(info: zipfile.ZipInfo) -> bool:
    parts = info.filename.replace("\\", "/").split("/")
    return info.is_dir() or "__MACOSX" in parts or parts[-1].startswith(".")


def safe_name(name: str) -> str:
    base = posixpath.basename(name.replace("\\", "/"))
    return base or "unnamed"


def iter_zip(data: bytes, *, max_entries: int, max_total_bytes: int) -> Iterator[ZipEntry]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise UnsupportedFile(f"The zip archive is corrupt: {error}.") from None
    infos = [i for i in archive.infolist() if not _skipped(i)]
    if not infos:
        raise UnsupportedFile("The zip archive holds no files.")
    if len(infos) > max_entries:
        raise PayloadTooLarge(f"The zip holds {len(infos)} files; the limit is {max_entries}.")
    declared = sum(i.file_size for i in infos)
    if declared > max_total_bytes:
        raise PayloadTooLarge(
            f"The zip would expand to {declared // 2**20} MB; the limit is {max_total_bytes // 2**20} MB."
        )
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnsupportedFile(f"Zip entry '{safe_name(info.filename)}' is encrypted.")
        yield ZipEntry(safe_name(info.filename), _read_bounded(archive, info))


def _read_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Inflate one entry, refusing it the moment it outgrows its declared size (a lying header)."""
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK):
                out += chunk
                if len(out) > info.file_size:
                    raise PayloadTooLarge(
                        f"Zip entry '{safe_name(info.filename)}' is larger than declared."
                    )
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as error:
        raise UnsupportedFile(
            f"Zip entry '{safe_name(info.filename)}' is corrupt: {error}."
        ) from None
    return bytes(out)
