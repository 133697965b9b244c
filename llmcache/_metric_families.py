"""The metrics of a cache as plain data, for every exporter: Prometheus (`llmcache.metrics`)
and OpenTelemetry (`llmcache.otel`) render the same families, so their numbers agree.

Read when an exporter collects (a scrape, an OpenTelemetry collection): nothing on the hit
path. Names follow Prometheus' conventions (``llmcache_`` prefix, base units; a counter's
``_total`` is added by the Prometheus renderer); `llmcache.otel` derives its dotted names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cache import Cache
    from ._report import ReportRow
    from ._stats import CacheStats, Health

__all__ = ["BREAKER_STATES", "LEDGER_COUNTERS", "Family", "families"]


@dataclass
class Family:
    """One metric: its name (no ``_total``), kind, help, label names and samples."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    documentation: str
    labels: Sequence[str] = ()
    samples: list[tuple[list[str], float]] = dataclasses.field(default_factory=list)
    # A histogram's samples: label values, cumulative (upper bound, count) buckets ending
    # with ("+Inf", total), and the sum of the observed values.
    histograms: list[tuple[list[str], list[tuple[str, float]], float]] = dataclasses.field(
        default_factory=list
    )

    def add_metric(self, values: Sequence[str], value: float) -> None:
        self.samples.append((list(values), float(value)))


def _counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, "counter", documentation, labels)


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, "gauge", documentation, labels)


BREAKER_STATES = ("closed", "half-open", "open")

# (metric name without _total, ReportRow attribute, help): the ledger, every process.
LEDGER_COUNTERS = (
    ("llmcache_calls", "calls", "Cached calls (hits and misses), every process of the workspace."),
    ("llmcache_hits", "hits", "Calls served from the cache, every process of the workspace."),
    ("llmcache_misses", "misses", "Real calls made, every process of the workspace."),
    ("llmcache_saved_usd", "saved_usd", "US dollars saved by hits (priced calls only)."),
    ("llmcache_spent_usd", "spent_usd", "US dollars spent on real calls (priced calls only)."),
    ("llmcache_saved_seconds", "saved_s", "Seconds of real calls avoided by hits."),
    ("llmcache_spent_seconds", "spent_s", "Seconds spent in real calls."),
    ("llmcache_unpriced_hits", "unpriced_hits", "Hits on calls whose price is unknown."),
    ("llmcache_unpriced_misses", "unpriced_misses", "Real calls whose price is unknown."),
)


def families(cache: Cache) -> list[Family]:
    """Every metric of `cache`, read now (the ledger, this process's counters, the tiers)."""
    found = list(_ledger(cache.workspace, cache.report().rows, cache.ledger.integrity_failures))
    stats = cache.stats()
    found += _process(stats)
    found += _tiers(cache.workspace, stats, cache.health())
    found.append(_latency_histogram(cache))
    return found


def _latency_histogram(cache: Cache) -> Family:
    """Each tier's operation latencies (timed reads: one in 32 on the hit path; every write)."""
    from ._resilience import LATENCY_BOUNDS

    family = Family(
        "llmcache_tier_operation_seconds",
        "histogram",
        "Latency of the tier's successful operations seen by this process (operation: read, "
        "one timed in 32 on the hit path; write, every one).",
        ("workspace", "tier", "operation"),
    )
    for tier in cache._tiers:
        for operation, counts in tier.latency_counts.items():
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*LATENCY_BOUNDS, None), list(counts), strict=True):
                running += count
                buckets.append(("+Inf" if bound is None else repr(bound), running))
            family.histograms.append(
                ([cache.workspace, tier.name, operation], buckets, tier.latency_sums[operation])
            )
    return family


def _ledger(workspace: str, rows: list[ReportRow], integrity_failures: int) -> Iterator[Family]:
    labels = ["workspace", "namespace", "model"]
    for name, attribute, documentation in LEDGER_COUNTERS:
        family = _counter(name, documentation, labels=labels)
        for row in rows:
            values = [workspace, row.group["namespace"], row.group["model"]]
            family.add_metric(values, float(getattr(row, attribute)))
        yield family
    tokens = _counter(
        "llmcache_saved_tokens",
        "Tokens of real calls avoided by hits (kind: input or output).",
        labels=[*labels, "kind"],
    )
    for row in rows:
        values = [workspace, row.group["namespace"], row.group["model"]]
        tokens.add_metric([*values, "input"], row.saved_input_tokens)
        tokens.add_metric([*values, "output"], row.saved_output_tokens)
    yield tokens
    failures = _counter(
        "llmcache_ledger_integrity_failures",
        "Ledger fields this process skipped: not written by this workspace (tampering).",
        labels=["workspace"],
    )
    failures.add_metric([workspace], integrity_failures)
    yield failures


