"""The bundle file (``.llmc``): a namespace's entries, sealed for whoever holds its key.

A bundle is written and read as a stream, one chunk in memory at a time, whatever its size.
It holds no secret of the workspace that made it: only the bundle key (random, 32 bytes,
written ``llmcb1_<43 base64url characters>``) opens it. Layout::

    header   b"LLMCBNDL", version (1 byte), salt (16 random bytes), key check (16 bytes)
    chunk    flags (1 byte: bit 0 = the final chunk), length (4 bytes, little-endian),
             then that many bytes: AES-256-GCM ciphertext and tag
    ...      the final chunk is the last thing in the file

Each chunk is sealed under a key derived (HKDF-SHA256) from the bundle key and the salt,
with its index as the nonce and ``header + index + flags`` as associated data. So a chunk
that was altered, moved, dropped, duplicated, or taken from another bundle does not
authenticate; a file cut at a chunk boundary has no final chunk; bytes after the final chunk
are refused. The key check (another HKDF output) tells a wrong key apart from a damaged
file. Chunk plaintexts are lz4 blocks of items, each ``kind (1 byte), length (4 bytes),
payload``: the manifest first (``M``, JSON), entries (``E``: head JSON length, head JSON, the
value's stored JSON), rows of the exporter's ledger (``L``, JSON), and the trailer last
(``T``, JSON: the counts, checked against what was read).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

import lz4.block
import orjson

from ._errors import LLMCacheError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "BundleError",
    "BundleReader",
    "BundleWriter",
    "Entry",
    "format_key",
    "new_key",
    "parse_key",
]

MAGIC = b"LLMCBNDL"
VERSION = 1
KEY_PREFIX = "llmcb1_"
_HEADER = struct.Struct("<8sB16s16s")
_CHUNK_HEAD = struct.Struct("<BI")
_ITEM_HEAD = struct.Struct("<BI")
_ENTRY_HEAD = struct.Struct("<I")
_FINAL = 1
_TAG_SIZE = 16
#: Plaintext gathered before a chunk is sealed: memory use is about twice this.
CHUNK_TARGET = 256 << 10
#: The most a chunk may hold once decompressed (one entry larger than the target makes a
#: larger chunk; this bounds what a reader allocates).
MAX_CHUNK_PLAIN = 256 << 20
_MAX_CHUNK_SEALED = MAX_CHUNK_PLAIN + (MAX_CHUNK_PLAIN >> 7) + 64  # lz4's worst case + tag

MANIFEST, ENTRY, LEDGER, TRAILER = b"M"[0], b"E"[0], b"L"[0], b"T"[0]


class BundleError(LLMCacheError, ValueError):
    """A bundle cannot be read: not a bundle, a wrong key, damaged, truncated or altered.
    Nothing was imported; the message says what to do."""


class Entry:
    """One exported entry: what its call was, its type tag, timing, metadata and value."""

    __slots__ = ("created", "digest", "expires", "meta", "site", "tag", "value_json")

    def __init__(
        self,
        site: str,
        digest: str,
        tag: str,
        created: float,
        expires: float | None,
        meta: Mapping[str, Any],
        value_json: bytes,
    ) -> None:
        self.site = site
        self.digest = digest
        self.tag = tag
        self.created = created
        self.expires = expires  # None: never expires
        self.meta = meta
        self.value_json = value_json

    def encode(self) -> bytes:
        head = orjson.dumps(
            {
                "site": self.site,
                "digest": self.digest,
                "tag": self.tag,
                "created": self.created,
                "expires": self.expires,
                "meta": self.meta,
            }
        )
        return _ENTRY_HEAD.pack(len(head)) + head + self.value_json

    @classmethod
    def decode(cls, payload: bytes) -> Entry:
        """An entry item's payload; ValueError (or KeyError, TypeError) if malformed."""
        (head_len,) = _ENTRY_HEAD.unpack_from(payload)
        end = _ENTRY_HEAD.size + head_len
        if end > len(payload):
            raise ValueError("entry head runs past its item")
        head = orjson.loads(payload[_ENTRY_HEAD.size : end])
        site, digest, tag = head["site"], head["digest"], head["tag"]
        created, expires, meta = head["created"], head["expires"], head["meta"]
        if not (isinstance(site, str) and isinstance(digest, str) and isinstance(tag, str)):
            raise TypeError("entry site, digest and tag must be text")
        if not isinstance(meta, dict) or not isinstance(created, int | float):
            raise TypeError("entry meta must be an object and created a number")
        if expires is not None and not isinstance(expires, int | float):
            raise TypeError("entry expires must be a number or null")
        return cls(site, digest, tag, float(created), expires, meta, payload[end:])


