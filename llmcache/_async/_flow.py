"""The general path of a cached call: options → key → tiers → single-flight miss → store.

This file is the one source of both flows: `scripts/unasync.py` writes the sync copy,
`llmcache/_sync/_flow.py`, from it (`llmcache/_io.py` lists what it renames), and CI checks
that the copy is current. The hot path (`llmcache/_hot.py`) serves the common hit without
coming here; a hypothesis test proves the two give the same results.

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

import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._canonical import canonical_bytes, canonical_value
from .._flights import Flight
from .._gate import PendingCall, Substitute, Tickets, call_fields
from .._info import remember
from .._io import AsyncCompute, asleep, running_loop
from .._leases import LEASES, Lease, lease_seconds
from .._options import Options, options_for
from .._record import Record
from .._steps import (
    MISS,
    Found,
    bypassed,
    count_miss,
    encode,
    entry_bytes,
    follow,
    just_finished,
    memory_lookup,
    meta_of,
    record_miss,
    serve,
    ttl_of,
    verify,
    write_memory,
)
from .._telemetry import OBSERVER, real_call

if TYPE_CHECKING:
    from .._namespaces import Namespace
    from .._site import CallSite
    from .._usage import Usage

__all__ = ["AsyncFlow"]

_T = TypeVar("_T")
Keep = Callable[[Any], bool]  # whether a real call's result may be stored
# A call's canonical bytes, or how to make them again (only a miss's checks read them).
Body = bytes | Callable[[], bytes] | None


class AsyncFlow:
    """One site's calls, the long way (everything the hot path leaves to it)."""

    __slots__ = ("site",)

    def __init__(self, site: CallSite) -> None:
        self.site = site

    # -- request → key ---------------------------------------------------------------------
    def canonical(self, request: Mapping[str, Any]) -> bytes:
        """The long way to a request's canonical bytes (the hot path makes the first try)."""
        site = self.site
        return canonical_bytes(request, site.identity, (site.identity, site.version))

    async def prepare(self, body: bytes) -> tuple[Namespace, int, str, Options | None]:
        """(namespace, fingerprint, key prefix, options) of a call's canonical body."""
        site = self.site
        opts = options_for(site.cache._mode)
        namespace = site.namespace
        if opts is not None and opts.namespace:
            namespace = site.cache.namespace(opts.namespace, site.identity)
        await site.cache.aload(namespace)
        seed, prefix = namespace.state
        if opts is not None and opts.sample is not None:
            body += b"\x00sample:" + canonical_value(opts.sample)
        from .._fingerprint import xxh3_128

        return namespace, xxh3_128(body, seed), prefix, opts

    async def key(self, request: Mapping[str, Any]) -> str:
        """The signed key `request` has under the current options."""
        _, fingerprint, prefix, _ = await self.prepare(self.canonical(request))
        return self.site.cache._keys.signed_key(prefix, fingerprint)

    # -- the whole call ---------------------------------------------------------------------
    async def run(
        self,
        make_body: Callable[[], bytes],
        compute: AsyncCompute[_T],
        keep: Keep | None = None,
    ) -> _T:
        """A call the hot path did not serve: bypassed, under options, or not fast-keyable."""
        site = self.site
        opts = options_for(site.cache._mode)
        if bypassed(site, opts):
            value = await compute()
            remember(value, None, None, False, site.namespace.name)  # never a stale hit
            observer = OBSERVER[0]
            if observer is not None:
                observer.bypassed(site, site.namespace.name)
            return value
        body = make_body()
        namespace, fingerprint, prefix, opts = await self.prepare(body)
        return await self.resolve(fingerprint, namespace, prefix, compute, opts, True, keep, body)

    async def resolve(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: AsyncCompute[_T],
        opts: Options | None,
        check_memory: bool,
        keep: Keep | None = None,
        body: Body = None,
    ) -> _T:
        """Serve a keyed call: look it up (memory unless already checked), else call it.

        A keyed call is the same parameters here, in `miss` and in `lead`: the fingerprint,
        its namespace and key prefix, the computation, the options, `keep` and its body.
        """
        if opts is None or not opts.refresh:
            if check_memory:
                found = await self.lookup(fingerprint, prefix, opts)
            else:
                found = await self.lower_lookup(fingerprint, prefix, opts)
            if found is not None:
                value: _T = serve(self.site, found, namespace)
                return value
        return await self.miss(fingerprint, namespace, prefix, compute, opts, keep, body)

    async def get(self, request: Mapping[str, Any]) -> Any:
        """The cached value for `request` (counted as a hit), or MISS."""
        site = self.site
        if bypassed(site, options_for(site.cache._mode)):
            return MISS
        namespace, fingerprint, prefix, opts = await self.prepare(self.canonical(request))
        if opts is not None and opts.refresh:
            return MISS
        found = await self.lookup(fingerprint, prefix, opts)
        return MISS if found is None else serve(site, found, namespace)

    async def put(
        self,
        request: Mapping[str, Any],
        value: Any,
        latency_s: float,
        meta: Mapping[str, Any] | None,
        usage: Usage | None = None,
    ) -> Record | None:
        """Record a real call the adapter made itself (e.g. a completed stream)."""
        site = self.site
        if bypassed(site, options_for(site.cache._mode)):
            return None
        body = self.canonical(request)
        namespace, fingerprint, prefix, opts = await self.prepare(body)
        full_meta = meta_of(site, value, latency_s, meta, usage)
        site.cache._gate.settle(self.claimed_tickets(fingerprint), full_meta)
        full_meta.update(call_fields(PendingCall(site, namespace, fingerprint, prefix, opts, body)))
        count_miss(site, namespace, full_meta)
        observer = OBSERVER[0]
        if observer is not None:
            observer.recorded(site, namespace.name, full_meta)
        if opts is not None and opts.no_store:
            return None
        record = encode(site, fingerprint, prefix, value, full_meta, opts)
        if record is not None:
            write_memory(site, fingerprint, record)
            await self.store_below(record)
        remember(value, record, None, False, namespace.name)
        return record

    # -- tiers ------------------------------------------------------------------------------
    async def lookup(self, fingerprint: int, prefix: str, opts: Options | None) -> Found | None:
        found = memory_lookup(self.site, fingerprint, opts)
        if found is not None or not self.site.cache._tiers:
            return found
        return await self.lower_lookup(fingerprint, prefix, opts)

    async def lower_lookup(
        self, fingerprint: int, prefix: str, opts: Options | None, count: bool = True
    ) -> Found | None:
        """The first tier below memory that holds a good entry; it fills the tiers above."""
        site = self.site
        signed_key = site.cache._keys.signed_key(prefix, fingerprint)
        for index, tier in enumerate(site.cache._tiers):
            data = await tier.aget(signed_key)
            found = verify(site, tier, data, signed_key, opts, count)
            if found is not None and data is not None:
                await self.promote(fingerprint, found[0], data, index)
                return found
        return None

    async def promote(self, fingerprint: int, record: Record, data: bytes, index: int) -> None:
        """Copy an entry found in tier `index` into every faster tier (memory included)."""
        site = self.site
        write_memory(site, fingerprint, record)
        for upper in site.cache._tiers[:index]:
            await upper.aset(record.signed_key, data, ttl_of(site, record))

    async def store_below(self, record: Record) -> None:
        """Write a new record to every tier below memory."""
        site = self.site
        tiers = site.cache._tiers
        if tiers:
            data = entry_bytes(site, record)
            for tier in tiers:
                await tier.aset(record.signed_key, data, ttl_of(site, record))

    # -- the miss: one real call per key ----------------------------------------------------
    async def miss(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: AsyncCompute[_T],
        opts: Options | None,
        keep: Keep | None = None,
        body: Body = None,
    ) -> _T:
        """Make the real call, or wait for the identical one in flight (single-flight).

        Takes the keyed call as `resolve` does (the same parameters).
        """
        flights = self.site.cache._flights
        loop = running_loop()
        while True:
            flight, leading = flights.join(fingerprint, loop)
            if leading:
                break
            if not flight.joinable(loop):  # led from this very thread: waiting would hang
                value, _ = await self.lead(
                    fingerprint, namespace, prefix, compute, opts, keep, body
                )
                return value
            await flight.alanded()
            if not flight.abandoned:
                return self.joined(flight, namespace)  # type: ignore[no-any-return]
            # Its leader gave up (cancelled): the first of us to look again leads anew.
        try:
            flight.value, flight.record = await self.lead(
                fingerprint, namespace, prefix, compute, opts, keep, body
            )
            return flight.value  # type: ignore[no-any-return]
        except Exception as error:
            flight.error = error
            raise
        except BaseException:  # cancelled or interrupted: not an answer for the others
            flight.abandoned = True
            raise
        finally:
            flights.land(fingerprint, flight)

    def joined(self, flight: Flight, namespace: Namespace) -> Any:
        """What a caller that waited for another's flight gets: its error, or its own copy."""
        self.site.counters.coalesced += 1
        if flight.error is not None:
            raise flight.error
        return follow(self.site, flight.record, flight.value, namespace)

    async def lead(
        self,
        fingerprint: int,
        namespace: Namespace,
        prefix: str,
        compute: AsyncCompute[_T],
        opts: Options | None,
        keep: Keep | None,
        body: Body = None,
    ) -> tuple[_T, Record | None]:
        """Make the real call (unless another process is making it): (value, its record).

        Before the call, the cache's checks (`_gate`: replay mode, budget, rate limits) are
        entered, while this caller holds the cross-process lock: the processes waiting for
        this call wait for its result, and spend no slot of a limit themselves.
        """
        site = self.site
        finished = just_finished(site, fingerprint, namespace, opts)
        if finished is not None:
            return finished
        lock_tier, lock_key, token = site.cache._lock_tier, "", None
        found: Found | None = None
        if lock_tier is not None and (opts is None or not opts.refresh):
            lock_key = site.cache._keys.signed_key(prefix, fingerprint) + ":lock"
            token = await lock_tier.acall("try_lock", lock_key, self.lease_seconds())
            if token is None:  # another process is making this call: wait for its entry
                found, token = await self.wait_for_other_process(
                    fingerprint, prefix, lock_key, opts
                )
            elif isinstance(token, str):
                # Another process may have stored the entry and let go of the lock between
                # our lookup and our try_lock: look once more before paying for a call.
                found = await self.lower_lookup(fingerprint, prefix, opts, count=False)
                if found is not None:
                    await lock_tier.acall("unlock", lock_key, token)
            if found is not None:
                site.counters.coalesced += 1
                return follow(site, found[0], None, namespace), found[0]
        lease = self.hold(lock_key, token)
        try:
            gate = site.cache._gate
            tickets: Tickets = []
            pending = PendingCall(site, namespace, fingerprint, prefix, opts, body)
            if gate.checks:
                entered = await gate.aenter(pending)
                if isinstance(entered, Substitute):
                    return serve(site, entered.found, namespace), entered.found[0]
                tickets = entered
            try:
                with real_call(site, namespace.name) as watched:  # an observer's span, if any
                    started = time.perf_counter()
                    value = await compute()
                    meta = meta_of(site, value, time.perf_counter() - started, None)
                    watched.done(meta)
            except BaseException:
                gate.settle(tickets, None)
                raise
            gate.settle(tickets, meta)
            meta.update(call_fields(pending))
            store = keep is None or keep(value)
            record = record_miss(site, fingerprint, namespace, prefix, value, meta, opts, store)
            if record is not None:
                await self.store_below(record)
            return value, record
        finally:
            if lease is not None and LEASES.drop(lease):
                await lease.tier.acall("unlock", lock_key, lease.token)

    def lease_seconds(self) -> float:
        """How long a cross-process lock lives between its holder's renewals."""
        cache = self.site.cache
        assert cache._lock_tier is not None
        return lease_seconds(cache._lock_tier, cache.lock_ttl)

    def hold(self, lock_key: str, token: Any) -> Lease | None:
        """Keep renewing the lock we took (if we took one) while our real call runs."""
        if not isinstance(token, str):
            return None
        lock_tier = self.site.cache._lock_tier
        assert lock_tier is not None
        return LEASES.hold(lock_tier, lock_key, token, self.lease_seconds())

    async def wait_for_other_process(
        self, fingerprint: int, prefix: str, lock_key: str, opts: Options | None
    ) -> tuple[Found | None, Any]:
        """Poll for the entry another process is computing; bounded by `lock_wait`.

        If the lock frees up without an entry (the other caller failed, or crashed and its
        lock expired), take it and make the call here.
        """
        cache = self.site.cache
        lock_tier = cache._lock_tier
        assert lock_tier is not None
        deadline = time.monotonic() + cache.lock_wait
        delay = 0.01
        while time.monotonic() < deadline:
            await asleep(delay)
            delay = min(delay * 1.5, 0.2)
            found = await self.lookup(fingerprint, prefix, opts)
            if found is not None:
                return found, None
            token = await lock_tier.acall("try_lock", lock_key, self.lease_seconds())
            if isinstance(token, str):
                # Double-checked: the holder may have stored its entry and let go of the lock
                # between our lookup and our try_lock; then we follow instead of calling again.
                found = await self.lookup(fingerprint, prefix, opts)
                if found is not None:
                    await lock_tier.acall("unlock", lock_key, token)
                    return found, None
            if token is not None:  # taken (a str), or the tier failed (FAILED): call now
                return None, token
        return None, None

    # -- a delivery the adapter finishes later (streams) ------------------------------------
    async def claim(self, request: Mapping[str, Any]) -> tuple[Any, Callable[[], None]]:
        """(value, release) for a hit, or (MISS, release) to lead this request's call.

        Waits, `lock_wait` at most in all, for an identical call of this process in flight,
        then looks again; its leader's `release()` wakes the waiters once the result is
        stored (or not: then one of them leads). A bypassed call, and a caller whose own
        thread or task leads the identical call, make their own call, unclaimed: release is
        then a no-op.
        """
        site = self.site
        opts = options_for(site.cache._mode)
        if not site.cache.enabled or (opts is not None and opts.bypass):
            return MISS, _nothing  # not counted here: the `put` that follows counts it
        loop = running_loop()
        flights = site.cache._flights
        deadline = time.monotonic() + site.cache.lock_wait
        waited = False
        while True:
            if waited:  # served by the call we waited for: single-flight, as `joined` counts
                namespace, fingerprint, prefix, opts = await self.prepare(self.canonical(request))
                found = await self.lookup(fingerprint, prefix, opts)
                if found is not None:
                    site.counters.coalesced += 1
                    return follow(site, found[0], None, namespace), _nothing
            else:
                value = await self.get(request)
                if value is not MISS:
                    return value, _nothing
                _, fingerprint, _, _ = await self.prepare(self.canonical(request))
            flight, leading = flights.join(fingerprint, loop)
            if leading:
                return await self.admit(
                    request, functools.partial(flights.land, fingerprint, flight)
                )
            left = deadline - time.monotonic()
            if not flight.joinable(loop) or left <= 0:
                # Our own thread leads it, or its stream outlived `lock_wait`: call unclaimed.
                return await self.admit(request, _nothing)
            await flight.alanded(left)
            waited = True

    async def admit(
        self, request: Mapping[str, Any], land: Callable[[], None]
    ) -> tuple[Any, Callable[[], None]]:
        """A claimed call about to be made by the adapter: enter the cache's checks (as
        `lead` does), which may refuse it or offer an entry to serve instead. Their tickets
        are settled by the `put` of its result, or by `release()` if none comes."""
        site = self.site
        gate = site.cache._gate
        if not gate.checks:
            return MISS, land
        namespace, fingerprint, prefix, opts = await self.prepare(self.canonical(request))
        pending = PendingCall(
            site, namespace, fingerprint, prefix, opts, lambda: self.canonical(request)
        )
        try:
            entered = await gate.aenter(pending)
        except BaseException:
            land()
            raise
        if isinstance(entered, Substitute):
            land()
            return serve(site, entered.found, namespace), _nothing
        claims = site.claims.setdefault(fingerprint, [])
        claims.append(entered)
        return MISS, functools.partial(_release_claim, site, fingerprint, entered, land)

    def claimed_tickets(self, fingerprint: int) -> Tickets:
        """The checks' tickets of the claimed call whose result `put` records, if any."""
        claims = self.site.claims.get(fingerprint)
        if not claims:
            return []
        tickets = claims.pop(0)
        if not claims:
            self.site.claims.pop(fingerprint, None)
        return tickets


def _release_claim(
    site: CallSite, fingerprint: int, tickets: Tickets, land: Callable[[], None]
) -> None:
    """The release of a claimed call: settle its checks as failed if no `put` did (the
    stream was abandoned), then wake the identical calls waiting for it."""
    claims = site.claims.get(fingerprint)
    try:
        if claims is not None and any(t is tickets for t in claims):
            claims[:] = [t for t in claims if t is not tickets]
            if not claims:
                site.claims.pop(fingerprint, None)
            site.cache._gate.settle(tickets, None)
    finally:
        land()


def _nothing() -> None:
    """The release of a call that leads no flight (a hit, or an unclaimed call)."""
