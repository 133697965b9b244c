"""`llmcache.otel`: a span per cached call, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmcache
import llmcache.otel
from llmcache._telemetry import OBSERVER
from tests.clocks import wait_until

USAGE = {"model": "gpt-4o-mini", "provider": "openai", "input_tokens": 1_000, "output_tokens": 200}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    llmcache.otel.instrument(tracer_provider=provider)
    yield exporter
    llmcache.otel.uninstrument()
    provider.shutdown()


def finished(exporter: InMemorySpanExporter) -> list[Any]:
    llmcache.otel.flush()
    return list(exporter.get_finished_spans())


def priced_cache(**options: Any) -> llmcache.Cache:
    return llmcache.Cache(workspace="otel", tiers=["memory"], **options)


def test_a_miss_then_a_hit_each_get_a_span(spans: InMemorySpanExporter) -> None:
    cache = priced_cache()

    @cache.cached(usage=lambda result: USAGE)
    def ask(question: str) -> dict[str, str]:
        return {"answer": question}

    ask("q")
    ask("q")
    miss, hit = finished(spans)
    assert miss.name == hit.name == f"llmcache {ask.cache_site.identity}"  # type: ignore[attr-defined]
    assert miss.attributes["llmcache.outcome"] == "miss"
    assert miss.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert miss.attributes["gen_ai.provider.name"] == "openai"
    assert miss.attributes["gen_ai.usage.input_tokens"] == 1_000
    assert miss.attributes["gen_ai.usage.output_tokens"] == 200
    cost = miss.attributes["llmcache.cost_usd"]
    assert isinstance(cost, float) and cost > 0
    assert hit.attributes["llmcache.outcome"] == "hit"
    assert hit.attributes["llmcache.tier"] == "memory"
    assert hit.attributes["llmcache.namespace"] == "default"
    assert hit.attributes["llmcache.workspace"] == "otel"
    # A hit consumed no tokens: what it avoided is told apart from the GenAI usage.
    assert not any(name.startswith("gen_ai.") for name in hit.attributes)
    assert hit.attributes["llmcache.saved.cost_usd"] == cost
    assert hit.attributes["llmcache.saved.input_tokens"] == 1_000
    assert hit.attributes["llmcache.model"] == "gpt-4o-mini"
    assert hit.start_time is not None and miss.end_time is not None
    assert hit.start_time >= miss.end_time  # the hit's span has the hit's own time


def test_spans_belong_under_the_callers_span(spans: InMemorySpanExporter) -> None:
    cache = priced_cache()
    tracer = TracerProvider().get_tracer("app")  # the application's own spans
    inner: list[Any] = []

    @cache.cached
    def ask(question: str) -> list[str]:
        # What the real call emits (an HTTP client's span) is inside the miss's span.
        span = trace.get_current_span()
        inner.append(span.get_span_context().span_id)
        return [question]

    with tracer.start_as_current_span("request") as request:
        ask("q")
        ask("q")
    llmcache.otel.flush()
    by_outcome = {
        s.attributes.get("llmcache.outcome"): s
        for s in spans.get_finished_spans()
        if s.name.startswith("llmcache")
    }
    request_id = request.get_span_context().span_id
    assert by_outcome["miss"].parent.span_id == request_id
    assert by_outcome["hit"].parent.span_id == request_id
    assert inner == [by_outcome["miss"].context.span_id]


def test_a_failed_real_call_is_an_error_span(spans: InMemorySpanExporter) -> None:
    cache = priced_cache()

    @cache.cached
    def fail(question: str) -> str:
        raise ValueError("provider down")

    with pytest.raises(ValueError):
        fail("q")
    (span,) = finished(spans)
    assert span.attributes["llmcache.outcome"] == "miss"
    assert span.status.status_code == trace.StatusCode.ERROR
    assert any(event.name == "exception" for event in span.events)


def test_lower_tier_hits_bypasses_and_single_flight(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    disk = llmcache.Cache(workspace="otel", tiers=[f"disk://{tmp_path}/d"])
    release = threading.Event()

    @disk.cached
    def slow(question: str) -> list[str]:
        release.wait(10)
        return [question]

    threads = [threading.Thread(target=slow, args=("q",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(disk._flights) == 1)
    release.set()
    for thread in threads:
        thread.join()
    slow("q")  # from disk (no memory tier)
    with llmcache.options(bypass=True):
        slow("q")
    outcomes = sorted(str(s.attributes["llmcache.outcome"]) for s in finished(spans))
    assert outcomes.count("miss") == 1
    assert outcomes.count("bypass") == 1
    assert outcomes.count("hit") + outcomes.count("single_flight") == 3
    tiers = {s.attributes.get("llmcache.tier") for s in finished(spans)}
    assert "disk" in tiers
    disk.close()


async def test_async_calls_get_spans(spans: InMemorySpanExporter) -> None:
    cache = priced_cache()

    @cache.cached
    async def ask(question: str) -> list[str]:
        await asyncio.sleep(0)
        return [question]

    await ask("q")
    await ask("q")
    outcomes = [s.attributes["llmcache.outcome"] for s in finished(spans)]
    assert outcomes == ["miss", "hit"]


def test_nothing_is_emitted_before_instrument_or_after_uninstrument() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache = priced_cache()

    @cache.cached
    def ask(question: str) -> str:
        return question

    assert OBSERVER[0] is None
    ask("before")
    llmcache.otel.instrument(tracer_provider=provider)
    ask("during")
    llmcache.otel.uninstrument()  # the notes taken become spans first
    ask("after")
    ask("during")
    assert OBSERVER[0] is None
    assert [s.attributes["llmcache.outcome"] for s in exporter.get_finished_spans()] == ["miss"]
    assert llmcache.otel.dropped() == 0


def test_the_notes_waiting_are_bounded(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llmcache.otel, "MAX_PENDING", 10)
    cache = priced_cache()

    @cache.cached
    def ask(question: str) -> str:
        return question

    ask("q")
    observer = OBSERVER[0]
    assert observer is not None
    with observer._lock:  # type: ignore[union-attr]  # the background thread cannot drain
        for _ in range(25):
            ask("q")
        assert len(observer._pending) == 10  # type: ignore[union-attr]
    assert llmcache.otel.dropped() == 15
    assert len(finished(spans)) == 1 + 10


def test_a_broken_exporter_never_reaches_the_caller() -> None:
    class Broken(InMemorySpanExporter):
        def export(self, spans: Any) -> Any:
            raise RuntimeError("collector down")

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Broken()))
    llmcache.otel.instrument(tracer_provider=provider)
    try:
        cache = priced_cache()

        @cache.cached
        def ask(question: str) -> str:
            return question + "!"

        assert ask("q") == "q!" and ask("q") == "q!"
        llmcache.otel.flush()
    finally:
        llmcache.otel.uninstrument()


def test_without_opentelemetry_instrument_names_the_extra(tmp_path: Path) -> None:
    """Run where `opentelemetry` cannot be imported: a one-line ConfigError, and the cache
    works (nothing of OpenTelemetry is imported by `import llmcache`)."""
    blocker = tmp_path / "opentelemetry"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    script = (
        "import sys, llmcache, llmcache.otel\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules)\n"
        "try:\n"
        "    llmcache.otel.instrument()\n"
        "except llmcache.ConfigError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'llmcache.otel needs OpenTelemetry: pip install "llmcache[otel]"'


def test_the_metrics_are_the_prometheus_collectors_numbers(tmp_path: Path) -> None:
    """`observe` reports the same families as `llmcache.metrics`, read at collection."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cache = llmcache.Cache(workspace="otel-metrics", tiers=["memory", f"disk://{tmp_path}/d"])

    @cache.cached(namespace="research", usage=lambda result: USAGE)
    def ask(question: str) -> str:
        return question + "!"

    llmcache.otel.observe(cache, meter_provider=provider)
    for question in ("a", "b", "a", "a"):
        ask(question)
    cache.flush()

    def points(name: str) -> list[Any]:
        for resource in reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return list(metric.data.data_points)
        raise AssertionError(f"no metric {name}")

    totals = cache.report().totals
    (hits,) = points("llmcache.hits")
    assert hits.value == totals.hits == 2
    assert dict(hits.attributes) == {
        "workspace": "otel-metrics",
        "namespace": "research",
        "model": "gpt-4o-mini",
    }
    (saved,) = points("llmcache.saved_usd")
    assert saved.value == pytest.approx(totals.saved_usd) and saved.value > 0
    process = {p.attributes["outcome"]: p.value for p in points("llmcache.process_calls")}
    assert process["hit"] == 2 and process["miss"] == 2
    tiers = {p.attributes["tier"]: p.value for p in points("llmcache.tier_writes")}
    assert tiers["memory"] == 2 and len(tiers) == 2  # memory and disk: two entries each
    assert all(value == 2 for value in tiers.values())
    provider.shutdown()
    cache.close()


