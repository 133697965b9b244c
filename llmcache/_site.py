"""A call site: one cached function (or one provider endpoint) and its way through the tiers.

Lookup order: the memory tier (decoded records by fingerprint), then each shared or
persistent tier (signed bytes, verified before use). A hit below memory is promoted to the
tiers above it with its remaining TTL. A miss runs the real call once per process
(single-flight across threads and asyncio tasks of any loop) and, when a tier can take
locks, once across processes; the result is stored in every tier and its cost goes to
the ledger. Nothing here raises into the caller because of the cache: only the real call's
own exceptions and the caller's own mistakes (an argument that cannot be keyed) do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from xxhash import xxh3_128_intdigest

from ._canonical import canonical_bytes, canonical_value, fast_body
from ._codec import Unstorable, ValueCodec
from ._info import (
    INFO_CAPACITY,
    INFO_MAX_BYTES,
    LAST,
    SEEN,
    SHARED_TYPES,
    forget_older_half,
    held_bytes,
    relay,
    remember,
    weak_reference,
)
from ._ledger import HIT_BATCH
from ._miss import Found, MissPath, fresh
from ._namespaces import Namespace
from ._options import Options, current_options
from ._record import NO_EXPIRY, NOT_SHARED, IntegrityError, Record, decode_entry
from ._resilience import GuardedTier
from ._usage import UsageHook

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["MISS", "CallSite", "SiteCounters"]

log = logging.getLogger("llmcache")
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_T = TypeVar("_T")
_IMMUTABLE = (str, int, float, bool, type(None), bytes)


class _Miss:
    """The type of `MISS`: one object, with a name for tracebacks and debuggers."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "llmcache.MISS"


MISS: Any = _Miss()  # what `CallSite.get` returns when nothing usable is cached
set_last_call = LAST.set  # `llmcache.info`'s per-context last call, set on every hit path


class SiteCounters:
    """Per-site counters; the cache's stats are their sums."""

    __slots__ = (
        "bypassed",
        "coalesced",
        "lower_hits",
        "memory_hits",
        "memory_misses",
        "memory_writes",
        "misses",
        "unstorable",
    )

    def __init__(self) -> None:
        self.memory_hits = 0
        self.lower_hits = 0
        self.memory_misses = 0
        self.memory_writes = 0
        self.misses = 0
        self.coalesced = 0
        self.bypassed = 0
        self.unstorable = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.lower_hits


