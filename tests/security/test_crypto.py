"""FieldCipher: the per-lead encrypter gives the same ciphertext layout as encrypt, with fresh nonces."""

from __future__ import annotations

import os

import pytest

from leadflow.security.crypto import DecryptionError, FieldCipher


def test_encrypter_values_open_like_encrypt_and_never_share_a_nonce() -> None:
    cipher = FieldCipher([os.urandom(32)])
    encrypt = cipher.encrypter(3)
    blobs = [encrypt("Ana", "first_name"), encrypt(None, "phone"), encrypt("Ana", "first_name")]
    blobs.append(encrypt("ana@example.com", "email"))
    assert blobs[1] is None
    opened = [
        cipher.decrypt(b, f)
        for b, f in zip(blobs, ["first_name", "phone", "first_name", "email"], strict=True)
    ]
    assert opened == ["Ana", None, "Ana", "ana@example.com"]
    sealed = [b for b in blobs if b is not None]
    assert len({b[5:17] for b in sealed}) == 3  # three values, three nonces
    assert blobs[0] != blobs[2]
    assert sealed[0][:5] == cipher.encrypt("x", "first_name")[:5]  # type: ignore[index]


def test_encrypter_refuses_more_values_than_nonces_drawn() -> None:
    encrypt = FieldCipher([os.urandom(32)]).encrypter(1)
    encrypt("one", "first_name")
    with pytest.raises(RuntimeError):
        encrypt("two", "last_name")


def test_the_field_name_is_bound_to_the_value() -> None:
    cipher = FieldCipher([os.urandom(32)])
    blob = cipher.encrypter(1)("Ana", "first_name")
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob, "last_name")
