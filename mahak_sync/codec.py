"""Payload encryption: what the workflows and activities exchange is encrypted before it reaches
Temporal, so customer data in workflow history is ciphertext at rest.

A `PayloadCodec` with AES-GCM. Each encoded payload is the whole original payload (metadata
and data, serialized) encrypted under one key, with a fresh 96-bit nonce in front of the
ciphertext; its metadata says `encoding: binary/encrypted` and `encryption-key-id: <id>`. The
key id is also the AEAD's associated data, so a payload relabelled with another key id fails
authentication like a tampered one.

Keys come from the settings (`PAYLOAD_ENCRYPTION_KEYS`, `PAYLOAD_ENCRYPTION_KEY_ID`). Rotation:
payloads are encrypted with the current key and decrypted with whichever listed key they
name, so a new key is added and made current while the old one stays listed until no history
that needs it is kept. A payload without the encrypted encoding passes through decode
unchanged: histories recorded before encryption was turned on still replay and read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from .config import Settings
from .logging import register_secret

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be decrypted: its key is not listed, or it was altered."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM with key rotation: encrypts with `current_key_id`, decrypts with any of `keys`."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        super().__init__()
        if current_key_id not in keys:
            raise ValueError(f"the current key id {current_key_id!r} is not among the keys")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = current_key_id

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    @classmethod
    def from_settings(cls, settings: Settings) -> EncryptionCodec | None:
        """The codec the settings ask for, or None when encryption is off (no keys set)."""
        keys = settings.payload_keys
        if not keys:
            return None
        assert settings.payload_encryption_key_id is not None  # the settings check it
        return cls(keys, settings.payload_encryption_key_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.current_key_id
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours (recorded before encryption was on): as it is
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r}, which PAYLOAD_ENCRYPTION_KEYS does "
                f"not list (listed: {', '.join(self.key_ids)}); add that key to the list"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} failed authentication: it was "
                "altered, or the key listed under that id is not the one it was encrypted with"
            ) from None
        return Payload.FromString(plain)


def data_converter(settings: Settings) -> DataConverter:
    """The project's data converter (pydantic), with the payload codec when keys are set."""
    codec = EncryptionCodec.from_settings(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


def register_key_secrets(settings: Settings) -> None:
    """Mask the key list and every key (as written in it) in all later log lines."""
    if settings.payload_encryption_keys is None:
        return
    text = settings.payload_encryption_keys.get_secret_value()
    register_secret(text)
    for entry in text.split(","):
        register_secret(entry.partition(":")[2].strip())
