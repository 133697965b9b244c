"""The `llmcache` command line, driven as a user would: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import llmcache
from llmcache._render import header_of
from llmcache.testing import FakeOpenAIServer


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


def test_invalidate_without_a_persistent_tier_says_it_reaches_no_one(tmp_path: Path) -> None:
    # The command's process exits at once: an invalidation kept only in its memory would be
    # reported as done and reach no other process.
    message = one_line_failure(
        run("invalidate", "--namespace", "research", "--tiers", "memory", env_dir=tmp_path)
    )
    assert "no shared or persistent tier" in message


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


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's message, after checking it is exactly one line and a non-zero exit."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--nope",), "No such option: --nope"),
        (("report", "--nope"), "llmcache report --help"),
        (("nosuch",), "No such command"),
        (("report", "--since"), "requires an argument"),
        (("demo", "--requests", "many"), "--requests"),
        (("report", "--since", "last week"), "not a date"),
    ],
)
def test_a_bad_command_line_is_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run(*args, env_dir=tmp_path, COLUMNS="80")
    assert message in one_line_failure(result)
    assert result.returncode == 2


def test_html_paths_that_cannot_be_written_are_one_line(populated: Path, tmp_path: Path) -> None:
    missing = run(
        "report", "-w", "cli", "--html", str(tmp_path / "no" / "r.html"), env_dir=populated
    )
    assert "does not exist" in one_line_failure(missing)
    folder = run("report", "-w", "cli", "--html", str(tmp_path), env_dir=populated)
    assert "is a folder" in one_line_failure(folder)
    demo = run("demo", "--html", str(tmp_path), "--dir", str(tmp_path / "d"), env_dir=tmp_path)
    assert "is a folder" in one_line_failure(demo)
    assert not (tmp_path / "d").exists()  # checked before any request was made


def test_demo_against_a_dead_base_url_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        result = run(
            "demo", "--requests", "20", "--dir", str(tmp_path / "d"), "--html",
            str(tmp_path / "r.html"), env_dir=tmp_path, OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=url,
        )  # fmt: skip
    message = one_line_failure(result)
    assert result.returncode == 2
    assert f"cannot reach the OpenAI-compatible API at {url}" in message
    assert "OPENAI_BASE_URL" in message
    assert f"API at {url}" in result.stdout and "the real OpenAI API" not in result.stdout


def test_demo_with_a_rejected_key_is_one_line_after_one_request(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        server.fail_next(10_000, status=401)  # every request: invalid_api_key
        result = run(
            "demo", "--requests", "50", "--dir", str(tmp_path / "d"), "--html",
            str(tmp_path / "r.html"), env_dir=tmp_path, OPENAI_API_KEY="sk-wrong",
            OPENAI_BASE_URL=server.base_url,
        )  # fmt: skip
        requests = server.requests
    message = one_line_failure(result)
    assert result.returncode == 2
    assert "401" in message and "invalid_api_key" in message and "OPENAI_API_KEY" in message
    assert requests == 1  # stopped at the first refusal, not once per request


def test_demo_names_the_url_it_uses(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url.rstrip("/")
        result = run(
            "demo", "--requests", "10", "--dir", str(tmp_path / "d"), "--html",
            str(tmp_path / "r.html"), env_dir=tmp_path, OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=server.base_url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert server.requests > 0
    assert f"OpenAI-compatible API at {url}" in result.stdout
    assert "real OpenAI API" not in result.stdout


def test_after_the_demo_the_natural_command_leads_to_its_calls(tmp_path: Path) -> None:
    """`llmcache demo` then `llmcache report`: the report points at the demo's calls with
    the exact command, and that command (also printed by the demo) shows them."""
    cache_dir = tmp_path / "cache"
    demo = run("demo", "--requests", "30", "--html", str(tmp_path / "r.html"), env_dir=cache_dir)
    assert demo.returncode == 0, demo.stderr
    printed = demo.stdout.split("see this report again:")[1].split("\n")[0].strip()
    for command in ("report", "stats"):
        natural = run(command, env_dir=cache_dir)
        assert natural.returncode == 0, natural.stderr
        hint = natural.stderr.split("in its own workspace:")[1].strip()
        assert hint.startswith(f"llmcache {command} ")
        words = shlex.split(hint)
        assert words[1:] == [command, *shlex.split(printed)[2:]]
        shown = run(*words[1:], env_dir=cache_dir)
        assert shown.returncode == 0, shown.stderr
        assert "'demo'" in shown.stdout and "30 calls" in shown.stdout
    as_json = run(*shlex.split(printed)[1:], "--json", env_dir=cache_dir)
    assert json.loads(as_json.stdout)["totals"]["calls"] == 30


def test_version_and_help(tmp_path: Path) -> None:
    version = run("--version", env_dir=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"llmcache {llmcache.__version__}"
    help_text = run("report", "--help", env_dir=tmp_path, COLUMNS="80").stdout
    assert re.search(r"^\s+--json\s+Print the report as JSON", help_text, re.MULTILINE), help_text
    bare = run(env_dir=tmp_path)
    assert bare.returncode == 0 and "Commands" in bare.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_report_and_stats_fit_the_terminal(populated: Path, width: int) -> None:
    for command in ("report", "stats", "doctor"):
        result = run(command, "-w", "cli", env_dir=populated, COLUMNS=str(width))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= width, result.stdout
        if command != "doctor":
            assert any(line.startswith("research") for line in lines)  # names whole
    report = run("report", "-w", "cli", env_dir=populated, COLUMNS=str(width)).stdout
    total = next(line for line in report.splitlines() if line.startswith("total"))
    assert total.split()[1] == "4"  # calls, whole


@pytest.mark.parametrize("width", [80, 120])
def test_health_and_stats_fit_the_terminal_whatever_their_fields(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every field of TierHealth (more may be added) is rendered, within the width."""
    cache = llmcache.Cache(
        workspace="wide", secret="s" * 32, tiers=["memory", "redis://127.0.0.1:1/0"]
    )
    try:
        ask = cache.cached(lambda q: q)
        for n in range(5):
            ask(n)  # the dead Redis fails: an error message to wrap
        monkeypatch.setenv("COLUMNS", str(width))
        for shown in (cache.health(), cache.stats()):
            text = str(shown)
            assert max(len(line) for line in text.splitlines()) <= width, text
            assert "redis://127.0.0.1:1/0" in text
        assert "Connection" in str(cache.health())  # the last error is kept, wrapped
        html = cache.health()._repr_html_()
        for field in llmcache.TierHealth.model_fields:  # HTML has room for all that are set
            if field != "name" and any(getattr(t, field) is not None for t in cache.health().tiers):
                assert f">{header_of(field)}</th>" in html
    finally:
        cache.close()
