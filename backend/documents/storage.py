"""Uploaded files on disk, named by document id (never by the uploaded name)."""

import os
import tempfile
from pathlib import Path


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, account_id: str, document_id: str) -> Path:
        return self.root / account_id / document_id

    def relative(self, account_id: str, document_id: str) -> str:
        return f"{account_id}/{document_id}"

    def save(self, account_id: str, document_id: str, data: bytes) -> str:
        """Write atomically (temp file then rename), so a crash never leaves half a file."""
        target = self.path_for(account_id, document_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
        return self.relative(account_id, document_id)

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)