# -- keys ---------------------------------------------------------------------------------------
def new_key() -> bytes:
    """A fresh random bundle key (32 bytes)."""
    return os.urandom(32)


def format_key(key: bytes) -> str:
    """The text form of a bundle key, as `llmcache export` prints it."""
    return KEY_PREFIX + base64.urlsafe_b64encode(key).decode("ascii").rstrip("=")


def parse_key(text: str | bytes) -> bytes:
    """A bundle key from its text form (or the 32 raw bytes); BundleError if it is not one."""
    if isinstance(text, bytes) and len(text) == 32:
        return text
    if isinstance(text, str):
        body = text.strip()
        if body.startswith(KEY_PREFIX):
            body = body[len(KEY_PREFIX) :]
            try:
                raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) == 32 and format_key(raw) == text.strip():
                return raw
    raise BundleError(
        f"not a bundle key: expected {KEY_PREFIX!r} followed by 43 letters, digits, '-' or "
        f"'_' (as `llmcache export` prints it); ask whoever made the bundle for its key"
    )


def _derive(key: bytes, salt: bytes, purpose: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt, b"llmcache bundle v1 " + purpose).derive(key)


def _cipher(key: bytes, salt: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_derive(key, salt, b"chunks"))


def _key_check(key: bytes, salt: bytes) -> bytes:
    return _derive(key, salt, b"key check")[:16]


def _associated(header: bytes, index: int, flags: int) -> bytes:
    return header + index.to_bytes(8, "little") + bytes((flags,))


def _nonce(index: int) -> bytes:
    # A chunk key is used by one bundle only (its salt is random), so the index is a nonce
    # that never repeats under it.
    return index.to_bytes(12, "little")


# -- writing ------------------------------------------------------------------------------------
class BundleWriter:
    """Writes a bundle to `out`, sealing a chunk whenever `CHUNK_TARGET` bytes are pending."""

    def __init__(self, out: IO[bytes], key: bytes, manifest: Mapping[str, Any]) -> None:
        self._out = out
        salt = os.urandom(16)
        self._header = _HEADER.pack(MAGIC, VERSION, salt, _key_check(key, salt))
        self._aead = _cipher(key, salt)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._index = 0
        self.entries = 0
        self.ledger_rows = 0
        self.written = len(self._header)
        out.write(self._header)
        self._add(MANIFEST, orjson.dumps(dict(manifest)))

    def add_entry(self, entry: Entry) -> None:
        self._add(ENTRY, entry.encode())
        self.entries += 1

    def add_ledger_row(self, row: Mapping[str, Any]) -> None:
        self._add(LEDGER, orjson.dumps(dict(row)))
        self.ledger_rows += 1

    def finish(self, trailer: Mapping[str, Any]) -> None:
        """Seal the final chunk, with the trailer: the counts a reader checks."""
        fields = {**trailer, "entries": self.entries, "ledger_rows": self.ledger_rows}
        self._add(TRAILER, orjson.dumps(fields), seal=False)
        self._seal(_FINAL)

    def _add(self, kind: int, payload: bytes, seal: bool = True) -> None:
        item = _ITEM_HEAD.pack(kind, len(payload)) + payload
        self._pending.append(item)
        self._pending_bytes += len(item)
        if seal and self._pending_bytes >= CHUNK_TARGET:
            self._seal(0)

    def _seal(self, flags: int) -> None:
        plain = lz4.block.compress(b"".join(self._pending), store_size=True)
        self._pending, self._pending_bytes = [], 0
        sealed = self._aead.encrypt(
            _nonce(self._index), plain, _associated(self._header, self._index, flags)
        )
        self._out.write(_CHUNK_HEAD.pack(flags, len(sealed)))
        self._out.write(sealed)
        self.written += _CHUNK_HEAD.size + len(sealed)
        self._index += 1


