"""A call site: one cached function (or one provider endpoint) and its way through the tiers.

Lookup order: the memory tier (decoded records by fingerprint), then each shared or
persistent tier (signed bytes, verified before use). A hit below memory is promoted to the
tiers above it with its remaining TTL. A miss runs the real call once per process
(single-flight across threads, and across asyncio tasks of one loop) and, when a tier can
take locks, once across processes; the result is stored in every tier and its cost goes to
the ledger. Nothing here raises into the caller because of the cache: only the real call's
own exceptions and the caller's own mistakes (an argument that cannot be keyed) do.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from xxhash import xxh3_128_intdigest

from ._canonical import _default, canonical_bytes, canonical_value
from ._codec import Unstorable, ValueCodec
from ._info import relay, remember
from ._ledger import UsageHook, usage_meta
from ._namespaces import Namespace
from ._options import Options, current_options
from ._record import NO_EXPIRY, NOT_SHARED, IntegrityError, Record, decode_entry, encode_entry
from ._resilience import GuardedTier

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["MISS", "CallSite", "SiteCounters"]

log = logging.getLogger("llmcache")
_T = TypeVar("_T")
_IMMUTABLE = (str, int, float, bool, type(None), bytes)
MISS: Any = object()  # what `CallSite.get` returns when nothing usable is cached
Found = tuple[Record, str, Any]  # record, tier name, decoded value (or NOT_SHARED)


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


class _Flight:
    """One in-progress real call that identical concurrent calls wait for."""

    __slots__ = ("done", "error", "record", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.record: Record | None = None
        self.value: Any = None


class CallSite:
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
        # Function identity and version salt every key of this site.
        self.key_prefix = orjson.dumps([identity, version]) + b"\x00"
        self._warned_unstorable = False
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        # Looked up once: the hit path reads these on every call.
        self._memory = cache.memory
        self._ledger_hit = cache.ledger.hit
        self._namespace_name = self.namespace.name
        cache.sites.append(self)

    # -- public extension API (provider adapters) --------------------------------------------------
    def key(self, request: Mapping[str, Any]) -> str:
        """The signed key `request` has under the current options."""
        namespace, body, opts = self._prepare(canonical_bytes(request, self.identity))
        seed, prefix = namespace.state
        return self.cache.keys.signed_key(prefix, self._fingerprint(body, seed, opts))

    def call(self, request: Mapping[str, Any], compute: Callable[[], _T]) -> _T:
        """The cached result for `request`, or `compute()`'s (stored), single-flight."""
        keyed = self._fast_key(request)
        if keyed is None:
            return self.run(lambda: canonical_bytes(request, self.identity), compute)
        fingerprint, prefix = keyed
        value = self.memory_hit(fingerprint)
        if value is not MISS:
            return value  # type: ignore[no-any-return]
        return self.resolve(fingerprint, self.namespace, prefix, compute, None, False)

    async def acall(self, request: Mapping[str, Any], compute: Callable[[], Awaitable[_T]]) -> _T:
        keyed = self._fast_key(request)
        if keyed is None:
            return await self.arun(lambda: canonical_bytes(request, self.identity), compute)
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
            body = orjson.dumps(request, option=orjson.OPT_SORT_KEYS, default=_default)
        except Exception:  # the long way canonicalises it, or names what cannot be keyed
            return None
        seed, prefix = namespace.state
        return xxh3_128_intdigest(self.key_prefix + body, seed), prefix

    def memory_hit(self, fingerprint: int) -> Any:
        """The memory tier's value for a fingerprint (counted, remembered), or MISS."""
        memory = self._memory
        if memory is None:
            return MISS
        record = memory.lookup(fingerprint)
        if record is None:
            self.counters.memory_misses += 1
            return MISS
        value = record.shared
        if value is NOT_SHARED:
            value = record.decoder(record.value_json)  # type: ignore[misc]
        self.counters.memory_hits += 1
        name = self._namespace_name
        self._ledger_hit(name, record)
        remember(value, record, "memory", True, name)
        return value

    def get(self, request: Mapping[str, Any]) -> Any:
        """The cached value for `request` (counted as a hit), or MISS."""
        opts = current_options()
        if self._bypassed(opts):
            return MISS
        namespace, body, opts = self._prepare(canonical_bytes(request, self.identity))
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
        namespace, body, opts = await self._aprepare(canonical_bytes(request, self.identity))
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
        namespace, body, opts = self._prepare(canonical_bytes(request, self.identity))
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
        if not namespace.loaded:  # reading generations is I/O: keep it off the event loop
            from ._backend import run_in_thread

            await run_in_thread(self.cache.load, namespace)
        return namespace, body, opts

    def _fingerprint(self, body: bytes, seed: int, opts: Options | None) -> int:
        if opts is not None and opts.sample is not None:
            body += b"\x00sample:" + canonical_value(opts.sample)
        return xxh3_128_intdigest(self.key_prefix + body, seed)

    def run(self, make_body: Callable[[], bytes], compute: Callable[[], _T]) -> _T:
        opts = current_options()
        if self._bypassed(opts):
            return compute()
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
        if opts is None or not opts.refresh:
            if check_memory:
                found = self._lookup(fingerprint, prefix, opts)
            else:
                found = self._lower_lookup(fingerprint, prefix, opts) if self.cache.tiers else None
            if found is not None:
                value: _T = self._serve(found, namespace)
                return value
        return self.miss(fingerprint, namespace, prefix, compute, opts)

    async def arun(
        self, make_body: Callable[[], bytes], compute: Callable[[], Awaitable[_T]]
    ) -> _T:
        opts = current_options()
        if self._bypassed(opts):
            return await compute()
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
        if record is not None and _fresh(record, opts, time.time()):
            return record, "memory", NOT_SHARED
        self.counters.memory_misses += 1
        return None

    def _lookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        found = self._memory_lookup(fingerprint, opts)
        if found is not None or not self.cache.tiers:
            return found
        return self._lower_lookup(fingerprint, prefix, opts)

    def _lower_lookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        signed_key = self.cache.keys.signed_key(prefix, fingerprint)
        for index, tier in enumerate(self.cache.tiers):
            data = tier.get(signed_key)
            found = self._verify(tier, data, signed_key, opts)
            if found is not None and data is not None:
                self._promote(fingerprint, found[0], data, index)
                return found
        return None

    async def _alookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        found = self._memory_lookup(fingerprint, opts)
        if found is not None or not self.cache.tiers:
            return found
        return await self._alower_lookup(fingerprint, prefix, opts)

    async def _alower_lookup(
        self, fingerprint: int, prefix: str, opts: Options | None
    ) -> Found | None:
        signed_key = self.cache.keys.signed_key(prefix, fingerprint)
        for index, tier in enumerate(self.cache.tiers):
            data = await tier.aget(signed_key)
            found = self._verify(tier, data, signed_key, opts)
            if found is not None and data is not None:
                await self._apromote(fingerprint, found[0], data, index)
                return found
        return None

    def _verify(
        self, tier: GuardedTier, data: bytes | None, signed_key: str, opts: Options | None
    ) -> Found | None:
        """Check an entry read from a tier; anything wrong with it is a (counted) miss."""
        if data is None:
            tier.counters.misses += 1
            return None
        try:
            record = decode_entry(data, signed_key, self.cache.mac_key)
            decoder = self._decoders.get(record.tag)
            if decoder is None:
                decoder = self._decoders[record.tag] = self.codec.decoder(record.tag)
            record.decoder = decoder
            value = decoder(record.value_json)
        except (IntegrityError, Unstorable, ValueError) as error:
            tier.counters.integrity_failures += 1
            log.warning("llmcache: ignoring an entry in %s: %s", tier.name, error)
            return None
        if not _fresh(record, opts, time.time()):
            tier.counters.misses += 1
            return None
        if type(value) in _IMMUTABLE:
            record.shared = value
        tier.counters.hits += 1
        return record, tier.name, value

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
        self.cache.ledger.hit(namespace.name, record)
        remember(value, record, tier, True, namespace.name)
        return value

    # -- miss: single-flight, the real call, store -------------------------------------------------
    def miss(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], _T],
        opts: Options | None,
    ) -> _T:
        cache = self.cache
        with cache.flight_lock:
            flight = cache.flights.get(fingerprint)
            leading = flight is None
            if flight is None:
                flight = cache.flights[fingerprint] = _Flight()
        if not leading:
            self.counters.coalesced += 1
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return self._follow(flight.record, flight.value, namespace)  # type: ignore[no-any-return]
        try:
            flight.value, flight.record = self._lead(fingerprint, namespace, prefix, compute, opts)
            return flight.value  # type: ignore[no-any-return]
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with cache.flight_lock:
                cache.flights.pop(fingerprint, None)
            flight.done.set()

    async def amiss(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], Awaitable[_T]],
        opts: Options | None,
    ) -> _T:
        cache = self.cache
        loop = asyncio.get_running_loop()
        joined = cache.async_flights.get(fingerprint)
        if joined is not None and joined[0] is loop:
            future = joined[1]
            self.counters.coalesced += 1
            try:
                record, value = await asyncio.shield(future)
            except asyncio.CancelledError:
                if not future.cancelled():
                    raise  # we were cancelled ourselves
                # The leader was cancelled, not us: make the call ourselves.
            else:
                return self._follow(record, value, namespace)  # type: ignore[no-any-return]
        future = loop.create_future()
        cache.async_flights[fingerprint] = (loop, future)
        try:
            result, stored = await self._alead(fingerprint, namespace, prefix, compute, opts)
            future.set_result((stored, result))
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark it retrieved: nobody may be waiting
            raise
        finally:
            if cache.async_flights.get(fingerprint, (None, None))[1] is future:
                del cache.async_flights[fingerprint]

    def _follow(self, record: Record | None, value: Any, namespace: Namespace) -> Any:
        """What a caller that waited for another's real call gets: its own copy."""
        if record is None:
            return value
        result = self._serve((record, "single-flight", NOT_SHARED), namespace)
        self.counters.lower_hits -= 1  # counted as coalesced, not as a tier hit
        return result

    def _just_finished(
        self, fingerprint: int, namespace: Namespace, opts: Options | None
    ) -> tuple[Any, Record] | None:
        """A result an identical call stored between our lookup and our taking the lead.

        Without this second look, a caller that missed just before another's flight ended
        would find no flight to join and make a second real call.
        """
        memory = self.cache.memory
        if memory is None or (opts is not None and opts.refresh):
            return None
        record = memory.lookup(fingerprint)
        if record is None or not _fresh(record, opts, time.time()):
            return None
        self.counters.coalesced += 1
        return self._follow(record, None, namespace), record

    def _lead(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], _T],
        opts: Options | None,
    ) -> tuple[_T, Record | None]:
        finished = self._just_finished(fingerprint, namespace, opts)
        if finished is not None:
            return finished
        lock_tier, lock_key, token = self.cache.lock_tier, "", None
        if lock_tier is not None and (opts is None or not opts.refresh):
            lock_key = self.cache.keys.signed_key(prefix, fingerprint) + ":lock"
            token = lock_tier.call("try_lock", lock_key, self.cache.lock_ttl)
            if token is None:  # another process is making this call: wait for its entry
                found, token = self._wait_for_other_process(fingerprint, prefix, lock_key, opts)
                if found is not None:
                    self.counters.coalesced += 1
                    return self._follow(found[0], None, namespace), found[0]
        try:
            started = time.perf_counter()
            value = compute()
            meta = self._meta(value, time.perf_counter() - started, None)
            return value, self._finish(fingerprint, namespace, prefix, value, meta, opts, True)
        finally:
            if isinstance(token, str):
                lock_tier.call("unlock", lock_key, token)  # type: ignore[union-attr]

    async def _alead(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], Awaitable[_T]],
        opts: Options | None,
    ) -> tuple[_T, Record | None]:
        finished = self._just_finished(fingerprint, namespace, opts)
        if finished is not None:
            return finished
        lock_tier, lock_key, token = self.cache.lock_tier, "", None
        if lock_tier is not None and (opts is None or not opts.refresh):
            lock_key = self.cache.keys.signed_key(prefix, fingerprint) + ":lock"
            token = await lock_tier.acall("try_lock", lock_key, self.cache.lock_ttl)
            if token is None:
                found, token = await self._await_other_process(fingerprint, prefix, lock_key, opts)
                if found is not None:
                    self.counters.coalesced += 1
                    return self._follow(found[0], None, namespace), found[0]
        try:
            started = time.perf_counter()
            value = await compute()
            meta = self._meta(value, time.perf_counter() - started, None)
            record = self._finish(fingerprint, namespace, prefix, value, meta, opts, False)
            if record is not None:
                data = self._entry_bytes(record)
                for tier in self.cache.tiers:
                    await tier.aset(record.signed_key, data, self._ttl_of(record))
            return value, record
        finally:
            if isinstance(token, str):
                await lock_tier.acall("unlock", lock_key, token)  # type: ignore[union-attr]

    def _wait_for_other_process(
        self, fingerprint: int, prefix: str, lock_key: str, opts: Options | None
    ) -> tuple[Found | None, Any]:
        """Poll for the entry another process is computing; bounded by `lock_wait`.

        If the lock frees up without an entry (the other caller failed, or crashed and its
        lock expired), take it and make the call here.
        """
        assert self.cache.lock_tier is not None
        deadline = time.monotonic() + self.cache.lock_wait
        delay = 0.01
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
            found = self._lookup(fingerprint, prefix, opts)
            if found is not None:
                return found, None
            token = self.cache.lock_tier.call("try_lock", lock_key, self.cache.lock_ttl)
            if isinstance(token, str):
                # Double-checked: the holder may have stored its entry and let go of the lock
                # between our lookup and our try_lock; then we follow instead of calling again.
                found = self._lookup(fingerprint, prefix, opts)
                if found is not None:
                    self.cache.lock_tier.call("unlock", lock_key, token)
                    return found, None
            if token is not None:  # taken (a str), or the tier failed (FAILED): call now
                return None, token
        return None, None

    async def _await_other_process(
        self, fingerprint: int, prefix: str, lock_key: str, opts: Options | None
    ) -> tuple[Found | None, Any]:
        assert self.cache.lock_tier is not None
        deadline = time.monotonic() + self.cache.lock_wait
        delay = 0.01
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)
            found = await self._alookup(fingerprint, prefix, opts)
            if found is not None:
                return found, None
            token = await self.cache.lock_tier.acall("try_lock", lock_key, self.cache.lock_ttl)
            if isinstance(token, str):  # double-checked, as in _wait_for_other_process
                found = await self._alookup(fingerprint, prefix, opts)
                if found is not None:
                    await self.cache.lock_tier.acall("unlock", lock_key, token)
                    return found, None
            if token is not None:
                return None, token
        return None, None

    def _meta(
        self, value: Any, latency_s: float, given: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        try:
            meta = (
                dict(given) if given is not None else usage_meta(value, self.usage, self.provider)
            )
        except Exception as error:  # a broken usage hook must not fail the call
            log.warning("llmcache: usage hook of %s failed: %r", self.identity, error)
            meta = {}
        meta["latency_s"] = latency_s
        return meta

    def _count_miss(self, namespace: Namespace, meta: Mapping[str, Any]) -> None:
        self.counters.misses += 1
        self.cache.ledger.miss(namespace.name, meta)

    def _finish(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        value: Any,
        meta: dict[str, Any],
        opts: Options | None,
        write_tiers: bool,
    ) -> Record | None:
        """Count a real call and store its result in memory (and in the tiers, if asked)."""
        self._count_miss(namespace, meta)
        record = None
        if opts is None or not opts.no_store:
            record = self._encode(fingerprint, prefix, value, meta, opts)
        if record is not None:
            self._write_memory(fingerprint, record)
            if write_tiers and self.cache.tiers:
                data = self._entry_bytes(record)
                for tier in self.cache.tiers:
                    tier.set(record.signed_key, data, self._ttl_of(record))
        remember(value, record, None, False, namespace.name)
        return record

    def _encode(
        self, fingerprint: int, prefix: str, value: Any, meta: dict[str, Any], opts: Options | None
    ) -> Record | None:
        try:
            tag, value_json, immutable = self.codec.encode(value)
            decoder = self.codec.decoder(tag)
            if not immutable:
                # Decode once now, on the miss path, so that a hit never meets a value that
                # cannot be decoded (hits decode without a safety net, for speed).
                try:
                    decoder(value_json)
                except Exception as error:
                    raise Unstorable(f"the stored form does not decode back: {error}") from error
        except Unstorable as error:
            self.counters.unstorable += 1
            if not self._warned_unstorable:
                self._warned_unstorable = True
                log.warning(
                    "llmcache: %s returned a value that is not cached: %s", self.identity, error
                )
            return None
        ttl = (opts.ttl if opts is not None else None) or self.ttl or self.cache.ttl
        now = time.time()
        record = Record(
            value_json,
            tag,
            meta,
            now,
            NO_EXPIRY if ttl is None else now + ttl,
            self.cache.keys.signed_key(prefix, fingerprint),
            value if immutable else NOT_SHARED,
        )
        record.decoder = decoder
        return record

    def _write_memory(self, fingerprint: int, record: Record) -> None:
        memory = self.cache.memory
        if memory is not None and memory.store(fingerprint, record):
            self.counters.memory_writes += 1

    def _entry_bytes(self, record: Record) -> bytes:
        return encode_entry(record, self.cache.mac_key, self.cache.compress_above)

    @staticmethod
    def _ttl_of(record: Record) -> float | None:
        left = record.ttl_left(time.time())
        return None if left is None else max(left, 0.001)


def _fresh(record: Record, opts: Options | None, now: float) -> bool:
    if record.expires != NO_EXPIRY and record.expires <= now:
        return False
    return opts is None or opts.max_age is None or now - record.created <= opts.max_age