def _process(stats: CacheStats) -> Iterator[Family]:
    calls = _counter(
        "llmcache_process_calls",
        "Cached calls in this process since the cache was created, by outcome "
        "(joined: waited for an identical call in flight, single-flight).",
        labels=["workspace", "outcome"],
    )
    joined = stats.coalesced
    for outcome, value in (
        ("hit", stats.hits),
        ("miss", stats.misses),
        ("joined", joined),
        ("bypassed", stats.bypassed),
    ):
        calls.add_metric([stats.workspace, outcome], value)
    yield calls
    joins = _counter(
        "llmcache_single_flight_joins",
        "Calls in this process that waited for an identical real call instead of making one.",
        labels=["workspace"],
    )
    joins.add_metric([stats.workspace], joined)
    yield joins
    unstorable = _counter(
        "llmcache_unstorable_results",
        "Results returned to the caller but not cacheable (this process).",
        labels=["workspace"],
    )
    unstorable.add_metric([stats.workspace], stats.unstorable)
    yield unstorable


def _tiers(workspace: str, stats: CacheStats, health: Health) -> Iterator[Family]:
    labels = ["workspace", "tier"]
    counters = {
        "hits": "Reads this process served from the tier.",
        "misses": "Reads this process did not find in the tier.",
        "errors": "Tier operations of this process that failed (the call went on without it).",
        "integrity_failures": "Entries that failed verification (forged, altered, moved).",
        "writes": "Entries this process wrote to the tier.",
    }
    for field, documentation in counters.items():
        family = _counter(f"llmcache_tier_{field}", documentation, labels=labels)
        for tier in stats.tiers:
            family.add_metric([workspace, tier.name], getattr(tier, field))
        yield family
    for field, documentation in (
        ("entries", "Entries in the tier (when the tier can tell)."),
        ("bytes", "Bytes held by the tier (when the tier can tell)."),
    ):
        gauge = _gauge(f"llmcache_tier_{field}", documentation, labels=labels)
        for tier in stats.tiers:
            value = getattr(tier, field)
            if value is not None:
                gauge.add_metric([workspace, tier.name], value)
        yield gauge
    states = _gauge(
        "llmcache_tier_breaker_state",
        "1 for the state each breaker of the tier is in (operation: read or write).",
        labels=[*labels, "operation", "state"],
    )
    latency = _gauge(
        "llmcache_tier_latency_seconds",
        "Moving average of the tier's successful operations, seen from this process "
        "(a summary, not a histogram: none is kept on the hit path).",
        labels=labels,
    )
    queued = _gauge(
        "llmcache_tier_queued_writes", "Failed writes waiting to be replayed.", labels=labels
    )
    queued_bytes = _gauge(
        "llmcache_tier_queued_write_bytes", "Bytes held by queued writes.", labels=labels
    )
    dropped = _counter(
        "llmcache_tier_dropped_writes",
        "Queued writes dropped to stay within the queue's bound.",
        labels=labels,
    )
    for shown in health.tiers:
        values = [workspace, shown.name]
        for operation, current in (("read", shown.read_state), ("write", shown.write_state)):
            for state in BREAKER_STATES:
                states.add_metric([*values, operation, state], float(current == state))
        if shown.latency_ms is not None:
            latency.add_metric(values, shown.latency_ms / 1000)
        queued.add_metric(values, shown.queued_writes)
        queued_bytes.add_metric(values, shown.queued_bytes)
        dropped.add_metric(values, shown.dropped_writes)
    yield from (states, latency, queued, queued_bytes, dropped)
    pending = _gauge(
        "llmcache_pending_invalidations",
        "Invalidations made in this process that the shared tier has not taken yet.",
        labels=["workspace"],
    )
    pending.add_metric([workspace], health.pending_invalidations)
    yield pending
