"""Prometheus metrics of a cache, read when Prometheus scrapes: nothing on the hit path.

    from prometheus_client import CollectorRegistry
    import llmcache.metrics

    registry = CollectorRegistry()            # or leave it out: prometheus_client's default
    llmcache.metrics.register(cache, registry)

Two kinds of numbers, named apart:

* ``llmcache_calls_total``, ``llmcache_hits_total``, ``llmcache_saved_usd_total``, ... (by
  namespace and model) come from the ledger: every process of the workspace, all days. Any
  process reports the same totals, so do not sum them across scrape targets; take the max.
* ``llmcache_process_*`` and ``llmcache_tier_*`` describe this process: its calls since the
  cache was created, and each tier's counters, breakers, latency and write queue as this
  process sees them.

Tier latency is a moving average of successful operations (no histogram is kept on the hit
path), so it is a gauge, ``llmcache_tier_latency_seconds``, not a histogram.

prometheus_client (the ``dashboard`` extra) is imported by `register` and `collector`, not
by ``import llmcache`` nor by importing this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import MissingDependencyError

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["collector", "exposition", "register"]

_HINT = "install the dashboard extra: pip install 'llmcache[dashboard]'"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as error:
        message = f"llmcache.metrics needs prometheus_client; {_HINT}"
        raise MissingDependencyError(message) from error
    return prometheus_client


def collector(cache: Cache) -> Any:
    """A prometheus_client Collector of `cache`, not registered anywhere."""
    _prometheus()
    from ._metrics_collector import CacheCollector

    return CacheCollector(cache)


def register(cache: Cache, registry: Any = None) -> Any:
    """Register `cache`'s collector on `registry` (default: prometheus_client's own) and
    return it (``registry.unregister(it)`` removes it)."""
    prometheus_client = _prometheus()
    found = collector(cache)
    (prometheus_client.REGISTRY if registry is None else registry).register(found)
    return found


def exposition(cache: Cache) -> tuple[bytes, str]:
    """`cache`'s metrics in Prometheus' text format, and its content type (for `/metrics`)."""
    prometheus_client = _prometheus()
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(collector(cache))
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST
