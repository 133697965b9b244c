"""What `llmcache.otel` costs a hit, in one run: the same memory hit with and without spans.

    python benchmarks/bench_otel.py

The traced case is the same call with the observer switched on around it (an SDK
``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that discards), so the
background thread turns the notes into spans while the hits are timed, as in a service. The
switching itself is timed apart and taken out. Target: at most 1 µs added to the hit path.
Also printed: what making one span from a note costs off the hit path (the background
thread's work per hit). Compare within one run only: the machine is shared and noisy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import measure_interleaved, table

import llmcache
import llmcache.otel
from llmcache._telemetry import OBSERVER


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    cache = llmcache.Cache(workspace="bench-otel", tiers=["memory"])

    @cache.cached
    def ask(question: str) -> dict[str, Any]:
        return {"text": "Caching saves money and time when prompts repeat.", "q": question}

    ask("q")
    llmcache.otel.instrument(tracer_provider=provider)
    maker = OBSERVER[0]
    OBSERVER[0] = None
    cell = OBSERVER

    def plain() -> Any:
        return ask("q")

    def traced() -> Any:
        cell[0] = maker
        result = ask("q")
        cell[0] = None
        return result

    def switching() -> None:
        cell[0] = maker
        cell[0] = None

    timed = measure_interleaved(
        {"memory hit -> dict": plain, "same, traced": traced, "switching only": switching}
    )
    added = timed["same, traced"][0] - timed["memory hit -> dict"][0] - timed["switching only"][0]

    # Off the hit path: the background thread's work per noted hit.
    OBSERVER[0] = maker
    assert maker is not None
    notes = 20_000
    with maker._lock:  # type: ignore[attr-defined]  # the thread waits: notes pile up
        for _ in range(notes):
            ask("q")
        started = time.perf_counter()
    maker.drain()  # type: ignore[attr-defined]
    per_span = (time.perf_counter() - started) / notes * 1e6
    llmcache.otel.uninstrument()
    provider.shutdown()
    cache.close()

    rows = [(name, median, p99, "") for name, (median, p99) in timed.items()]
    print(table(rows))
    verdict = "met" if added <= 1 else "MISSED"
    print(f"added to the hit path: {added:.2f} µs (target <= 1 µs: {verdict})")
    print(f"off the hit path, per hit: {per_span:.1f} µs to make and hand over its span")


if __name__ == "__main__":
    main()
