"""The in-process memory tier: an LRU of records, bounded in bytes that are really held.

It holds decoded `Record`s keyed by fingerprint, so a hit costs a dict lookup and no
decryption, no decompression and no BLAKE2b. It also implements the byte-level `Backend`
contract (used by tests and by anyone who lists ``memory`` as a plain tier). The bound is in
bytes and per item; a TTL can shorten an entry's life but never lift the bound.

Why not cachetools' LRUCache: reading it without its lock is unsafe (in cachetools 5.3-7.x a
read racing an eviction put the evicted key back in the LRU order, after which every evicting
store raised KeyError), and taking its lock on every hit would double the hit's cost. Here
readers never touch the order: a hit only marks its key in `_recent` (one atomic dict store),
and writers, under the lock, give marked keys a second chance before evicting them (the
CLOCK approximation of LRU). The only thing a read can race is a mark on a key just evicted,
which is pruned later and at worst gives a re-stored key one extra chance.

What an entry is charged is what it holds (see `_charge`): the record object, its value JSON,
its key strings, its decoded value and metadata, and its slot in the order. orjson's output
buffer is over-allocated (a 100-byte answer sits in a 4 KiB block), so the value JSON is
copied into an exact-size bytes when it is stored.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._backend import Backend
from ._errors import ConfigError
from ._record import NO_EXPIRY, NOT_SHARED, Record

__all__ = ["MemoryTier", "parse_size"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ITEM_BYTES = 16 * 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2}
_UNITS |= {"mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
# One entry's share of the containers: an OrderedDict slot and its linked-list node (about
# 105 bytes at the table's average load, measured with tracemalloc) and a recency mark.
_SLOT_BYTES = 130
# pymalloc hands out blocks in 16-byte steps; sys.getsizeof does not round.
_ALIGN = 15
_SINGLETONS = (bool, type(None))


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


def _held(obj: object) -> int:
    """Bytes an object's own allocation takes (not what it refers to)."""
    return (sys.getsizeof(obj) + _ALIGN) & ~_ALIGN


def exact_bytes(data: bytes) -> bytes:
    """`data` in a block of its own size: orjson's output keeps its over-allocated buffer."""
    return memoryview(data).tobytes()


def _charge(key: Hashable, record: Record) -> int:
    """The bytes a stored record keeps alive (counted once, when it is stored)."""
    size = _SLOT_BYTES + _held(key) + _held(record) + _held(record.value_json)
    size += _held(record.signed_key) + _held(record.meta_json)
    shared = record.shared
    if shared is not NOT_SHARED and not isinstance(shared, _SINGLETONS):
        size += _held(shared)
    # The metadata is held as its JSON (counted above), unless JSON cannot carry it.
    meta = record.meta_dict
    if meta is not None:
        size += _held(meta) + sum(_held(value) for value in meta.values())
    return size


