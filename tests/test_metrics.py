"""`llmcache.metrics`: the Prometheus collector on an app's own registry and on the
dashboard's /metrics, scraped and read back by prometheus_client's own text parser."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import llmcache
import llmcache.metrics
from llmcache._errors import MissingDependencyError
from tests.test_dashboard import MODEL, WORKSPACE, populate, running

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample as {(name, sorted labels): value}, through the real parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[llmcache.Cache]:
    folder = tmp_path / "cache"
    populate(folder, n=6)
    populate(folder, namespace="research", model="claude-sonnet-4-6", n=4)
    cache = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"])

    @cache.cached(namespace="local")
    def shout(text: str) -> str:
        return text.upper()

    for text in ("a", "a", "b"):
        shout(text)  # this process: memory hits and misses
    yield cache
    cache.close()


def test_a_registry_of_the_apps_own_reads_the_ledger_and_the_tiers(shop: llmcache.Cache) -> None:
    registry = CollectorRegistry()
    collector = llmcache.metrics.register(shop, registry)
    samples = parse(generate_latest(registry).decode())
    # health first: reading the ledger and the sizes moves the tier's latency average.
    health = shop.health()
    report, stats = shop.report(), shop.stats()
    for row in report.rows:
        where = {"workspace": WORKSPACE, **row.group}
        assert value(samples, "llmcache_calls_total", **where) == row.calls
        assert value(samples, "llmcache_hits_total", **where) == row.hits
        assert value(samples, "llmcache_misses_total", **where) == row.misses
        assert value(samples, "llmcache_saved_usd_total", **where) == pytest.approx(row.saved_usd)
        assert value(samples, "llmcache_spent_usd_total", **where) == pytest.approx(row.spent_usd)
        assert value(samples, "llmcache_saved_seconds_total", **where) == pytest.approx(row.saved_s)
        saved_in = value(samples, "llmcache_saved_tokens_total", **where, kind="input")
        assert saved_in == row.saved_input_tokens
    support = {"workspace": WORKSPACE, "namespace": "support", "model": MODEL}
    assert value(samples, "llmcache_hits_total", **support) == 3
    assert value(samples, "llmcache_saved_usd_total", **support) > 0
    for tier in stats.tiers:
        where = {"workspace": WORKSPACE, "tier": tier.name}
        assert value(samples, "llmcache_tier_hits_total", **where) == tier.hits
        assert value(samples, "llmcache_tier_misses_total", **where) == tier.misses
        assert value(samples, "llmcache_tier_integrity_failures_total", **where) == 0
    memory = {"workspace": WORKSPACE, "tier": "memory"}
    assert value(samples, "llmcache_tier_hits_total", **memory) == 1
    process = {"workspace": WORKSPACE}
    assert value(samples, "llmcache_process_calls_total", **process, outcome="hit") == stats.hits
    assert value(samples, "llmcache_process_calls_total", **process, outcome="miss") == 2
    assert value(samples, "llmcache_single_flight_joins_total", **process) == stats.coalesced
    disk = health.tiers[-1]
    where = {"workspace": WORKSPACE, "tier": disk.name}
    assert (
        value(samples, "llmcache_tier_breaker_state", **where, operation="read", state="closed")
        == 1
    )
    assert (
        value(samples, "llmcache_tier_breaker_state", **where, operation="write", state="open") == 0
    )
    assert disk.latency_ms is not None
    assert value(samples, "llmcache_tier_latency_seconds", **where) == pytest.approx(
        disk.latency_ms / 1000
    )
    assert value(samples, "llmcache_tier_queued_writes", **where) == disk.queued_writes == 0
    assert value(samples, "llmcache_ledger_integrity_failures_total", **process) == 0
    registry.unregister(collector)
    assert "llmcache_" not in generate_latest(registry).decode()


def test_tier_latency_is_a_histogram_per_operation(shop: llmcache.Cache) -> None:
    """Every write and every timed read lands in one bucket; buckets are cumulative."""
    registry = CollectorRegistry()
    llmcache.metrics.register(shop, registry)
    text = generate_latest(registry).decode()
    (family,) = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "llmcache_tier_operation_seconds"
    ]
    assert family.type == "histogram"
    disk = shop.stats().tiers[-1]
    where = {"workspace": WORKSPACE, "tier": disk.name}
    samples = parse(text)
    writes = value(samples, "llmcache_tier_operation_seconds_count", **where, operation="write")
    assert writes >= disk.writes == 2  # the two misses' entries (and ledger flushes, if any)
    reads = value(samples, "llmcache_tier_operation_seconds_count", **where, operation="read")
    assert reads >= 1  # the first read of a tier is always timed
    for operation in ("read", "write"):
        buckets = sorted(
            (float(s.labels["le"]), s.value)
            for s in family.samples
            if s.name.endswith("_bucket")
            and s.labels["operation"] == operation
            and s.labels["tier"] == disk.name
        )
        counts = [count for _, count in buckets]
        assert counts == sorted(counts)  # cumulative
        assert buckets[-1][0] == float("inf")
        total = value(
            samples, "llmcache_tier_operation_seconds_count", **where, operation=operation
        )
        assert counts[-1] == total
        seconds = value(
            samples, "llmcache_tier_operation_seconds_sum", **where, operation=operation
        )
        assert 0 < seconds < total * 5  # each well under its timeout


def test_names_follow_prometheus_conventions(shop: llmcache.Cache) -> None:
    registry = CollectorRegistry()
    llmcache.metrics.register(shop, registry)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert families
    for family in families:
        assert family.name.startswith("llmcache_"), family.name
        if family.type == "counter":
            assert all(s.name == family.name + "_total" for s in family.samples)
        assert not any(unit in family.name for unit in ("_ms", "_dollars", "_milliseconds"))
        assert family.documentation


def test_the_default_registry(shop: llmcache.Cache) -> None:
    collector = llmcache.metrics.register(shop)
    try:
        assert "llmcache_hits_total" in generate_latest(REGISTRY).decode()
    finally:
        REGISTRY.unregister(collector)


def test_the_dashboard_serves_the_same_metrics(shop: llmcache.Cache) -> None:
    with running(shop) as url:
        scraped = httpx.get(url + "metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = parse(scraped.text)
    totals = shop.report().totals
    hits = sum(v for (name, _), v in samples.items() if name == "llmcache_hits_total")
    saved = sum(v for (name, _), v in samples.items() if name == "llmcache_saved_usd_total")
    assert hits == totals.hits == 6 and saved == pytest.approx(totals.saved_usd)


def test_without_prometheus_client_the_error_names_the_extra(
    shop: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"llmcache\[dashboard\]"):
        llmcache.metrics.register(shop)


def test_import_llmcache_loads_no_metrics_or_web_library() -> None:
    code = (
        "import json, sys, llmcache, llmcache.metrics, llmcache.dashboard; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('prometheus_client', 'starlette', 'uvicorn'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(loaded.stdout) == []