def test_without_opentelemetry_importable_both_doors_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # an import of it now fails
    cache = priced_cache()
    with pytest.raises(llmcache.ConfigError, match=r"llmcache\[otel\]"):
        llmcache.otel.instrument()
    with pytest.raises(llmcache.ConfigError, match=r"llmcache\[otel\]"):
        llmcache.otel.observe(cache)
    assert OBSERVER[0] is None


def test_a_call_recorded_by_an_adapter_gets_a_miss_span_of_its_length(
    spans: InMemorySpanExporter,
) -> None:
    """A stream is put once complete: its span ends now and starts `latency_s` before."""
    site = priced_cache().site("tests.stream")
    site.put({"q": 1}, "streamed", latency_s=0.25, usage=llmcache.Usage(**USAGE))
    (span,) = finished(spans)
    assert span.attributes["llmcache.outcome"] == "miss"
    assert span.attributes["gen_ai.usage.input_tokens"] == 1_000
    assert span.end_time - span.start_time == pytest.approx(0.25e9, rel=1e-3)


def test_bypassed_notes_are_bounded_too(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llmcache.otel, "MAX_PENDING", 3)
    cache = priced_cache()

    @cache.cached
    def ask(question: str) -> str:
        return question

    observer = OBSERVER[0]
    assert observer is not None
    with observer._lock, llmcache.options(bypass=True):  # type: ignore[union-attr]
        for _ in range(5):
            ask("q")
    assert llmcache.otel.dropped() == 2
    assert [s.attributes["llmcache.outcome"] for s in finished(spans)] == ["bypass"] * 3
    observer._drop_oldest()  # type: ignore[union-attr]  # nothing left: a no-op
    assert llmcache.otel.dropped() == 2


