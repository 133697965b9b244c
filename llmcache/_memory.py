"""The in-process memory tier: a cachetools LRU bounded in bytes.

It holds decoded `Record`s keyed by fingerprint, so a hit costs a dict lookup and no MAC,
no decompression and no BLAKE2b. It also implements the byte-level `Backend` contract
(used by tests and by anyone who lists ``memory`` as a plain tier). The bound is in bytes
and per item; a TTL can shorten an entry's life but never lift the bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cachetools

from ._backend import Backend
from ._errors import ConfigError
from ._record import NO_EXPIRY, Record

__all__ = ["MemoryTier", "parse_size"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ITEM_BYTES = 16 * 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2}
_UNITS |= {"mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str | int, what: str = "size") -> int:
    """'256MiB', '1g', '4096' → bytes."""
    if isinstance(text, int):
        return text
    raw = text.strip().lower().replace(" ", "")
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(digits) :]
    if not digits or unit not in _UNITS:
        raise ConfigError(f"cannot read {what} {text!r}: write it like 256MiB, 64MB or 1048576")
    return int(float(digits) * _UNITS[unit])


class _Blob:
    """Bytes stored through the byte-level Backend API."""

    __slots__ = ("data", "expires", "size")

    def __init__(self, data: bytes, expires: float) -> None:
        self.data = data
        self.expires = expires
        self.size = len(data) + 100


def _sizeof(item: Record | _Blob) -> int:
    return item.size


class MemoryTier(Backend):
    """In-process LRU of records, bounded by `max_bytes` in all and `max_item_bytes` each."""

    persistent = False

    def __init__(
        self,
        max_bytes: int | str = DEFAULT_MAX_BYTES,
        max_item_bytes: int | str | None = None,
    ) -> None:
        self.max_bytes = parse_size(max_bytes, "max_bytes")
        item_cap = DEFAULT_MAX_ITEM_BYTES if max_item_bytes is None else max_item_bytes
        self.max_item_bytes = min(parse_size(item_cap, "max_item_bytes"), self.max_bytes)
        if self.max_bytes <= 0:
            raise ConfigError("memory tier max_bytes must be positive")
        self._lru: cachetools.LRUCache[Hashable, Record | _Blob] = cachetools.LRUCache(
            maxsize=self.max_bytes, getsizeof=_sizeof
        )
        self._counters: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self.name = f"memory://?max_bytes={self.max_bytes}"
        self.oversized = 0  # items refused because they exceed the per-item cap

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryTier:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        unknown = set(query) - {"max_bytes", "max_item_bytes"}
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} in {url!r}; memory accepts "
                f"max_bytes and max_item_bytes"
            )
        query.update({k: str(v) for k, v in options.items()})
        return cls(**query)  # type: ignore[arg-type]

    # -- fast path for the core: records keyed by fingerprint ------------------------------
    def lookup(self, key: int) -> Record | None:
        """A live record, or None. Expired records are dropped on sight.

        Reads take no lock: under the GIL, cachetools' LRU read is a dict get plus an
        OrderedDict.move_to_end, each atomic, and a read racing an eviction just misses
        (cachetools ignores a move_to_end of a key that is gone). Writes are locked.
        Records live under int fingerprints and byte blobs under str keys, so a record
        lookup can never return a blob.
        """
        try:
            item: Any = self._lru[key]
        except KeyError:
            return None
        if item.expires != NO_EXPIRY and item.expires <= time.time():
            self.discard(key)
            return None
        return item  # type: ignore[no-any-return]

    def store(self, key: Hashable, record: Record) -> bool:
        """Keep a record; False if it is larger than the per-item cap."""
        if record.size > self.max_item_bytes:
            self.oversized += 1
            return False
        with self._lock:
            for _ in range(8):
                try:
                    self._lru[key] = record
                    return True
                except RuntimeError:
                    # Eviction iterates the LRU order; a lock-free read moving a key to the
                    # end at that instant makes the iteration raise. Nothing was lost: retry.
                    continue
        return False

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._lru.pop(key, None)

    def discard_where(self, signed_key: str) -> int:
        """Drop records with this signed key (the memory tier is keyed by fingerprint)."""
        with self._lock:
            doomed = [
                k
                for k, v in self._lru.items()
                if isinstance(v, Record) and v.signed_key == signed_key
            ]
            for key in doomed:
                del self._lru[key]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    # -- the byte-level Backend contract ---------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._lru.get(key)
            if item is None or not isinstance(item, _Blob):
                return None
            if item.expires <= time.time():
                del self._lru[key]
                return None
            return item.data

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        blob = _Blob(bytes(value), NO_EXPIRY if ttl is None else time.time() + ttl)
        if blob.size > self.max_item_bytes:
            self.oversized += 1
            return
        with self._lock:
            self._lru[key] = blob

    def delete(self, key: str) -> None:
        with self._lock:
            self._lru.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._lru if isinstance(k, str) and k.startswith(prefix)]
            for key in doomed:
                del self._lru[key]
        return len(doomed)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        with self._lock:
            record = self._counters.setdefault(key, {})
            for field, delta in deltas.items():
                record[field] = record.get(field, 0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._counters.get(key, {}))

    def size(self) -> tuple[int, int]:
        with self._lock:
            return len(self._lru), int(self._lru.currsize)

    def close(self) -> None:
        self.clear()
