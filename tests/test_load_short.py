"""The load run of scripts/load_redis.py, short: 1,000 asyncio callers and 8 threads on a
real redis-server for a few seconds. No error may reach a caller and memory must level off.
(The full run, 30 s, is the script's default; its figures are quoted in the README.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_load_run_has_no_errors_and_bounded_memory() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load_redis.py"), "--seconds", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0, result["first_errors"]
    assert result["calls"] > 1000
    kinds = result["by_kind"]
    assert kinds.get("memory", 0) and kinds.get("redis", 0) and kinds.get("miss", 0), kinds
    # Bounded: the memory tier is capped, latency samples are a fixed-size reservoir, and
    # nothing else may accumulate per call.
    assert result["rss_end_mib"] - result["rss_start_mib"] < 120, result
