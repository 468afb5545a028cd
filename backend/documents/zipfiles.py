"""Zip archives, read defensively.

A zip bomb is refused from the central directory (entry count, declared sizes) before anything is
inflated; then each entry is inflated in bounded chunks that stop at its declared size and at the
archive's total, so a lying directory cannot get past them either. Nothing is written to disk
under an entry's name: entries become documents in memory, named by their base name only.
"""

import io
import posixpath
import stat
import struct
import threading
import zipfile
from dataclasses import dataclass

from backend.errors import PayloadTooLarge, UnsupportedFile

CHUNK = 1 << 16
# Folders and macOS "._" companions are listed too, so the raw directory may hold a few times the
# entries we take; past this factor the directory is refused before Python even parses it.
RAW_ENTRIES_FACTOR = 4
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


class ArchiveTooLarge(PayloadTooLarge):
    """The whole archive is refused (not just one entry)."""


@dataclass(frozen=True)
class ZipMember:
    name: str  # the entry's base name only: never a path
    info: zipfile.ZipInfo

    @property
    def declared_size(self) -> int:
        return self.info.file_size


class ZipReader:
    """A zip's document entries, checked against the limits from its directory alone."""

    def __init__(self, data: bytes, *, max_entries: int, max_total_bytes: int) -> None:
        listed = listed_entries(data)
        if listed is not None and listed > max_entries * RAW_ENTRIES_FACTOR:
            raise ArchiveTooLarge(
                f"The zip lists {listed} entries; at most {max_entries} files are taken."
            )
        try:
            self._archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
            raise UnsupportedFile(f"The zip archive is corrupt: {error}.") from None
        self.members = [
            ZipMember(safe_name(info.filename), info)
            for info in self._archive.infolist()
            if not _skipped(info)
        ]
        if not self.members:
            raise UnsupportedFile("The zip archive holds no files.")
        if len(self.members) > max_entries:
            raise ArchiveTooLarge(
                f"The zip holds {len(self.members)} files; the limit is {max_entries}."
            )
        declared = sum(m.declared_size for m in self.members)
        if declared > max_total_bytes:
            raise ArchiveTooLarge(
                f"The zip would expand to {declared / 2**20:,.0f} MB; "
                f"the limit is {max_total_bytes / 2**20:,.0f} MB."
            )
        self._max_total = max_total_bytes
        self._inflated = 0
        self._lock = threading.Lock()  # one shared file position: entries are read one at a time

    def read(self, member: ZipMember, *, max_bytes: int) -> bytes:
        """Inflate one entry. An entry that is encrypted, corrupt or over `max_bytes` raises an
        ApiError the caller keeps as a failed document; ArchiveTooLarge refuses the whole zip."""
        if member.info.flag_bits & 0x1:
            raise UnsupportedFile(f"Zip entry '{member.name}' is encrypted.")
        if member.declared_size > max_bytes:
            raise PayloadTooLarge(
                f"Zip entry '{member.name}' is {member.declared_size / 2**20:,.1f} MB; "
                f"the limit for one file is {max_bytes / 2**20:,.0f} MB."
            )
        out = bytearray()
        with self._lock:
            try:
                with self._archive.open(member.info) as stream:
                    while chunk := stream.read(CHUNK):
                        out += chunk
                        self._inflated += len(chunk)
                        if len(out) > member.declared_size:
                            raise UnsupportedFile(
                                f"Zip entry '{member.name}' is larger than its header says."
                            )
                        if self._inflated > self._max_total:
                            raise ArchiveTooLarge(
                                "The zip expands past the limit of "
                                f"{self._max_total / 2**20:,.0f} MB."
                            )
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError) as error:
                raise UnsupportedFile(f"Zip entry '{member.name}' is corrupt: {error}.") from None
            except NotImplementedError as error:  # an unsupported compression method
                raise UnsupportedFile(f"Zip entry '{member.name}': {error}.") from None
        return bytes(out)

    def close(self) -> None:
        self._archive.close()


def _skipped(info: zipfile.ZipInfo) -> bool:
    """Folders, macOS metadata, hidden files and symbolic links are not documents."""
    parts = info.filename.replace("\\", "/").split("/")
    is_link = stat.S_ISLNK(info.external_attr >> 16)
    return info.is_dir() or is_link or "__MACOSX" in parts or parts[-1].startswith(".")


def safe_name(name: str) -> str:
    """An entry's base name: `../../etc/x.pdf` and `C:\\x.pdf` both become `x.pdf`."""
    return posixpath.basename(name.replace("\\", "/")) or "unnamed"


def listed_entries(data: bytes) -> int | None:
    """The entry count the end-of-directory record declares (zip64 included), if it has one."""
    end = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack_from("<H", data, end + 10)
    locator = end - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if data[offset : offset + 4] == _ZIP64_EOCD and offset + 56 <= len(data):
            (count,) = struct.unpack_from("<Q", data, offset + 32)
    return count