def test_a_drain_that_fails_does_not_stop_the_thread(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = OBSERVER[0]
    assert observer is not None
    failed = threading.Event()
    real_drain = observer.drain  # type: ignore[union-attr]

    def drain_once_broken() -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("exporter exploded")
        real_drain()

    monkeypatch.setattr(observer, "drain", drain_once_broken)
    observer._wake.set()  # type: ignore[union-attr]
    wait_until(failed.is_set)
    cache = priced_cache()

    @cache.cached
    def ask(question: str) -> str:
        return question

    ask("q")
    ask("q")
    wait_until(lambda: len(spans.get_finished_spans()) == 2, what="the thread makes spans again")


def test_after_fork_the_child_drops_the_parents_notes_and_runs_its_own_thread(
    spans: InMemorySpanExporter,
) -> None:
    observer = OBSERVER[0]
    assert observer is not None
    cache = priced_cache()

    @cache.cached
    def ask(question: str) -> str:
        return question

    ask("q")
    with observer._lock:  # type: ignore[union-attr]
        ask("q")  # a note the "parent" still holds
        old_thread = observer._thread  # type: ignore[union-attr]
        llmcache.otel._after_fork_in_child()  # what os.register_at_fork runs in a child
        assert len(observer._pending) == 0  # type: ignore[union-attr]
    assert observer._thread is not old_thread and observer._thread.is_alive()  # type: ignore[union-attr]


def test_metrics_of_a_cache_that_is_gone_are_empty() -> None:
    from llmcache.otel import _Reading

    cache = priced_cache()
    reading = _Reading(cache)
    assert reading.observations("llmcache_no_such_metric", None) == []
    del cache
    gc.collect()
    assert reading.observations("llmcache_hits", None) == []
