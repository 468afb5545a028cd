"""Uploaded files on disk: `<storage_dir>/<account id>/<document id>`, never a name from the upload.

Everything stored for a document is named by its id, so erasing a document needs no list of
what was made from it: `<account>/<id>` (the upload), `<account>/<id>.<ext>` (renditions: a
converted PDF, readable text) and `<account>/derived/<id>/` (page images and anything later).

Every file goes through `save`/`read`, which encrypt and decrypt when DOCSIFT_ENCRYPTION_KEY is
set (backend/documents/crypto.py).
"""

import os
import shutil
import tempfile
from pathlib import Path

from backend.documents.crypto import Cipher, decrypt

DERIVED = "derived"


class FileStore:
    def __init__(self, root: Path, cipher: Cipher | None = None) -> None:
        self.root = root
        self.cipher = cipher

    def _path(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses anything that would leave the root."""
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or path == root:
            raise ValueError(f"Storage path outside the storage folder: {relative!r}")
        return path

    def save(self, account_id: str, document_id: str, data: bytes) -> str:
        """Write atomically (temp file then rename), so a crash never leaves half a file.
        Returns the path relative to the root, which the document row keeps."""
        relative = f"{account_id}/{document_id}"
        self._write(relative, data)
        return relative

    def save_derived(self, account_id: str, document_id: str, name: str, data: bytes) -> str:
        """Store a file made from a document (e.g. `page-3.png`); erased and encrypted with it."""
        relative = f"{self.derived_dir(account_id, document_id)}/{name}"
        self._write(relative, data)
        return relative

    def _write(self, relative: str, data: bytes) -> None:
        target = self._path(relative)
        if self.cipher is not None:
            data = self.cipher.encrypt(data, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, relative: str) -> bytes:
        """The file's plain bytes; `UnreadableFile` if it cannot be decrypted."""
        return decrypt(self.cipher, self._path(relative).read_bytes(), relative)

    def all_files(self) -> list[str]:
        root = self.root.resolve()
        if not root.is_dir():
            return []
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".upload-")
        )

    def rotate(self) -> tuple[int, int]:
        """Rewrite every stored file with the current key (plain files get encrypted); returns
        (files rewritten, files already current). Safe to interrupt and run again."""
        if self.cipher is None:
            raise ValueError("DOCSIFT_ENCRYPTION_KEY is not set: nothing to rotate to.")
        rewritten = current = 0
        for relative in self.all_files():
            raw = self._path(relative).read_bytes()
            if self.cipher.is_current(raw):
                current += 1
                continue
            self._write(relative, decrypt(self.cipher, raw, relative))
            rewritten += 1
        return rewritten, current

    def size(self, relative: str) -> int:
        return self._path(relative).stat().st_size

    def delete(self, relative: str) -> None:
        self._path(relative).unlink(missing_ok=True)

    def derived_dir(self, account_id: str, document_id: str) -> str:
        """Where files made from a document live (e.g. `page-3.png`), relative to the root."""
        return f"{account_id}/{DERIVED}/{document_id}"

    def document_files(self, account_id: str, document_id: str) -> list[str]:
        """Every stored file named by the document's id (upload, renditions, derived files)."""
        folder = self._path(account_id)
        found: list[str] = []
        if not folder.is_dir():
            return found
        for entry in folder.iterdir():
            if entry.is_file() and (
                entry.name == document_id or entry.name.startswith(document_id + ".")
            ):
                found.append(f"{account_id}/{entry.name}")
        derived = self._path(self.derived_dir(account_id, document_id))
        if derived.is_dir():
            found += [
                str(p.relative_to(self.root.resolve())) for p in derived.rglob("*") if p.is_file()
            ]
        return sorted(found)

    def purge_document(self, account_id: str, document_id: str) -> tuple[int, int]:
        """Remove every file named by the document's id; returns (files, bytes) removed."""
        files = self.document_files(account_id, document_id)
        size = 0
        for relative in files:
            path = self._path(relative)
            size += path.stat().st_size
            path.unlink(missing_ok=True)
        derived = self._path(self.derived_dir(account_id, document_id))
        shutil.rmtree(derived, ignore_errors=True)
        return len(files), size
