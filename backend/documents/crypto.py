"""Encryption at rest for stored files (uploads, renditions, page images): AES-256-GCM from
`cryptography`, authenticated, so a wrong key or a damaged file is an error and never garbage.

A stored encrypted file is `MAGIC | key id (8 bytes) | nonce (12) | ciphertext+tag`; the file's
path inside the storage folder is the associated data, so a file copied over another document's
does not decrypt. `DOCSIFT_ENCRYPTION_KEY` holds one or more base64 keys, comma-separated, the
newest first: files are written with the first, read with whichever wrote them (rotation:
add a new key in front, run `docsift encryption rotate`, then drop the old key).
"""

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.errors import InternalError

MAGIC = b"DSENC1\x00"
_ID = 8
_NONCE = 12


class UnreadableFile(InternalError):
    """A stored file that cannot be decrypted (no key, unknown key, wrong key or damaged): the
    contract's 500 with this message wherever it is read, never the ciphertext as content."""


def generate_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"docsift-key-id" + key).digest()[:_ID]


class Cipher:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key")
        self.keys = {_key_id(k): AESGCM(k) for k in keys}
        self.current = _key_id(keys[0])

    @classmethod
    def from_setting(cls, value: str) -> "Cipher | None":
        """None when the setting is empty; ValueError (naming the problem) when malformed."""
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            return None
        keys = []
        for n, part in enumerate(parts, 1):
            try:
                key = base64.b64decode(part, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"DOCSIFT_ENCRYPTION_KEY: key {n} is not base64") from None
            if len(key) != 32:
                raise ValueError(
                    f"DOCSIFT_ENCRYPTION_KEY: key {n} is {len(key)} bytes, not 32 "
                    "(make one with `docsift encryption new-key`)"
                )
            keys.append(key)
        return cls(keys)

    def encrypt(self, data: bytes, path: str) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed = self.keys[self.current].encrypt(nonce, data, path.encode())
        return MAGIC + self.current + nonce + sealed

    def is_current(self, data: bytes) -> bool:
        return is_encrypted(data) and data[len(MAGIC) : len(MAGIC) + _ID] == self.current


def is_encrypted(data: bytes) -> bool:
    return data.startswith(MAGIC)


def decrypt(cipher: Cipher | None, data: bytes, path: str) -> bytes:
    """The plain bytes of a stored file; a file written before encryption was on is returned
    as it is."""
    if not is_encrypted(data):
        return data
    if cipher is None:
        raise UnreadableFile(
            f"Stored file {path} is encrypted but DOCSIFT_ENCRYPTION_KEY is not set."
        )
    start = len(MAGIC)
    key_id, nonce = data[start : start + _ID], data[start + _ID : start + _ID + _NONCE]
    aead = cipher.keys.get(key_id)
    if aead is None:
        raise UnreadableFile(
            f"Stored file {path} was encrypted with a key DOCSIFT_ENCRYPTION_KEY does not hold."
        )
    try:
        return aead.decrypt(nonce, data[start + _ID + _NONCE :], path.encode())
    except InvalidTag:
        raise UnreadableFile(
            f"Stored file {path} failed authentication: it is damaged or was replaced."
        ) from None