class CallSite(MissPath):
    """Caches one function or endpoint; built by `Cache.cached` and by provider adapters."""

    def __init__(
        self,
        cache: Cache,
        identity: str,
        *,
        returns: Any = None,
        namespace: str | None = None,
        ttl: float | None = None,
        version: str | int | None = None,
        usage: UsageHook | None = None,
        provider: str | None = None,
    ) -> None:
        self.cache = cache
        self.identity = identity
        self.namespace = cache.namespace(namespace)
        self.ttl = ttl
        self.codec = ValueCodec(returns)
        self.usage = usage
        self.provider = provider
        self.counters = SiteCounters()
        # Function identity and version come first in every canonical request of this
        # site: `[identity, version, {arguments}]`, one orjson call on the hit path.
        self.version = version
        self._warned_unstorable = False
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        # Looked up once: the hit path reads these on every call.
        self._memory = cache.memory
        self._tiers = cache.tiers
        self._ledger = cache.ledger
        self._ledger_hit = cache.ledger.hit
        self._noted_hits = cache.ledger.noted_hits
        self._signed_key = cache.keys.signed_key
        self._signed_memo = cache.keys.signed_memo
        self._entry_aead = cache.entry_aead
        self._namespace_name = self.namespace.name
        cache.sites.append(self)

    # -- public extension API (provider adapters) --------------------------------------------------
    def key(self, request: Mapping[str, Any]) -> str:
        """The signed key `request` has under the current options."""
        namespace, body, opts = self._prepare(self._canonical(request))
        seed, prefix = namespace.state
        return self.cache.keys.signed_key(prefix, self._fingerprint(body, seed, opts))

    def call(self, request: Mapping[str, Any], compute: Callable[[], _T]) -> _T:
        """The cached result for `request`, or `compute()`'s (stored), single-flight."""
        namespace = self.namespace
        if current_options() is None and self.cache.enabled and namespace.loaded:
            # `_fast_key`, inlined: this is every provider hit's path.
            try:
                body = fast_body(self.identity, self.version, request)
            except Exception:  # the long way canonicalises it, or names what cannot be keyed
                body = None
            if body is not None:
                seed, prefix = namespace.state
                fingerprint = xxh3_128_intdigest(body, seed)
                value = self.memory_hit(fingerprint)
                if value is not MISS:
                    return value  # type: ignore[no-any-return]
                return self.resolve(fingerprint, namespace, prefix, compute, None, False)
        return self.run(lambda: self._canonical(request), compute)

    async def acall(self, request: Mapping[str, Any], compute: Callable[[], Awaitable[_T]]) -> _T:
        keyed = self._fast_key(request)
        if keyed is None:
            return await self.arun(lambda: self._canonical(request), compute)
        fingerprint, prefix = keyed
        value = self.memory_hit(fingerprint)
        if value is not MISS:
            return value  # type: ignore[no-any-return]
        return await self.aresolve(fingerprint, self.namespace, prefix, compute, None, False)

    def _fast_key(self, request: Mapping[str, Any]) -> tuple[int, str] | None:
        """(fingerprint, key prefix) when no option applies; None sends the call the long way."""
        namespace = self.namespace
        if current_options() is not None or not self.cache.enabled or not namespace.loaded:
            return None
        try:
            body = fast_body(self.identity, self.version, request)
        except Exception:  # the long way canonicalises it, or names what cannot be keyed
            return None
        seed, prefix = namespace.state
        return xxh3_128_intdigest(body, seed), prefix

    def memory_hit(self, fingerprint: int) -> Any:
        """The memory tier's value for a fingerprint (counted, remembered), or MISS."""
        memory = self._memory
        if memory is None:
            return MISS
        record = memory.lookup(fingerprint)
        if record is None:
            self.counters.memory_misses += 1
            return MISS
        self.counters.memory_hits += 1
        name = self._namespace_name
        # `Ledger.hit` and `remember(...)`, inlined: this is every memory hit's path.
        noted = self._noted_hits
        noted.append((name, record))
        if len(noted) >= HIT_BATCH:
            self._ledger.drain_hits()
        value = record.shared
        if value is not NOT_SHARED:
            # A str, number, bool, None or bytes (the only values `MissPath._encode`,
            # `lower_hit` and `_verify` share): SHARED_TYPES, described by `LAST` alone.
            set_last_call((value, record, "memory", True, name))
            return value
        value = record.decoder(record.value_json)  # type: ignore[misc]
        set_last_call((value, record, "memory", True, name))
        kind = type(value)
        if kind not in SHARED_TYPES:  # a fresh object: also remembered by identity
            if kind.__weakrefoffset__:
                weight = record.size
                SEEN[id(value)] = (weak_reference(value), record, "memory", True, name, weight)
            else:
                weight = record.size << 2
                SEEN[id(value)] = (value, record, "memory", True, name, weight)
            held_bytes[0] += weight
            if held_bytes[0] > INFO_MAX_BYTES or len(SEEN) > INFO_CAPACITY:
                forget_older_half()
        return value

    def get(self, request: Mapping[str, Any]) -> Any:
        """The cached value for `request` (counted as a hit), or MISS."""
        opts = current_options()
        if self._bypassed(opts):
            return MISS
        namespace, body, opts = self._prepare(self._canonical(request))
        seed, prefix = namespace.state
        fingerprint = self._fingerprint(body, seed, opts)
        if opts is not None and opts.refresh:
            return MISS
        found = self._lookup(fingerprint, prefix, opts)
        return MISS if found is None else self._serve(found, namespace)

    async def aget(self, request: Mapping[str, Any]) -> Any:
        opts = current_options()
        if self._bypassed(opts):
            return MISS
        namespace, body, opts = await self._aprepare(self._canonical(request))
        seed, prefix = namespace.state
        fingerprint = self._fingerprint(body, seed, opts)
        if opts is not None and opts.refresh:
            return MISS
        found = await self._alookup(fingerprint, prefix, opts)
        return MISS if found is None else self._serve(found, namespace)

    def put(
        self,
        request: Mapping[str, Any],
        value: Any,
        *,
        latency_s: float,
        meta: Mapping[str, Any] | None = None,
    ) -> Record | None:
        """Record a real call made by the adapter itself (e.g. a completed stream)."""
        opts = current_options()
        if self._bypassed(opts):
            return None
        namespace, body, opts = self._prepare(self._canonical(request))
        seed, prefix = namespace.state
        fingerprint = self._fingerprint(body, seed, opts)
        full_meta = self._meta(value, latency_s, meta)
        self._count_miss(namespace, full_meta)
        if opts is not None and opts.no_store:
            return None
        record = self._encode(fingerprint, prefix, value, full_meta, opts)
        if record is not None:
            self._write_memory(fingerprint, record)
            data = self._entry_bytes(record)
            for tier in self.cache.tiers:
                tier.set(record.signed_key, data, self._ttl_of(record))
        remember(value, record, None, False, namespace.name)
        return record

    @property
    def lock_wait(self) -> float:
        """How long a caller waits for another's identical call before making its own."""
        return self.cache.lock_wait

    @property
    def stores_below_memory(self) -> bool:
        """Whether `put` writes to a tier below memory (disk, a server): blocking I/O."""
        return bool(self._tiers)

    def note_miss(self, result: Any) -> None:
        """Make `llmcache.info(result)` report a miss (e.g. a live stream, not yet stored)."""
        remember(result, None, None, False, self.namespace.name)

    @staticmethod
    def share_info(source: Any, target: Any) -> None:
        """Make `llmcache.info(target)` report what it reports for `source`.

        For adapters that hand out a wrapper around a cached value: a replayed stream
        reports the hit its recording was; a recorded stream reports its stored miss.
        """
        relay(source, target)

    # -- the full path: options, key, lookup, single-flight miss -----------------------------
    def _canonical(self, request: Mapping[str, Any]) -> bytes:
        """The long way to a request's canonical bytes (the hit path makes the first try)."""
        return canonical_bytes(request, self.identity, (self.identity, self.version))

    def _bypassed(self, opts: Options | None) -> bool:
        if self.cache.enabled and (opts is None or not opts.bypass):
            return False
        self.counters.bypassed += 1
        return True

    def _prepare(self, body: bytes) -> tuple[Namespace, bytes, Options | None]:
        opts = current_options()
        namespace = self.namespace
        if opts is not None and opts.namespace:
            namespace = self.cache.namespace(opts.namespace)
        return self.cache.load(namespace), body, opts

    async def _aprepare(self, body: bytes) -> tuple[Namespace, bytes, Options | None]:
        opts = current_options()
        namespace = self.namespace
        if opts is not None and opts.namespace:
            namespace = self.cache.namespace(opts.namespace)
        if not namespace.loaded:  # off the event loop, and bounded by the load deadline
            await self.cache.aload(namespace)
        return namespace, body, opts

    def _fingerprint(self, body: bytes, seed: int, opts: Options | None) -> int:
        if opts is not None and opts.sample is not None:
            body += b"\x00sample:" + canonical_value(opts.sample)
        return xxh3_128_intdigest(body, seed)

    def run(self, make_body: Callable[[], bytes], compute: Callable[[], _T]) -> _T:
        opts = current_options()
        if self._bypassed(opts):
            value = compute()
            remember(value, None, None, False, self._namespace_name)  # never a stale hit
            return value
        namespace, body, opts = self._prepare(make_body())
        seed, prefix = namespace.state
        fingerprint = self._fingerprint(body, seed, opts)
        return self.resolve(fingerprint, namespace, prefix, compute, opts, True)

    def resolve(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], _T],
        opts: Options | None,
        check_memory: bool,
    ) -> _T:
        """Serve a keyed call: look it up (memory unless already checked), else call it."""
        if opts is None and not check_memory:
            value: _T = self.lower_hit(fingerprint, namespace, prefix)
            if value is not MISS:
                return value
        elif opts is None or not opts.refresh:
            if check_memory:
                found = self._lookup(fingerprint, prefix, opts)
            else:
                found = self._lower_lookup(fingerprint, prefix, opts) if self.cache.tiers else None
            if found is not None:
                value = self._serve(found, namespace)
                return value
        return self.miss(fingerprint, namespace, prefix, compute, opts)

    def lower_hit(self, fingerprint: int, namespace: Namespace, prefix: str) -> Any:
        """The value a tier below memory holds for a call no option applies to, or MISS.

        The disk and Redis hit path once the memory tier missed: `_lower_lookup`, `_verify`
        and `_serve` for the common case, folded into one loop because each Python call
        layer costs a measurable share of a disk hit.
        """
        signed_key = self._signed_memo.get(fingerprint) or self._signed_key(prefix, fingerprint)
        index = 0
        for tier in self._tiers:
            data = tier.get(signed_key)
            if data is None:
                tier.counters.misses += 1
                index += 1
                continue
            try:
                record = decode_entry(data, signed_key, self._entry_aead)
                decoder = self._decoders.get(record.tag) or self._decoder(record.tag)
                value = decoder(record.value_json)
            except (IntegrityError, Unstorable, ValueError) as error:
                self._reject(tier, error)
                index += 1
                continue
            expires = record.expires
            if expires != NO_EXPIRY and expires <= time.time():  # no clock read without a TTL
                tier.counters.misses += 1
                index += 1
                continue
            tier.counters.hits += 1
            if index or self._memory is not None:  # a faster tier above to fill
                record.decoder = decoder
                if type(value) in _IMMUTABLE:
                    record.shared = value
                self._promote(fingerprint, record, data, index)
            self.counters.lower_hits += 1
            name = namespace.name
            # `Ledger.hit` and `remember(...)`, inlined as in `memory_hit`. The ledger is
            # given the metadata bytes, not this short-lived record, to group hits by.
            noted = self._noted_hits
            noted.append((name, record.meta_json))
            if len(noted) >= HIT_BATCH:
                self._ledger.drain_hits()
            set_last_call((value, record, tier.name, True, name))
            kind = type(value)
            if kind not in SHARED_TYPES:  # a fresh object: also remembered by identity
                if kind.__weakrefoffset__:
                    weight = record.size
                    SEEN[id(value)] = (weak_reference(value), record, tier.name, True, name, weight)
                else:
                    weight = record.size << 2
                    SEEN[id(value)] = (value, record, tier.name, True, name, weight)
                held_bytes[0] += weight
                if held_bytes[0] > INFO_MAX_BYTES or len(SEEN) > INFO_CAPACITY:
                    forget_older_half()
            return value
        return MISS

    async def arun(
        self, make_body: Callable[[], bytes], compute: Callable[[], Awaitable[_T]]
    ) -> _T:
        opts = current_options()
        if self._bypassed(opts):
            result = await compute()
            remember(result, None, None, False, self._namespace_name)  # never a stale hit
            return result
        namespace, body, opts = await self._aprepare(make_body())
        seed, prefix = namespace.state
        fingerprint = self._fingerprint(body, seed, opts)
        return await self.aresolve(fingerprint, namespace, prefix, compute, opts, True)

    async def aresolve(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], Awaitable[_T]],
        opts: Options | None,
        check_memory: bool,
    ) -> _T:
        if opts is None or not opts.refresh:
            if check_memory:
                found = await self._alookup(fingerprint, prefix, opts)
            elif self.cache.tiers:
                found = await self._alower_lookup(fingerprint, prefix, opts)
            else:
                found = None
            if found is not None:
                value: _T = self._serve(found, namespace)
                return value
        return await self.amiss(fingerprint, namespace, prefix, compute, opts)

    # -- lookup ------------------------------------------------------------------------------
    def _memory_lookup(self, fingerprint: int, opts: Options | None) -> Found | None:
        memory = self.cache.memory
        if memory is None:
            return None
        record = memory.lookup(fingerprint)
        if record is not None and fresh(record, opts, time.time()):
            return record, "memory", NOT_SHARED
        self.counters.memory_misses += 1
        return None

    def _lookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        found = self._memory_lookup(fingerprint, opts)
        if found is not None or not self.cache.tiers:
            return found
        return self._lower_lookup(fingerprint, prefix, opts)

    def _lower_lookup(
        self, fingerprint: int, prefix: str, opts: Options | None, count: bool = True
    ) -> Found | None:
        signed_key = self.cache.keys.signed_key(prefix, fingerprint)
        for index, tier in enumerate(self.cache.tiers):
            data = tier.get(signed_key)
            found = self._verify(tier, data, signed_key, opts, count)
            if found is not None and data is not None:
                if index or self._memory is not None:  # a faster tier above to fill
                    self._promote(fingerprint, found[0], data, index)
                return found
        return None

    async def _alookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        found = self._memory_lookup(fingerprint, opts)
        if found is not None or not self.cache.tiers:
            return found
        return await self._alower_lookup(fingerprint, prefix, opts)

    async def _alower_lookup(
        self, fingerprint: int, prefix: str, opts: Options | None, count: bool = True
    ) -> Found | None:
        signed_key = self.cache.keys.signed_key(prefix, fingerprint)
        for index, tier in enumerate(self.cache.tiers):
            data = await tier.aget(signed_key)
            found = self._verify(tier, data, signed_key, opts, count)
            if found is not None and data is not None:
                await self._apromote(fingerprint, found[0], data, index)
                return found
        return None

    def _verify(
        self,
        tier: GuardedTier,
        data: bytes | None,
        signed_key: str,
        opts: Options | None,
        count: bool = True,
    ) -> Found | None:
        """Check an entry read from a tier; anything wrong with it is a (counted) miss.

        `count=False` is for a second look at the same key (after taking a lock): what the
        first look counted is not counted again.
        """
        counters = tier.counters
        if data is None:
            counters.misses += count
            return None
        try:
            record = decode_entry(data, signed_key, self._entry_aead)
            decoder = self._decoders.get(record.tag) or self._decoder(record.tag)
            record.decoder = decoder
            value = decoder(record.value_json)
        except (IntegrityError, Unstorable, ValueError) as error:
            if count:
                self._reject(tier, error)
            return None
        if (opts is not None or record.expires != NO_EXPIRY) and not fresh(
            record, opts, time.time()
        ):
            counters.misses += count
            return None
        if type(value) in _IMMUTABLE:
            record.shared = value
        counters.hits += 1
        return record, tier.name, value

    @staticmethod
    def _reject(tier: GuardedTier, error: Exception) -> None:
        """Count (and log) an entry that failed verification or decoding: it is a miss."""
        tier.counters.integrity_failures += 1
        log.warning("llmcache: ignoring an entry in %s: %s", tier.name, error)

    def _decoder(self, tag: str) -> Callable[[bytes], Any]:
        """The codec's decoder for a type tag, looked up once per tag."""
        decoder = self._decoders[tag] = self.codec.decoder(tag)
        return decoder

    def _promote(self, fingerprint: int, record: Record, data: bytes, index: int) -> None:
        self._write_memory(fingerprint, record)
        for upper in self.cache.tiers[:index]:
            upper.set(record.signed_key, data, self._ttl_of(record))

    async def _apromote(self, fingerprint: int, record: Record, data: bytes, index: int) -> None:
        self._write_memory(fingerprint, record)
        for upper in self.cache.tiers[:index]:
            await upper.aset(record.signed_key, data, self._ttl_of(record))

    def _serve(self, found: Found, namespace: Namespace) -> Any:
        record, tier, value = found
        if value is NOT_SHARED:
            value = record.shared
            if value is NOT_SHARED:
                assert record.decoder is not None
                value = record.decoder(record.value_json)
        if tier == "memory":
            self.counters.memory_hits += 1
        else:
            self.counters.lower_hits += 1
        name = namespace.name
        self._ledger_hit(name, record)
        remember(value, record, tier, True, name)
        return value
