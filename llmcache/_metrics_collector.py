"""The Prometheus collector behind `llmcache.metrics`: imports prometheus_client at the top,
so it is imported only once prometheus_client is known to be there. What it reports is
`_metric_families.families`, which `llmcache.otel` reports too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._metric_families import BREAKER_STATES, LEDGER_COUNTERS, families

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["BREAKER_STATES", "LEDGER_COUNTERS", "CacheCollector"]


class CacheCollector(Collector):
    """Reads `cache`'s ledger, stats and health when collected (at scrape time)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        for family in families(self.cache):
            if family.kind == "histogram":
                histogram = HistogramMetricFamily(
                    family.name, family.documentation, labels=list(family.labels)
                )
                for values, buckets, total in family.histograms:
                    histogram.add_metric(values, buckets, sum_value=total)
                yield histogram
                continue
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            rendered = kind(family.name, family.documentation, labels=list(family.labels))
            for values, value in family.samples:
                rendered.add_metric(values, value)
            yield rendered
