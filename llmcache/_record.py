"""A cache entry as the core holds it in memory, and its encoding as encrypted bytes.

Wire format of an entry (what every byte-storing tier holds, format version 2)::

    byte 0      format version (2)
    byte 1      flags: bit 0 = the plaintext is lz4-compressed
    bytes 2-13  nonce: 12 random bytes, fresh for every encoding
    bytes 14-   AES-256-GCM ciphertext of the plaintext, then its 16-byte tag

The plaintext is struct <ddHI (created, expires, tag length, meta length), then the type tag,
the metadata JSON and the value JSON, lz4-compressed first when that makes it smaller. The
AEAD key is the workspace's `KeySchedule.entry_key` (derived from its secret); the associated
data is the signed key the entry is stored under followed by bytes 0-1. So nothing of the
entry is readable without the secret, and an entry copied to another key or workspace, one
written under another secret, an altered, truncated or extended one, and one in an older
format all fail the same way: `IntegrityError`, which the cache counts as a miss. The AEAD
tag is the only authenticator (there is no separate MAC to pay for).

Random 96-bit nonces are safe for far more encryptions per key than a cache makes (NIST's
2**32 bound); a new secret gives a new key.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lz4.block
import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FORMAT_VERSION",
    "NOT_SHARED",
    "IntegrityError",
    "Record",
    "decode_entry",
    "encode_entry",
    "parse_meta",
]

FORMAT_VERSION = 2
_FLAG_LZ4 = 1
_HEAD = struct.Struct("<ddHI")
_NONCE_SIZE = 12
_TAG_SIZE = 16
_PREAMBLE = 2 + _NONCE_SIZE
_SMALLEST = _PREAMBLE + _TAG_SIZE  # the ciphertext of even a compressed head is not empty
NO_EXPIRY = math.inf
NOT_SHARED: Any = object()  # Record.shared when each hit must decode a fresh value


class IntegrityError(Exception):
    """An entry read from a tier is not one this workspace wrote under this key (internal)."""


class Record:
    """One cached result: the value's JSON, its type tag, timing and metadata.

    `shared` holds the decoded value when it is immutable (a str, a number), so a hit can
    hand it out as is; otherwise every hit decodes `value_json` into a fresh object, so a
    caller that mutates its result cannot change the next hit.
    """

    __slots__ = (
        "_meta",
        "created",
        "decoder",
        "expires",
        "meta_json",
        "shared",
        "signed_key",
        "size",
        "tag",
        "value_json",
    )

    def __init__(
        self,
        value_json: bytes,
        tag: str,
        meta: dict[str, Any] | bytes,
        created: float,
        expires: float,
        signed_key: str,
        shared: Any = NOT_SHARED,
    ) -> None:
        self.value_json = value_json
        self.tag = tag
        # Metadata arrives as a dict (from a real call) or as JSON (from a tier), and is held
        # as JSON either way: a dict of the call's usage, cost and argument hashes takes
        # about 600 bytes more per entry than its JSON (the memory tier's 1 KiB budget). It
        # is parsed when read (`meta`): by the ledger once per entry per batch of hits, by
        # `llmcache.info`, by replay's hints. Only metadata JSON cannot carry stays a dict.
        self._meta: dict[str, Any] | None = None
        self.meta_json = b""
        if isinstance(meta, bytes):
            self.meta_json = meta
        elif meta:
            try:
                # Copied to a block of its own size: orjson's output keeps its buffer's slack.
                self.meta_json = memoryview(orjson.dumps(meta)).tobytes()
            except TypeError:
                self._meta = meta
        self.created = created
        self.expires = expires
        self.signed_key = signed_key
        self.shared = shared
        # Set by the cache once it knows which codec reads this record.
        self.decoder: Callable[[bytes], Any] | None = None
        # What the memory tier charges this record against its byte budget.
        self.size = len(value_json) + len(signed_key) + 200

    @property
    def meta(self) -> dict[str, Any]:
        """Model, usage, cost and latency of the call that produced this entry."""
        meta = self._meta
        return parse_meta(self.meta_json) if meta is None else meta

    @property
    def meta_dict(self) -> dict[str, Any] | None:
        """The metadata this record holds as a dict: only what JSON cannot carry; else None."""
        return self._meta

    @property
    def meta_identity(self) -> Any:
        """Equal for records whose metadata is the same stored bytes (cheap to compute)."""
        return self.meta_json if self._meta is None else id(self)

    def ttl_left(self, now: float) -> float | None:
        """Seconds until expiry (None: never expires); <= 0 means expired."""
        return None if self.expires == NO_EXPIRY else self.expires - now


def parse_meta(meta_json: bytes) -> dict[str, Any]:
    """Stored metadata JSON as a dict; anything unreadable reads as no metadata."""
    try:
        parsed = orjson.loads(meta_json) if meta_json else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def encode_entry(record: Record, aead: AESGCM, compress_above: int) -> bytes:
    """The encrypted bytes of a record (lz4-compressed first when larger than
    `compress_above`), bound to the key it is stored under, `record.signed_key`."""
    tag = record.tag.encode()
    held = record.meta_dict
    meta = record.meta_json if held is None else (orjson.dumps(held) if held else b"")
    expires = 0.0 if record.expires == NO_EXPIRY else record.expires
    plaintext = b"".join(
        (_HEAD.pack(record.created, expires, len(tag), len(meta)), tag, meta, record.value_json)
    )
    flags = 0
    if len(plaintext) > compress_above:
        compressed = lz4.block.compress(plaintext, store_size=True)
        if len(compressed) < len(plaintext):
            plaintext, flags = compressed, _FLAG_LZ4
    header = bytes((FORMAT_VERSION, flags))
    nonce = os.urandom(_NONCE_SIZE)
    sealed = aead.encrypt(nonce, plaintext, record.signed_key.encode() + header)
    return header + nonce + sealed


def decode_entry(data: bytes, signed_key: str, aead: AESGCM) -> Record:
    """Decrypt and decode an entry stored under `signed_key`; raise IntegrityError if it is
    not one this workspace's secret wrote under this key, in this format."""
    if len(data) < _SMALLEST or data[0] != FORMAT_VERSION:
        raise IntegrityError("truncated entry or unknown format version")
    header = data[:2]
    try:
        plaintext = aead.decrypt(data[2:_PREAMBLE], data[_PREAMBLE:], signed_key.encode() + header)
    except Exception as error:
        # Imported here, where it is needed (loaded with the cipher by then), not on import.
        from cryptography.exceptions import InvalidTag

        if not isinstance(error, InvalidTag):
            raise
        raise IntegrityError("entry does not authenticate under this key and secret") from None
    try:
        if header[1] & _FLAG_LZ4:
            plaintext = lz4.block.decompress(plaintext)
        created, expires, tag_len, meta_len = _HEAD.unpack_from(plaintext)
        start = _HEAD.size
        tag = plaintext[start : start + tag_len].decode()
        start += tag_len
        meta_json = plaintext[start : start + meta_len]
        value_json = plaintext[start + meta_len :]
    except Exception as error:  # an authentic entry that does not parse: a bug, not an attack
        raise IntegrityError(f"entry does not parse: {error}") from error
    # The metadata is parsed when first read (by the ledger, off the hit path).
    return Record(value_json, tag, meta_json, created, expires or NO_EXPIRY, signed_key)
