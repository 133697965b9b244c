"""Export and import: how long a namespace takes to share, beside what it cannot avoid.

    python benchmarks/bench_bundle.py [entries] [value_bytes]

Workspace A (a disk tier) holds `entries` entries of `value_bytes` each; it exports them,
and workspace B (another disk tier, another secret) imports them. Beside each, its floor,
measured in the same run on the same data:
  * export: reading the same entries from A's disk tier and opening them (scan, get_many,
    decrypt), which an export must do before sealing anything;
  * import: writing as many sealed entries of that size to B's disk tier (set), which an
    import must do after checking the bundle.
Then what the miss path pays for the imported-entries check: a miss of a memory-only cache
with the check installed (nothing imported, and a namespace with imports) beside the same
miss without it.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import measure_interleaved

import llmcache
from llmcache._imported import ImportedCheck
from llmcache._record import decode_entry


def timed(action: Callable[[], Any], repeat: int = 3) -> float:
    """The median wall time of `action` in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    value_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    folder = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    a = llmcache.Cache("bench-a", secret="a" * 32, tiers=[f"disk://{folder}/a"])

    @a.cached(namespace="research")
    def ask(i: int) -> str:
        return os.urandom(value_bytes // 2).hex()

    for i in range(entries):
        ask(i)
    disk = a._tiers[0].backend
    prefix = a._keys.workspace_prefix() + "research:"

    def read_floor() -> None:
        keys = list(disk.scan(prefix))
        for start in range(0, len(keys), 64):
            batch = keys[start : start + 64]
            for key, data in zip(batch, disk.get_many(batch), strict=True):
                decode_entry(data or b"", key, a._entry_aead).meta  # noqa: B018 - parsed

    bundle = folder / "research.llmc"
    summary = a.export_bundle(bundle, "research")
    export_s = timed(lambda: a.export_bundle(bundle, "research", key=summary.key))
    read_s = timed(read_floor)

    b = llmcache.Cache("bench-b", secret="b" * 32, tiers=[f"disk://{folder}/b"])
    b_disk = b._tiers[0].backend
    sample = disk.get(next(iter(disk.scan(prefix)))) or b""
    import_s = timed(lambda: b.import_bundle(bundle, summary.key))
    write_s = timed(lambda: [b_disk.set(f"floor:{i}", sample, None) for i in range(entries)])

    size = bundle.stat().st_size
    print(f"{entries:,} entries of {value_bytes:,} B; bundle {size / 1e6:.1f} MB")
    print(f"{'case':<28} {'seconds':>8} {'entries/s':>10} {'floor s':>8} {'ratio':>6}")
    for name, ours, floor in (
        ("export (disk)", export_s, read_s),
        ("import (disk)", import_s, write_s),
    ):
        print(f"{name:<28} {ours:8.3f} {entries / ours:10,.0f} {floor:8.3f} {ours / floor:6.2f}")

    # -- the miss path: the check's cost ---------------------------------------------------
    def miss_case(marked: bool, installed: bool) -> Callable[[], Any]:
        cache = llmcache.Cache("bench-miss", secret="m" * 32, tiers=["memory"])
        cache.ttl = None
        check = next(c for c in cache._gate.checks if isinstance(c, ImportedCheck))
        if marked:
            check.mark("default")
        if not installed:
            cache._gate.remove(check)
        counter = iter(range(10**9))

        @cache.cached
        def work(i: int) -> int:
            return i

        def one() -> Any:
            with llmcache.options(no_store=True):
                return work(next(counter))

        return one

    results = measure_interleaved(
        {
            "miss, no check": miss_case(False, False),
            "miss, check (none imported)": miss_case(False, True),
            "miss, check (ns imported)": miss_case(True, True),
        },
        batch=50,
        rounds=100,
    )
    floor = results["miss, no check"][0]
    print(f"\n{'case':<28} {'median µs':>10} {'ratio':>6}")
    for name, (median, _) in results.items():
        print(f"{name:<28} {median:10.2f} {median / floor:6.2f}")
    a.close()
    b.close()


if __name__ == "__main__":
    main()
