"""Import time: `import llmcache` beside `import cachetools`, as whole fresh processes.

    python benchmarks/bench_import.py [runs]

Each run starts one fresh interpreter per case (`python -c pass`, `python -c "import
cachetools"`, then `python -c "import llmcache"`), interleaved so that a busy machine slows
them alike; the medians are over the runs. The time is the whole process (interpreter
start-up included), as a user sees it. One `python -X importtime -c "import llmcache"`
then lists the modules that cost the most (cumulative, llmcache's own included).
Target: `import llmcache` takes at most 4x `import cachetools`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_RATIO = 4.0
# Compiled modules are cached as a user's installation caches them, but outside the tree
# (PYTHONDONTWRITEBYTECODE would have every process compile llmcache again).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "llmcache-bench-pycache")

# "" is an interpreter that imports nothing: the start-up every process pays.
CASES = ("", "cachetools", "llmcache")


def run_once(module: str) -> float:
    """Seconds for a fresh interpreter that imports `module` (nothing if "") and exits."""
    start = time.perf_counter()
    code = f"import {module}" if module else "pass"
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
    return time.perf_counter() - start


def top_offenders(count: int = 15) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest imports under `import llmcache`.

    `-X importtime` lists a module's imports before the module itself, indented one more
    level: llmcache's imports are the rows between the previous top-level row (`site`, the
    interpreter's own start-up) and llmcache's.
    """
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import llmcache"],
        check=True,
        env=ENV,
        capture_output=True,
        text=True,
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2].rstrip()
        if name == " llmcache":
            return sorted([*rows, (int(parts[1]), name)], reverse=True)[:count]
        if not name.startswith("  "):  # another top-level import: not llmcache's
            rows = []
        else:
            rows.append((int(parts[1]), name))
    raise RuntimeError("no llmcache row in the -X importtime output")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for module in CASES:  # warm the OS file cache and the .pyc files first
        run_once(module)
    times: dict[str, list[float]] = {module: [] for module in CASES}
    for _ in range(runs):
        for module in CASES:
            times[module].append(run_once(module))
    medians = {module: statistics.median(samples) for module, samples in times.items()}
    print(f"{runs} fresh processes each, interleaved (median wall time of the whole process):")
    for module in CASES:
        label = f"import {module}" if module else "pass (start-up alone)"
        print(f"  {label:<22}  {medians[module] * 1000:7.1f} ms")
    ratio = medians["llmcache"] / medians["cachetools"]
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio llmcache / cachetools: {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {verdict})")
    print("Slowest imports under `import llmcache` (python -X importtime, cumulative):")
    for micros, name in top_offenders():
        print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
