"""A cache entry as the core holds it in memory, and its encoding as signed bytes.

Wire format of an entry (what every byte-storing tier holds)::

    byte 0      format version (1)
    byte 1      flags: bit 0 = payload is lz4-compressed
    bytes 2-17  MAC: keyed BLAKE2b-128 over the signed key, bytes 0-1 and the payload
    bytes 18-   payload: struct <ddHI (created, expires, tag length, meta length),
                then the type tag, the metadata JSON and the value JSON

The MAC covers the key the entry is stored under, so an entry copied to another key, or to
another workspace, fails verification just like a forged, altered or truncated one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Callable
from typing import Any

import lz4.block
import orjson

__all__ = [
    "FORMAT_VERSION",
    "NOT_SHARED",
    "IntegrityError",
    "Record",
    "decode_entry",
    "encode_entry",
    "parse_meta",
]

FORMAT_VERSION = 1
_FLAG_LZ4 = 1
_HEAD = struct.Struct("<ddHI")
_MAC_SIZE = 16
_PREAMBLE = 2 + _MAC_SIZE
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
        # Metadata arrives as a dict (from a real call) or as JSON (from a tier).
        self._meta: dict[str, Any] | None = meta if isinstance(meta, dict) else None
        # The stored metadata JSON (b"" for a record made from a real call).
        self.meta_json = meta if isinstance(meta, bytes) else b""
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
        if meta is None:
            meta = self._meta = parse_meta(self.meta_json)
        return meta

    @property
    def meta_identity(self) -> Any:
        """Equal for records whose metadata is the same stored bytes (cheap to compute)."""
        return self.meta_json if self._meta is None else id(self)

    @property
    def has_shared_value(self) -> bool:
        return self.shared is not NOT_SHARED

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


_KEYED: dict[bytes, Any] = {}  # mac key → a keyed BLAKE2b to copy (cheaper than keying anew)


def _mac(mac_key: bytes, signed_key: str, header: bytes, payload: bytes) -> bytes:
    keyed = _KEYED.get(mac_key)
    if keyed is None:
        keyed = _KEYED[mac_key] = hashlib.blake2b(key=mac_key, digest_size=_MAC_SIZE)
    h = keyed.copy()
    encoded_key = signed_key.encode()
    h.update(len(encoded_key).to_bytes(2, "big") + encoded_key + header)
    h.update(payload)
    return h.digest()


def encode_entry(record: Record, mac_key: bytes, compress_above: int) -> bytes:
    """The signed bytes of a record, lz4-compressed when larger than `compress_above`."""
    tag = record.tag.encode()
    meta = orjson.dumps(record.meta) if record.meta else b""
    expires = 0.0 if record.expires == NO_EXPIRY else record.expires
    payload = b"".join(
        (_HEAD.pack(record.created, expires, len(tag), len(meta)), tag, meta, record.value_json)
    )
    flags = 0
    if len(payload) > compress_above:
        compressed = lz4.block.compress(payload, store_size=True)
        if len(compressed) < len(payload):
            payload, flags = compressed, _FLAG_LZ4
    header = bytes((FORMAT_VERSION, flags))
    return header + _mac(mac_key, record.signed_key, header, payload) + payload


def decode_entry(data: bytes, signed_key: str, mac_key: bytes) -> Record:
    """Verify and decode an entry stored under `signed_key`; raise IntegrityError if bad."""
    if len(data) < _PREAMBLE + _HEAD.size or data[0] != FORMAT_VERSION:
        raise IntegrityError("truncated entry or unknown format version")
    header = data[:2]
    payload = data[_PREAMBLE:]
    if not hmac.compare_digest(data[2:_PREAMBLE], _mac(mac_key, signed_key, header, payload)):
        raise IntegrityError("entry MAC does not verify")
    try:
        if header[1] & _FLAG_LZ4:
            payload = lz4.block.decompress(payload)
        created, expires, tag_len, meta_len = _HEAD.unpack_from(payload)
        start = _HEAD.size
        tag = payload[start : start + tag_len].decode()
        start += tag_len
        meta_json = payload[start : start + meta_len]
        value_json = payload[start + meta_len :]
    except Exception as error:  # a verified entry that does not parse: a bug, not an attack
        raise IntegrityError(f"entry does not parse: {error}") from error
    # The metadata is parsed when first read (by the ledger, off the hit path).
    return Record(value_json, tag, meta_json, created, expires or NO_EXPIRY, signed_key)
