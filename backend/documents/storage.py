"""Uploaded files on disk: `<storage_dir>/<account id>/<document id>`, never a name from the upload."""

import os
import tempfile
from pathlib import Path


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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
        target = self._path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative

    def read(self, relative: str) -> bytes:
        return self._path(relative).read_bytes()

    def delete(self, relative: str) -> None:
        self._path(relative).unlink(missing_ok=True)
