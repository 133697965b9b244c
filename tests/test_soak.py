"""The chaos soak, short: processes, Redis killed / hung / paused / out of memory, invalidations.

The long run (`python scripts/soak.py --seconds 600 --seed N`) is in the README; this one runs
on every CI run with one seed, so a change that brings back stale answers, a caller exception
or a stuck call fails the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_chaos_soak_serves_no_stale_answer() -> None:
    command = [
        sys.executable,
        str(ROOT / "scripts" / "soak.py"),
        "--seconds", "50",
        "--seed", "1",
        "--workers", "2",
        "--callers", "60",
        "--threads", "2",
        "--fault-pace", "0.35",
        "--quiet",
        "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result = json.loads(lines[-1])
    summary = done.stdout[-3000:]
    # Every kind of fault happened at least once, and the workers did real work through them.
    assert all(count >= 1 for count in result["faults"].values()), summary
    assert result["invalidations"] >= 1, summary
    assert result["calls"] > 1000 and result["real_calls"] > 0, summary
    assert result["missing_workers"] == 0, summary
    # The promise: no stale answer, no exception in a caller, no stuck call.
    assert result["stale"] == 0, summary
    assert result["exceptions"] == 0, summary
    assert result["stuck"] == 0, summary
    assert done.returncode == 0, summary