class _Blob:
    """Bytes stored through the byte-level Backend API."""

    __slots__ = ("data", "expires", "size")

    def __init__(self, key: str, data: bytes, expires: float) -> None:
        self.data = data
        self.expires = expires
        self.size = _SLOT_BYTES + _held(key) + _held(self) + _held(data)


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
        # Oldest first. Read without the lock (a get is atomic); changed only under it.
        self._entries: OrderedDict[Hashable, Record | _Blob] = OrderedDict()
        self._used = 0  # the sum of the entries' `size`: what each was charged
        # Keys read since the eviction scan last passed them: the only thing a hit writes.
        self._recent: dict[Hashable, None] = {}
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
        """A live record, or None. Expired records (by `clock`) are dropped on sight.

        Lock-free: a dict get and a recency mark, each one atomic operation; writers alone
        change the order (under the lock). Records live under int fingerprints and byte
        blobs under str keys, so a record lookup can never return a blob.
        """
        item: Any = self._entries.get(key)
        if item is None:
            return None
        expires = item.expires
        if expires != NO_EXPIRY and expires <= self.clock():  # no clock read without a TTL
            self.discard(key)
            return None
        self._recent[key] = None
        return item  # type: ignore[no-any-return]

    def store(self, key: Hashable, record: Record) -> bool:
        """Keep a record; False if it is larger than the per-item cap."""
        # Held from now on: drop orjson's spare buffer (a copy on the miss path only).
        record.value_json = exact_bytes(record.value_json)
        record.size = _charge(key, record)
        return self._put(key, record)

    def _put(self, key: Hashable, item: Record | _Blob) -> bool:
        size = item.size
        if size > self.max_item_bytes:
            self.oversized += 1
            return False
        with self._lock:
            entries = self._entries
            old = entries.get(key)
            if old is not None:  # replaced in place below: a reader never sees it missing
                self._used -= old.size
            self._make_room(size, key)
            entries[key] = item
            entries.move_to_end(key)
            self._used += size
            self._recent.pop(key, None)
        return True

    def _make_room(self, size: int, coming: Hashable) -> None:
        """Evict least recently used entries until `size` more bytes fit (lock held).

        `coming` is the key about to be (re)stored: never evicted for its own room.
        """
        entries, recent = self._entries, self._recent
        chances = len(entries)  # bounded, even if readers keep marking keys meanwhile
        while self._used + size > self.max_bytes and entries:
            oldest = next(iter(entries))
            if oldest == coming or (chances > 0 and oldest in recent):
                chances -= 1
                recent.pop(oldest, None)
                entries.move_to_end(oldest)  # used since it was stored: a second chance
                continue
            self._used -= entries.pop(oldest).size
            recent.pop(oldest, None)
        if len(recent) > 2 * len(entries) + 64:
            # Marks a read left on keys evicted meanwhile. `copy` is one atomic operation.
            for stale in [k for k in recent.copy() if k not in entries]:
                recent.pop(stale, None)

    def _remove(self, key: Hashable) -> None:
        """Forget one entry (lock held)."""
        item = self._entries.pop(key, None)
        if item is not None:
            self._used -= item.size
        self._recent.pop(key, None)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._remove(key)

    def discard_where(self, signed_key: str) -> int:
        """Drop records with this signed key (the memory tier is keyed by fingerprint)."""
        with self._lock:
            doomed = [
                k
                for k, v in self._entries.items()
                if isinstance(v, Record) and v.signed_key == signed_key
            ]
            for key in doomed:
                self._remove(key)
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._recent.clear()
            self._used = 0

    def check(self) -> None:
        """Raise AssertionError if the bookkeeping disagrees with itself (for tests)."""
        with self._lock:
            assert self._used == sum(v.size for v in self._entries.values()), "bytes drifted"
            marks, entries = len(self._recent), len(self._entries)
            assert marks <= 2 * entries + 64, "stale recency marks are not pruned"
            assert self._used <= self.max_bytes, "over the byte bound"

    # -- the byte-level Backend contract ---------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None or not isinstance(item, _Blob):
                return None
            if item.expires <= self.clock():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return item.data

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        blob = _Blob(key, exact_bytes(value), NO_EXPIRY if ttl is None else self.clock() + ttl)
        self._put(key, blob)

    def delete(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._entries if isinstance(k, str) and k.startswith(prefix)]
            for key in doomed:
                self._remove(key)
        return len(doomed)

    def records(self) -> list[Record]:
        """The records the core keeps here (by fingerprint), as they are now."""
        with self._lock:
            return [item for item in self._entries.values() if isinstance(item, Record)]

    def scan(self, prefix: str) -> Iterator[str]:
        """The byte entries' keys (the records the core keeps by fingerprint have none)."""
        if not prefix:
            raise ValueError("scan needs a non-empty prefix")
        now = self.clock()
        with self._lock:  # a snapshot: the dict may change while the caller walks it
            keys = [
                k
                for k, item in self._entries.items()
                if isinstance(k, str)
                and isinstance(item, _Blob)
                and k.startswith(prefix)
                and item.expires > now
            ]
        return iter(keys)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        with self._lock:
            record = self._counters.setdefault(key, {})
            for field, delta in deltas.items():
                record[field] = record.get(field, 0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._counters.get(key, {}))

    def after_fork_in_child(self) -> None:
        """In a forked child: a lock no thread holds (one may have held it at the fork), and
        the bytes counted again, in case a writer stopped half way through an update."""
        self._lock = threading.Lock()
        self._used = sum(item.size for item in self._entries.values())

    def size(self) -> tuple[int, int]:
        """(entries, bytes charged): the bytes are what the entries really keep alive."""
        with self._lock:
            return len(self._entries), self._used

    def close(self) -> None:
        self.clear()