# -- reading ------------------------------------------------------------------------------------
class BundleReader:
    """Reads a bundle from `source` (opened at its start): `manifest`, then `items()`.

    Every problem is a `BundleError` that says what is wrong; `name` (the file) goes in the
    messages. `position` is how many bytes were read, for a progress bar.
    """

    def __init__(self, source: IO[bytes], key: bytes, name: str) -> None:
        self._source = source
        self.name = name
        self.position = 0
        header = self._read(_HEADER.size)
        if len(header) < _HEADER.size or header[:8] != MAGIC:
            raise BundleError(
                f"{name} is not an llmcache bundle (a .llmc file made by `llmcache export`)"
            )
        _, version, salt, check = _HEADER.unpack(header)
        if version != VERSION:
            raise BundleError(
                f"{name} is a bundle of format {version}, which this llmcache cannot read "
                f"(it reads format {VERSION}): upgrade llmcache"
            )
        if not hmac.compare_digest(check, _key_check(key, salt)):
            raise BundleError(
                f"the key given does not open {name} (or its header is damaged): use the "
                f"key printed when it was exported (or given to `llmcache export --key`); "
                f"nothing was imported"
            )
        self._header = header
        self._aead = _cipher(key, salt)
        self._index = 0
        self._final = False
        self._items = self._chunk_items()
        kind, payload = next(self._items, (None, b""))
        if kind != MANIFEST:
            raise self._malformed(0, "it does not start with a manifest")
        self.manifest = self._json(payload, 0)

    def _read(self, size: int) -> bytes:
        data = self._source.read(size)
        self.position += len(data)
        return data

    def items(self) -> Iterator[tuple[int, Any]]:
        """(ENTRY, Entry) and (LEDGER, row dict) pairs, to the end; the trailer's counts
        are checked last, so a consumer that reads to the end has read an intact bundle."""
        entries = rows = 0
        for kind, payload in self._items:
            chunk = self._index - 1
            if kind == ENTRY:
                try:
                    entry = Entry.decode(payload)
                except (ValueError, KeyError, TypeError, struct.error) as error:
                    raise self._malformed(chunk, f"an entry does not parse ({error})") from None
                entries += 1
                yield ENTRY, entry
            elif kind == LEDGER:
                rows += 1
                yield LEDGER, self._json(payload, chunk)
            elif kind == TRAILER:
                trailer = self._json(payload, chunk)
                if trailer.get("entries") != entries or trailer.get("ledger_rows") != rows:
                    raise self._malformed(chunk, "its counts do not match its contents")
                if not self._final or next(self._items, None) is not None:
                    raise self._malformed(chunk, "its trailer is not at its end")
                self.trailer = trailer
                return
            else:
                raise self._malformed(chunk, f"an item is of unknown kind {kind!r}")
        raise self._malformed(self._index - 1, "it has no trailer")

    def _chunk_items(self) -> Iterator[tuple[int, bytes]]:
        while not self._final:
            index = self._index
            head = self._read(_CHUNK_HEAD.size)
            if not head:
                raise BundleError(
                    f"{self.name} is truncated: it ends after {index} chunk(s), before its "
                    f"final one; nothing was imported: copy the whole file again"
                )
            if len(head) < _CHUNK_HEAD.size:
                raise self._damaged(f"it is cut inside chunk {index}")
            flags, length = _CHUNK_HEAD.unpack(head)
            if flags & ~_FINAL or not _TAG_SIZE <= length <= _MAX_CHUNK_SEALED:
                raise self._damaged(f"the header of chunk {index} is invalid")
            sealed = self._read(length)
            if len(sealed) < length:
                raise self._damaged(f"it is cut inside chunk {index}")
            plain = self._open(index, flags, sealed)
            self._index += 1
            self._final = bool(flags & _FINAL)
            if self._final and self._read(1):
                raise self._damaged("there are bytes after its final chunk")
            yield from self._split(index, plain)

    def _open(self, index: int, flags: int, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            compressed = self._aead.decrypt(
                _nonce(index), sealed, _associated(self._header, index, flags)
            )
        except InvalidTag:
            raise self._damaged(f"chunk {index} does not authenticate") from None
        size = int.from_bytes(compressed[:4], "little")
        try:
            if size > MAX_CHUNK_PLAIN:
                raise ValueError(f"it claims {size} bytes")
            return bytes(lz4.block.decompress(compressed))
        except (ValueError, lz4.block.LZ4BlockError) as error:
            raise self._malformed(index, f"chunk {index} does not decompress ({error})") from None

    def _split(self, index: int, plain: bytes) -> Iterator[tuple[int, bytes]]:
        offset = 0
        while offset < len(plain):
            if offset + _ITEM_HEAD.size > len(plain):
                raise self._malformed(index, "an item header is cut")
            kind, length = _ITEM_HEAD.unpack_from(plain, offset)
            offset += _ITEM_HEAD.size
            if offset + length > len(plain):
                raise self._malformed(index, "an item runs past its chunk")
            yield kind, plain[offset : offset + length]
            offset += length

    def _json(self, payload: bytes, chunk: int) -> dict[str, Any]:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise self._malformed(chunk, "an item is not a JSON object")
        return value

    def _damaged(self, what: str) -> BundleError:
        return BundleError(
            f"{self.name} is damaged or was altered ({what}); nothing was imported: copy "
            f"the file again from whoever exported it"
        )

    def _malformed(self, index: int, what: str) -> BundleError:
        # Authentic (the key opened it) yet unreadable: made by a different llmcache, or a bug.
        return BundleError(
            f"{self.name} cannot be read: {what} (chunk {index}); it authenticates, so it was "
            f"likely made by another version of llmcache: export it again with this one"
        )
