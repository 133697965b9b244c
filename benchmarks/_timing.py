"""Timing helpers shared by the benchmarks: medians and p99 measured in one run."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any


def measure(
    call: Callable[[], Any], *, batch: int = 200, batches: int = 200
) -> tuple[float, float]:
    """(median, p99) per-call time in microseconds.

    Calls are timed in batches (so the clock's own cost is spread out) after a warm-up; the
    median and 99th percentile are over the batch means. The garbage collector is paused
    while timing, as timeit does.
    """
    for _ in range(batch * 5):
        call()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(batches):
            start = time.perf_counter_ns()
            for _ in range(batch):
                call()
            samples.append((time.perf_counter_ns() - start) / batch / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def table(rows: list[tuple[str, float, float, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'case'.ljust(width)}  {'median µs':>10}  {'p99 µs':>8}  note"]
    for name, median, p99, note in rows:
        lines.append(f"{name.ljust(width)}  {median:>10.2f}  {p99:>8.2f}  {note}")
    return "\n".join(lines)


def measure_interleaved(
    cases: dict[str, Callable[[], Any]], *, batch: int = 100, rounds: int = 300
) -> dict[str, tuple[float, float]]:
    """(median, p99) µs per call for each case, timed in turns.

    Each round times one batch of every case, one after the other, so a burst of noise on
    this shared machine lands on all of them alike and the ratios stay honest.
    """
    for call in cases.values():
        for _ in range(batch * 5):
            call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, call in cases.items():
                start = time.perf_counter_ns()
                for _ in range(batch):
                    call()
                samples[name].append((time.perf_counter_ns() - start) / batch / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    result = {}
    for name, values in samples.items():
        values.sort()
        result[name] = (statistics.median(values), values[int(len(values) * 0.99) - 1])
    return result
