"""Field encryption (AES-256-GCM with key ids) and the HMAC-SHA256 blind index.

Ciphertext layout (bytes): ``0x01 | key_id (4 bytes) | nonce (12 bytes) | ciphertext+tag``.
The field name is bound as associated data, so a value cannot be moved to another column.
The key id is the first 4 bytes of SHA-256(key): a reader finds the right key among the primary and
the old ones, which is what lets keys rotate without rewriting every row at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
_HEADER = 1 + 4 + 12


class DecryptionError(Exception):
    """A ciphertext could not be opened (unknown key id or tampered data)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


def derive_blind_index_key(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"leadflow blind index v1").derive(key)


class FieldCipher:
    def __init__(self, keys: Sequence[bytes], blind_index_key: bytes | None = None) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        for key in keys:
            if len(key) != 32:
                raise ValueError("AES-256 keys are 32 bytes")
        self._primary = AESGCM(keys[0])
        self._primary_id = key_id(keys[0])
        self._by_id = {key_id(k): AESGCM(k) for k in keys}
        self._blind_key = blind_index_key or derive_blind_index_key(keys[0])
        self._head = bytes([VERSION]) + self._primary_id
        self._aad: dict[str, bytes] = {}  # field name -> its associated data (the name's bytes)

    @property
    def primary_key_id(self) -> str:
        return self._primary_id.hex()

    def encrypt(self, value: str | None, field: str) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        return self._head + nonce + self._primary.encrypt(nonce, value.encode(), self._field(field))

    def encrypter(self, count: int) -> Callable[[str | None, str], bytes | None]:
        """:meth:`encrypt` for up to ``count`` values (one lead's fields): their random nonces are drawn
        from the OS in one call rather than one each (12 random bytes apiece, never reused: the function
        refuses a value past ``count``). For one thread: each call of this method has its own nonces."""
        pool = os.urandom(12 * count)
        seal, head, aad = self._primary.encrypt, self._head, self._field
        used = 0

        def encrypt(value: str | None, field: str) -> bytes | None:
            nonlocal used
            if value is None:
                return None
            if used == len(pool):
                raise RuntimeError(f"encrypter({count}) asked for more than {count} values")
            nonce = pool[used : used + 12]
            used += 12
            return head + nonce + seal(nonce, value.encode(), aad(field))

        return encrypt

    def _field(self, field: str) -> bytes:
        aad = self._aad.get(field)
        if aad is None:
            aad = self._aad[field] = field.encode()
        return aad

    def decrypt(self, blob: bytes | None, field: str) -> str | None:
        if blob is None:
            return None
        blob = bytes(blob)
        if len(blob) < _HEADER + 16 or blob[0] != VERSION:
            raise DecryptionError("not a Leadflow ciphertext")
        aead = self._by_id.get(blob[1:5])
        if aead is None:
            raise DecryptionError("ciphertext was written with a key that is not configured")
        try:
            return aead.decrypt(blob[5:17], blob[17:], field.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication") from exc

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        return bytes(blob[1:5]).hex()

    def blind_index(self, normalised: str) -> str:
        """Deterministic HMAC-SHA256 of an already normalised value, hex encoded."""
        return hmac.new(self._blind_key, normalised.encode(), hashlib.sha256).hexdigest()
