"""The `llmcache` command line, driven as a user would: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llmcache


def run(
    *args: str, env_dir: Path, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMCACHE_", "OPENAI_"))
    }
    environment.update({"LLMCACHE_DIR": str(env_dir), "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "llmcache", *args],
        capture_output=True,
        text=True,
        env=environment,
        input=stdin,
        timeout=120,
    )


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A disk cache folder holding a few entries and ledger counts of workspace 'cli'."""
    folder = tmp_path / "cache"
    cache = llmcache.Cache(workspace="cli", tiers=["memory", f"disk://{folder}"])

    def usage(result: object) -> dict[str, object]:
        return {"model": "gpt-4o-mini", "input_tokens": 1200, "output_tokens": 300}

    @cache.cached(namespace="research", usage=usage)
    def ask(q: str) -> str:
        return q.upper()

    for q in ("a", "b", "a", "a"):
        ask(q)
    other = llmcache.Cache(workspace="other", tiers=["memory", f"disk://{folder}"])
    other.cached(lambda q: q)("keep me")
    other.close()
    cache.close()
    return folder


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run("--help", env_dir=tmp_path)
    assert result.returncode == 0
    for command in ("stats", "report", "invalidate", "clear", "doctor", "demo"):
        assert command in result.stdout


def test_stats_shows_tiers_and_ledger(populated: Path) -> None:
    result = run("stats", "--workspace", "cli", env_dir=populated)
    assert result.returncode == 0, result.stderr
    assert "memory" in result.stdout and "disk://" in result.stdout
    assert "research" in result.stdout


def test_report_table_json_and_html(populated: Path, tmp_path: Path) -> None:
    table = run("report", "-w", "cli", env_dir=populated)
    assert table.returncode == 0, table.stderr
    assert "research" in table.stdout and "gpt-4o-mini" in table.stdout
    as_json = run("report", "-w", "cli", "--json", env_dir=populated)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert "rows" in data and "totals" in data
    assert data["totals"]["hits"] == 2 and data["totals"]["misses"] == 2
    html = tmp_path / "report.html"
    with_html = run(
        "report", "-w", "cli", "--html", str(html), "--since", "2000-01-01", env_dir=populated
    )
    assert with_html.returncode == 0, with_html.stderr
    assert "<img" in html.read_text() or "<svg" in html.read_text()


def test_invalidate_then_entries_are_unreachable(populated: Path) -> None:
    result = run("invalidate", "--namespace", "research", "-w", "cli", env_dir=populated)
    assert result.returncode == 0, result.stderr
    cache = llmcache.Cache(workspace="cli", tiers=["memory", f"disk://{populated}"])
    calls = []

    @cache.cached(namespace="research")
    def ask(q: str) -> str:
        calls.append(q)
        return q.upper()

    ask("a")
    assert calls == ["a"]


def test_clear_asks_and_yes_skips(populated: Path) -> None:
    refused = run("clear", "-w", "cli", env_dir=populated, stdin="n\n")
    assert refused.returncode != 0
    done = run("clear", "-w", "cli", "--yes", env_dir=populated)
    assert done.returncode == 0, done.stderr
    assert "removed 2 entries" in done.stdout
    from llmcache._disk import DiskTier

    assert DiskTier(populated).size()[0] == 1  # the other workspace's entry is still there


def test_doctor_ok_and_unusable_tier(tmp_path: Path) -> None:
    ok = run("doctor", env_dir=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "sqlite" in ok.stdout
    bad = run(
        "doctor", "--tiers", "memory,redis://127.0.0.1:1/0", "--secret", "x" * 32, env_dir=tmp_path
    )
    assert bad.returncode == 1
    assert "unusable" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("stats", "--tiers", "memory,nosuch://x"), "unknown tier scheme"),
        (("stats", "--tiers", "memory,redis://127.0.0.1:1/0"), "LLMCACHE_SECRET"),
        (("stats", "--tiers", "memory,redis://127.0.0.1:1/0", "--secret", "s" * 32), "unusable"),
        (("invalidate", "--namespace", "bad name"), "namespace name"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run(*args, env_dir=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # one message (rich may wrap it)
