"""The demo, the README's main job: completes, reruns from the persistent tier, writes HTML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _demo(folder: Path, html: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCACHE_", "OPENAI_"))}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "llmcache",
            "demo",
            "--requests",
            "150",
            "--dir",
            str(folder),
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_demo_runs_twice_and_the_second_run_is_served_from_disk(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    first = _demo(tmp_path / "cache", html)
    assert first.returncode == 0, first.stderr
    assert "local OpenAI-compatible server" in first.stdout  # says which endpoint it used
    assert "first run on this cache folder" in first.stdout
    assert "total" in first.stdout and "saved" in first.stdout
    second = _demo(tmp_path / "cache", html)
    assert second.returncode == 0, second.stderr
    assert "0 real calls" in second.stdout
    assert "stored by an earlier run" in second.stdout
    page = html.read_text()
    assert "<svg class=bars" in page  # the daily savings bars are embedded
    assert "research" in page and "support" in page
