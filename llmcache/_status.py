"""`Cache.stats()` and `Cache.health()`: what the counters and the breakers say, as models.

The pydantic models (`_stats`) are imported here, on the first call, not at `import llmcache`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cache import Cache
    from ._site import SiteCounters
    from ._stats import CacheStats, Health

__all__ = ["health_of", "stats_of"]


def stats_of(cache: Cache, counters: Sequence[SiteCounters]) -> CacheStats:
    """Calls, hits and misses of every site of `cache`, and each tier's counters."""
    from ._stats import CacheStats, TierStats

    hits = sum(c.hits for c in counters)
    misses = sum(c.misses for c in counters)
    coalesced = sum(c.coalesced for c in counters)
    bypassed = sum(c.bypassed for c in counters)
    calls = hits + misses + coalesced + bypassed
    tiers: list[TierStats] = []
    if cache.memory is not None:
        entries, size = cache.memory.size()
        tiers.append(
            TierStats(
                name="memory",
                hits=sum(c.memory_hits for c in counters),
                misses=sum(c.memory_misses for c in counters),
                errors=0,
                integrity_failures=0,
                writes=sum(c.memory_writes for c in counters),
                entries=entries,
                bytes=size,
            )
        )
    for tier in cache._tiers:
        size_info = tier.call("size")
        entries_count, size_bytes = size_info if isinstance(size_info, tuple) else (None, None)
        c = tier.counters
        tiers.append(
            TierStats(
                name=tier.name,
                hits=c.hits,
                misses=c.misses,
                errors=c.errors,
                integrity_failures=c.integrity_failures,
                writes=c.writes,
                entries=entries_count,
                bytes=size_bytes,
            )
        )
    return CacheStats(
        workspace=cache.workspace,
        enabled=cache.enabled,
        calls=calls,
        hits=hits,
        misses=misses,
        hit_rate=(hits + coalesced) / calls if calls else 0.0,
        coalesced=coalesced,
        bypassed=bypassed,
        unstorable=sum(c.unstorable for c in counters),
        tiers=tiers,
    )


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else now - at


def health_of(cache: Cache, pending_invalidations: int) -> Health:
    """Each tier's breakers, last errors, latency and write queue."""
    from ._stats import Health, TierHealth

    tiers = []
    if cache.memory is not None:
        tiers.append(
            TierHealth(
                name="memory",
                state="closed",
                last_error=None,
                last_error_age_s=None,
                latency_ms=None,
                queued_writes=0,
                dropped_writes=0,
                errors=0,
            )
        )
    now = time.time()  # the breakers note errors by the wall clock, not the cache's
    for tier in cache._tiers:
        reads, writes = tier.reads, tier.writes
        tiers.append(
            TierHealth(
                name=tier.name,
                state=tier.state,
                last_error=tier.last_error,
                last_error_age_s=_age(now, tier.last_error_at),
                latency_ms=tier.latency_ms,
                queued_writes=tier.queued_writes,
                dropped_writes=tier.dropped_writes,
                errors=tier.counters.errors,
                read_state=reads.state,
                write_state=writes.state,
                read_error=reads.last_error,
                read_error_age_s=_age(now, reads.last_error_at),
                write_error=writes.last_error,
                write_error_age_s=_age(now, writes.last_error_at),
                queued_bytes=tier.queued_bytes,
                max_queue_bytes=tier.max_queue_bytes,
            )
        )
    # A check that works degraded says so (`health_note`): rate limits without shared windows.
    notes = [getattr(check, "health_note", _no_note)() for check in cache._gate.checks]
    return Health(
        ok=all(t.state == "closed" for t in tiers),
        tiers=tiers,
        pending_invalidations=pending_invalidations,
        notes=[note for note in notes if note],
    )


def _no_note() -> None:
    return None
