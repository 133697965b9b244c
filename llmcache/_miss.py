"""The miss path of a call site: single-flight, the real call, and storing its result.

Identical concurrent misses make one real call: in a process, threads and asyncio tasks of
any loop share one `Flight` (see `_flights`); across processes, callers share the most
shared tier's lock, held as a lease the leader keeps renewing (see `_leases`), while the
others poll for the entry, bounded by `lock_wait`; a leader that dies stops renewing, and
one of them takes over within about a lease. The leader's result is stored in every tier
and counted in the ledger; a follower gets its own copy, decoded from the stored entry. An
exception reaches every waiter and stores nothing; a cancelled leader's waiters elect one
of them to make the call instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._codec import Unstorable, ValueCodec
from ._flights import Flight
from ._info import remember
from ._leases import LEASES, Lease, lease_seconds
from ._namespaces import Namespace
from ._options import Options
from ._record import NO_EXPIRY, NOT_SHARED, Record, encode_entry
from ._usage import UsageHook, usage_meta

if TYPE_CHECKING:
    from ._cache import Cache
    from ._site import SiteCounters

__all__ = ["Found", "MissPath", "fresh"]

log = logging.getLogger("llmcache")
_T = TypeVar("_T")
Found = tuple[Record, str, Any]  # record, tier name, decoded value (or NOT_SHARED)


class MissPath:
    """The miss half of `CallSite` (a mixin: it uses the site's lookup and serve)."""

    cache: Cache
    identity: str
    counters: SiteCounters
    codec: ValueCodec
    usage: UsageHook | None
    provider: str | None
    ttl: float | None
    _warned_unstorable: bool

    if TYPE_CHECKING:

        def _lookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None: ...

        async def _alookup(
            self, fingerprint: int, prefix: str, opts: Options | None
        ) -> Found | None: ...

        def _lower_lookup(
            self, fingerprint: int, prefix: str, opts: Options | None, count: bool = True
        ) -> Found | None: ...

        async def _alower_lookup(
            self, fingerprint: int, prefix: str, opts: Options | None, count: bool = True
        ) -> Found | None: ...

        def _serve(self, found: Found, namespace: Namespace) -> Any: ...

    def miss(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], _T],
        opts: Options | None,
    ) -> _T:
        flights = self.cache.flights
        while True:
            flight, leading = flights.join(fingerprint)
            if leading:
                break
            if not flight.joinable(None):  # led from this very thread: waiting would hang
                return self._lead(fingerprint, namespace, prefix, compute, opts)[0]
            flight.done.wait()
            if not flight.abandoned:
                return self._joined(flight, namespace)  # type: ignore[no-any-return]
            # Its leader gave up (cancelled): the first of us to look again leads anew.
        try:
            flight.value, flight.record = self._lead(fingerprint, namespace, prefix, compute, opts)
            return flight.value  # type: ignore[no-any-return]
        except Exception as error:
            flight.error = error
            raise
        except BaseException:  # cancelled or interrupted: not an answer for the others
            flight.abandoned = True
            raise
        finally:
            flights.land(fingerprint, flight)

    async def amiss(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: Callable[[], Awaitable[_T]],
        opts: Options | None,
    ) -> _T:
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        flights = self.cache.flights
        loop = asyncio.get_running_loop()
        while True:
            flight, leading = flights.join(fingerprint, loop)
            if leading:
                break
            if not flight.joinable(loop):  # a sync call of this thread leads: cannot wait
                return (await self._alead(fingerprint, namespace, prefix, compute, opts))[0]
            await flight.landed()
            if not flight.abandoned:
                return self._joined(flight, namespace)  # type: ignore[no-any-return]
        try:
            flight.value, flight.record = await self._alead(
                fingerprint, namespace, prefix, compute, opts
            )
            return flight.value  # type: ignore[no-any-return]
        except Exception as error:
            flight.error = error
            raise
        except BaseException:  # cancelled: one waiter takes over, the others join it
            flight.abandoned = True
            raise
        finally:
            flights.land(fingerprint, flight)

    def _joined(self, flight: Flight, namespace: Namespace) -> Any:
        """What a caller that waited for another's flight gets: its error, or its own copy."""
        self.counters.coalesced += 1
        if flight.error is not None:
            raise flight.error
        return self._follow(flight.record, flight.value, namespace)

    def _follow(self, record: Record | None, value: Any, namespace: Namespace) -> Any:
        """What a caller that waited for another's real call gets: its own copy."""
        if record is None:
            remember(value, None, None, False, namespace.name)  # never a stale description
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
        if record is None or not fresh(record, opts, time.time()):
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
        found: Found | None = None
        if lock_tier is not None and (opts is None or not opts.refresh):
            lock_key = self.cache.keys.signed_key(prefix, fingerprint) + ":lock"
            token = lock_tier.call("try_lock", lock_key, self._lease())
            if token is None:  # another process is making this call: wait for its entry
                found, token = self._wait_for_other_process(fingerprint, prefix, lock_key, opts)
            elif isinstance(token, str):
                # Another process may have stored the entry and let go of the lock between
                # our lookup and our try_lock: look once more before paying for a call.
                found = self._lower_lookup(fingerprint, prefix, opts, count=False)
                if found is not None:
                    lock_tier.call("unlock", lock_key, token)
            if found is not None:
                self.counters.coalesced += 1
                return self._follow(found[0], None, namespace), found[0]
        lease = self._hold(lock_key, token)
        try:
            started = time.perf_counter()
            value = compute()
            meta = self._meta(value, time.perf_counter() - started, None)
            return value, self._finish(fingerprint, namespace, prefix, value, meta, opts, True)
        finally:
            if lease is not None and LEASES.drop(lease):
                lease.tier.call("unlock", lock_key, lease.token)

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
        found: Found | None = None
        if lock_tier is not None and (opts is None or not opts.refresh):
            lock_key = self.cache.keys.signed_key(prefix, fingerprint) + ":lock"
            token = await lock_tier.acall("try_lock", lock_key, self._lease())
            if token is None:
                found, token = await self._await_other_process(fingerprint, prefix, lock_key, opts)
            elif isinstance(token, str):  # look once more, as in _lead
                found = await self._alower_lookup(fingerprint, prefix, opts, count=False)
                if found is not None:
                    await lock_tier.acall("unlock", lock_key, token)
            if found is not None:
                self.counters.coalesced += 1
                return self._follow(found[0], None, namespace), found[0]
        lease = self._hold(lock_key, token)
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
            if lease is not None and LEASES.drop(lease):
                await lease.tier.acall("unlock", lock_key, lease.token)

    def _lease(self) -> float:
        """How long a cross-process lock lives between its holder's renewals."""
        assert self.cache.lock_tier is not None
        return lease_seconds(self.cache.lock_tier, self.cache.lock_ttl)

    def _hold(self, lock_key: str, token: Any) -> Lease | None:
        """Keep renewing the lock we took (if we took one) while our real call runs."""
        if not isinstance(token, str):
            return None
        assert self.cache.lock_tier is not None
        return LEASES.hold(self.cache.lock_tier, lock_key, token, self._lease())

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
            token = self.cache.lock_tier.call("try_lock", lock_key, self._lease())
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
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        deadline = time.monotonic() + self.cache.lock_wait
        delay = 0.01
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)
            found = await self._alookup(fingerprint, prefix, opts)
            if found is not None:
                return found, None
            token = await self.cache.lock_tier.acall("try_lock", lock_key, self._lease())
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
            # A str that hits hand out is the cache's own copy, never the object the function
            # returned (maybe an interned literal that unrelated code holds too), so
            # `llmcache.info` can never take someone else's "yes" for this call's result.
            (decoder(value_json) if type(value) is str else value) if immutable else NOT_SHARED,
        )
        record.decoder = decoder
        return record

    def _write_memory(self, fingerprint: int, record: Record) -> None:
        memory = self.cache.memory
        if memory is None:
            return
        try:
            stored = memory.store(fingerprint, record)
        except Exception as error:  # a cache problem must never fail the caller's call
            log.warning("llmcache: the memory tier did not take an entry: %r", error)
            return
        if stored:
            self.counters.memory_writes += 1

    def _entry_bytes(self, record: Record) -> bytes:
        return encode_entry(record, self.cache.entry_aead, self.cache.compress_above)

    @staticmethod
    def _ttl_of(record: Record) -> float | None:
        left = record.ttl_left(time.time())
        return None if left is None else max(left, 0.001)


def fresh(record: Record, opts: Options | None, now: float) -> bool:
    if record.expires != NO_EXPIRY and record.expires <= now:
        return False
    return opts is None or opts.max_age is None or now - record.created <= opts.max_age
