"""The `llmcache` command line and the demo, run inside this process.

tests/test_cli.py and tests/test_demo.py drive the same commands as a user does, as real
processes; coverage cannot see into those. Here typer's CliRunner invokes the app object
(what a command prints and how it ends), and `main`, the script's entry point, runs inside
the runner's isolation for what only it does: every failure is one line on stderr with exit
code 2 (the user's mistake), 1 (a failed check, an aborted confirmation, an unexpected
error) or 130 (Ctrl-C). Every test has its own folders (tmp_path, LLMCACHE_DIR from
conftest) and the demo runs against the local OpenAI-compatible server, never the real API.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

import llmcache
from llmcache import _cli, _demo
from llmcache._cli import app, main
from llmcache.testing import FakeOpenAIServer

# Wide enough that no message or table cell a test looks for is wrapped.
WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenAI settings of the machine's (the demo would call that API) and no debug."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMCACHE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@dataclass
class Run:
    """How one `llmcache ...` ended, as a user sees it."""

    code: int
    stdout: str
    stderr: str

    def one_line_failure(self) -> str:
        """The failure's message, after checking it is one line and a non-zero exit."""
        assert self.code != 0, self.stdout
        assert "Traceback" not in self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


def llmcache_main(
    *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
) -> Run:
    """`llmcache ARGS` through `main()`, inside CliRunner's isolation (stdin, stdout,
    stderr and the environment are the runner's, and restored after)."""
    runner = CliRunner()
    code: Any = 0
    with runner.isolation(input=input, env={**WIDE, **(env or {})}) as (out, err, _):
        argv = sys.argv
        sys.argv = ["llmcache", *args]
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.argv = argv
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Run(code if isinstance(code, int) else 1, stdout, stderr)


def invoke(*args: str, input: str | None = None, env: Mapping[str, str] | None = None) -> Run:
    """`llmcache ARGS` through CliRunner on the app object; an exception is re-raised."""
    result = CliRunner().invoke(
        app, list(args), input=input, env={**WIDE, **(env or {})}, prog_name="llmcache"
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A disk cache folder holding entries and ledger counts of workspace 'cli' (two misses,
    two hits in namespace 'research') and one entry of workspace 'other'."""
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


def disk(folder: Path) -> tuple[str, str]:
    return ("--tiers", f"memory,disk://{folder}")


# -- --help, --version, python -m llmcache ------------------------------------------------


def test_help_lists_every_command() -> None:
    shown = invoke("--help")
    assert shown.code == 0
    for command in ("stats", "report", "invalidate", "clear", "doctor", "demo"):
        assert command in shown.stdout


def test_no_arguments_is_the_help() -> None:
    bare = llmcache_main()
    assert bare.code == 0
    assert "Commands" in bare.stdout and "invalidate" in bare.stdout


def test_version() -> None:
    shown = invoke("--version")
    assert shown.code == 0
    assert shown.stdout.strip() == f"llmcache {llmcache.__version__}"


def test_a_command_help_names_its_options() -> None:
    shown = invoke("report", "--help")
    assert shown.code == 0
    assert "--json" in shown.stdout and "Print the report as JSON" in shown.stdout


def test_python_dash_m_llmcache_runs_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = sys.argv
    sys.argv = ["llmcache", "--version"]
    try:
        with pytest.raises(SystemExit) as ended:
            runpy.run_module("llmcache", run_name="__main__")
    finally:
        sys.argv = argv
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmcache {llmcache.__version__}"


# -- stats ---------------------------------------------------------------------------------


def test_stats_shows_tiers_and_ledger(populated: Path) -> None:
    shown = invoke("stats", "-w", "cli", "--dir", str(populated))
    assert shown.code == 0, shown.stderr
    assert "llmcache workspace 'cli'" in shown.stdout
    assert "memory" in shown.stdout and f"disk://{populated}" in shown.stdout
    assert "closed" in shown.stdout  # the breaker's state
    assert "research" in shown.stdout and "gpt-4o-mini" in shown.stdout


def test_stats_of_a_tier_that_cannot_count_shows_a_dash(tmp_path: Path) -> None:
    register_dict_backend()
    shown = invoke("stats", "-t", "memory,dict://stats")
    assert shown.code == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "dict://stats" in line)
    assert row.split()[1:3] == ["-", "-"]  # entries and bytes unknown


# -- report --------------------------------------------------------------------------------


def test_report_table(populated: Path) -> None:
    shown = invoke("report", "-w", "cli", *disk(populated))
    assert shown.code == 0, shown.stderr
    total = next(line for line in shown.stdout.splitlines() if line.startswith("total"))
    assert total.split()[1] == "4"  # calls
    assert "research" in shown.stdout


def test_report_json_has_every_column(populated: Path) -> None:
    shown = invoke("report", "-w", "cli", *disk(populated), "--json")
    assert shown.code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["totals"]["hits"] == 2 and data["totals"]["misses"] == 2
    assert [row["namespace"] for row in data["rows"]] == ["research"]


@pytest.mark.parametrize(("since", "calls"), [("30", 4), ("2000-01-01", 4), ("2999-01-01", 0)])
def test_report_since_a_day_or_a_number_of_days(populated: Path, since: str, calls: int) -> None:
    shown = invoke("report", "-w", "cli", *disk(populated), "--since", since, "--json")
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["totals"]["calls"] == calls


def test_report_writes_html(populated: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    shown = invoke("report", "-w", "cli", *disk(populated), "--html", str(page))
    assert shown.code == 0, shown.stderr
    assert f"wrote {page}" in shown.stderr
    assert "<svg class=bars" in page.read_text()


def test_report_of_an_unknown_since_is_one_line(populated: Path) -> None:
    failed = llmcache_main("report", "-w", "cli", *disk(populated), "--since", "last week")
    assert "not a date" in failed.one_line_failure()
    assert failed.code == 2


def test_html_paths_that_cannot_be_written_are_one_line(populated: Path, tmp_path: Path) -> None:
    where = ("report", "-w", "cli", *disk(populated), "--html")
    missing = llmcache_main(*where, str(tmp_path / "no" / "r.html"))
    assert "does not exist" in missing.one_line_failure()
    folder = llmcache_main(*where, str(tmp_path))
    assert "is a folder" in folder.one_line_failure()
    assert str(tmp_path / "report.html") in folder.stderr  # a file name it could take
    assert missing.code == folder.code == 2


def test_an_html_folder_without_write_access_is_one_line(
    populated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite runs as root, for whom every folder is writable: os.access says what a user
    # without the right would be told.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode)
    )
    failed = llmcache_main("report", "-w", "cli", *disk(populated), "--html", str(locked / "r"))
    assert f"the folder {locked} is not writable" in failed.one_line_failure()
    assert failed.code == 2


def test_an_html_file_the_system_refuses_is_one_line(populated: Path, tmp_path: Path) -> None:
    # Passes the checks made before the report (not a folder, its folder is writable), then
    # writing follows the link into a folder that does not exist.
    dangling = tmp_path / "report.html"
    dangling.symlink_to(tmp_path / "gone" / "report.html")
    failed = llmcache_main("report", "-w", "cli", *disk(populated), "--html", str(dangling))
    assert f"cannot write {dangling}: No such file or directory" in failed.one_line_failure()
    assert failed.code == 2


def test_an_html_name_too_long_for_the_file_system_is_one_line(
    populated: Path, tmp_path: Path
) -> None:
    too_long = tmp_path / ("r" * 300 + ".html")
    failed = llmcache_main("report", "-w", "cli", *disk(populated), "--html", str(too_long))
    assert "File name too long" in failed.one_line_failure()
    assert failed.code == 2  # a usage error, not an "unexpected" one


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "_open", interrupted)
    failed = llmcache_main("stats", "-w", "cli")
    assert failed.code == 130
    assert failed.one_line_failure() == "error: interrupted"


def test_a_report_of_an_empty_workspace_points_at_the_demo(tmp_path: Path) -> None:
    # What the demo leaves in the default cache folder; the report then names its command.
    demo_cache = llmcache.Cache(workspace="demo", tiers=[f"disk://{_demo.demo_folder()}"])
    demo_cache.close()
    for command in ("report", "stats"):
        shown = invoke(command)
        assert shown.code == 0, shown.stderr
        hint = shown.stderr.split("in its own workspace:")[1].strip()
        assert hint == _demo.report_command(_demo.demo_folder(), command)


def test_a_report_of_an_empty_workspace_without_a_demo_gives_no_hint() -> None:
    shown = invoke("report")
    assert shown.code == 0, shown.stderr
    assert shown.stderr == ""


# -- invalidate ------------------------------------------------------------------------------


def test_invalidate_then_entries_are_unreachable(populated: Path) -> None:
    shown = invoke("invalidate", "-n", "research", "-w", "cli", *disk(populated))
    assert shown.code == 0, shown.stderr
    assert "invalidated namespace 'research' of workspace 'cli'" in shown.stdout
    cache = llmcache.Cache(workspace="cli", tiers=["memory", f"disk://{populated}"])
    calls: list[str] = []

    @cache.cached(namespace="research")
    def ask(q: str) -> str:
        calls.append(q)
        return q.upper()

    assert ask("a") == "A"
    cache.close()
    assert calls == ["a"]  # the entry stored before the invalidation is not served


def test_invalidate_without_a_persistent_tier_says_it_reaches_no_one() -> None:
    failed = llmcache_main("invalidate", "--namespace", "research", "--tiers", "memory")
    assert "no shared or persistent tier" in failed.one_line_failure()
    assert failed.code == 2


def test_invalidate_of_a_bad_namespace_name_is_one_line(tmp_path: Path) -> None:
    failed = llmcache_main("invalidate", "--namespace", "bad name")
    assert "namespace name" in failed.one_line_failure()
    assert failed.code == 2


def test_invalidate_waits_for_a_shared_tier_that_comes_back() -> None:
    """The tier refuses the invalidation's write, then takes writes again: the command sees
    the watcher publish it and succeeds."""
    DictBackend.reset()
    DictBackend.refuse_writes.set()

    def come_back() -> None:
        if DictBackend.refused.wait(30):
            DictBackend.refuse_writes.clear()

    helper = threading.Thread(target=come_back, daemon=True)
    helper.start()
    register_dict_backend()
    shown = invoke("invalidate", "-n", "research", "-t", "memory,dict://back")
    helper.join(30)
    assert shown.code == 0, shown.stderr
    assert "invalidated namespace 'research'" in shown.stdout
    assert DictBackend.refused.is_set()  # the first write was really refused


def test_invalidate_that_the_shared_tier_never_takes_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    DictBackend.reset()
    DictBackend.refuse_writes.set()
    register_dict_backend()
    monkeypatch.setattr(_cli, "_PUBLISH_WAIT_S", 0.3)
    failed = llmcache_main("invalidate", "-n", "research", "-t", "memory,dict://down")
    message = failed.one_line_failure()
    assert "could not reach the shared tier" in message and "NOT invalidated" in message
    assert failed.code == 2


# -- clear -----------------------------------------------------------------------------------


def remaining_entries(folder: Path) -> int:
    from llmcache._disk import DiskTier

    tier = DiskTier(folder)
    try:
        size = tier.size()
        assert size is not None
        return size[0]
    finally:
        tier.close()


def test_clear_with_yes_removes_only_this_workspace(populated: Path) -> None:
    shown = invoke("clear", "-w", "cli", *disk(populated), "--yes")
    assert shown.code == 0, shown.stderr
    assert "removed 2 entries of workspace 'cli'" in shown.stdout
    assert remaining_entries(populated) == 1  # the other workspace's entry


def test_clear_without_a_terminal_needs_yes(populated: Path) -> None:
    failed = llmcache_main("clear", "-w", "cli", *disk(populated), input="y\n")
    assert "clear needs confirmation" in failed.one_line_failure()
    assert failed.code == 2
    assert remaining_entries(populated) == 3


@pytest.fixture
def a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin looks like a terminal (the runner's stdin is replaced per run, so its class)."""
    from typer import testing

    monkeypatch.setattr(testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False)


@pytest.mark.usefixtures("a_terminal")
def test_clear_in_a_terminal_asks(populated: Path) -> None:
    refused = llmcache_main("clear", "-w", "cli", *disk(populated), input="n\n")
    assert "Delete every entry of workspace 'cli'" in refused.stdout
    assert refused.stderr.strip().endswith("aborted")
    assert refused.code == 1
    assert remaining_entries(populated) == 3
    agreed = llmcache_main("clear", "-w", "cli", *disk(populated), input="y\n")
    assert agreed.code == 0, agreed.stderr
    assert "removed 2 entries" in agreed.stdout
    assert remaining_entries(populated) == 1


# -- doctor ----------------------------------------------------------------------------------


def test_doctor_with_the_default_tiers(tmp_path: Path) -> None:
    shown = invoke("doctor")
    assert shown.code == 0, shown.stderr
    assert "secret: generated (embedded tiers only)" in shown.stdout
    assert "sqlite" in shown.stdout and "max " in shown.stdout


def test_doctor_names_where_the_secret_came_from(tmp_path: Path) -> None:
    from_flag = invoke("doctor", "--secret", "f" * 32)
    assert "secret: flag" in from_flag.stdout
    from_env = invoke("doctor", env={"LLMCACHE_SECRET": "e" * 32})
    assert "secret: LLMCACHE_SECRET" in from_env.stdout
    assert from_flag.code == from_env.code == 0


def test_doctor_fails_on_an_unusable_tier() -> None:
    shown = invoke("doctor", "-t", "memory,redis://127.0.0.1:1/0", "--secret", "x" * 32)
    assert shown.code == 1
    assert "unusable tier(s): redis://127.0.0.1:1/0" in shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "redis://127.0.0.1:1" in line)
    assert " NO " in row


def test_doctor_of_a_backend_that_cannot_describe_itself() -> None:
    register_dict_backend()
    DictBackend.reset()
    DictBackend.describe_fails = True
    shown = invoke("doctor", "-t", "dict://odd")
    assert shown.code == 0, shown.stderr
    assert "describe=RuntimeError: no facts today" in shown.stdout
    DictBackend.describe_fails = False
    plain = invoke("doctor", "-t", "dict://plain")
    row = next(line for line in plain.stdout.splitlines() if "dict://plain" in line)
    assert row.split()[1] == "yes" and "describe" not in row  # not a dict: nothing shown


# -- the failures main() turns into one line -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("stats", "--tiers", "memory,nosuch://x"), "unknown tier scheme"),
        (("stats", "--tiers", "memory,redis://127.0.0.1:1/0"), "LLMCACHE_SECRET"),
        (("stats", "--tiers", "memory,redis://127.0.0.1:1/0", "--secret", "s" * 32), "unusable"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    failed = llmcache_main(*args)
    assert message in failed.one_line_failure()
    assert failed.code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--nope",), "No such option: --nope (see: llmcache --help)"),
        (("report", "--nope"), "(see: llmcache report --help)"),
        (("nosuch",), "No such command"),
        (("report", "--since"), "requires an argument"),
        (("demo", "--requests", "many"), "--requests"),
    ],
)
def test_a_bad_command_line_is_one_line(args: tuple[str, ...], message: str) -> None:
    failed = llmcache_main(*args)
    assert message in failed.one_line_failure()
    assert failed.code == 2


def test_an_unexpected_error_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> Any:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(_cli, "_open", broken)
    failed = llmcache_main("stats")
    assert failed.one_line_failure().endswith(
        "unexpected RuntimeError: disk on fire (LLMCACHE_DEBUG=1 shows where)"
    )
    assert failed.code == 1
    with pytest.raises(RuntimeError, match="disk on fire"):
        llmcache_main("stats", env={"LLMCACHE_DEBUG": "1"})


# -- the demo --------------------------------------------------------------------------------


def demo_args(tmp_path: Path, requests: int = 20) -> tuple[str, ...]:
    return (
        "demo", "--requests", str(requests), "--concurrency", "4",
        "--dir", str(tmp_path / "demo-cache"), "--html", str(tmp_path / "demo.html"),
    )  # fmt: skip


@pytest.fixture
def demo_port_free() -> None:
    """The demo's fixed port (the local server listens there so a rerun hits)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", _demo.DEMO_PORT))
        except OSError:
            pytest.skip(f"port {_demo.DEMO_PORT} is taken by another program")


@pytest.mark.usefixtures("demo_port_free")
def test_the_demo_runs_twice_and_the_second_run_is_served_from_disk(tmp_path: Path) -> None:
    first = invoke(*demo_args(tmp_path))
    assert first.code == 0, first.stderr
    assert f"local OpenAI-compatible server at http://127.0.0.1:{_demo.DEMO_PORT}" in first.stdout
    assert "first run on this cache folder" in first.stdout
    assert "saved" in first.stdout and "total" in first.stdout
    second = invoke(*demo_args(tmp_path))
    assert second.code == 0, second.stderr
    assert "0 real calls" in second.stdout
    assert "20 of 20 responses were stored by an earlier run" in second.stdout
    page = (tmp_path / "demo.html").read_text()
    assert "<svg class=bars" in page and "support" in page
    printed = second.stdout.split("see this report again:")[1].split("\n")[0].strip()
    assert printed == _demo.report_command(tmp_path / "demo-cache")
    live = second.stdout.split("watch it live in a browser:")[1].split("\n")[0].strip()
    assert live == _demo.report_command(tmp_path / "demo-cache", "dashboard")
    again = invoke(*printed.split()[1:], "--json")
    assert json.loads(again.stdout)["totals"]["calls"] == 40


def test_the_demo_on_a_busy_port_uses_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        # SO_REUSEADDR as the demo's server has: a connection of an earlier demo run still in
        # TIME_WAIT does not stop this bind; a listener does stop the demo's.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", _demo.DEMO_PORT))
            taken.listen()
        except OSError:
            pass  # another program listens there: busy all the same
        shown = invoke(*demo_args(tmp_path, requests=6))
    assert shown.code == 0, shown.stderr
    assert f"port {_demo.DEMO_PORT} is busy: using another" in shown.stdout
    assert f"127.0.0.1:{_demo.DEMO_PORT}" not in shown.stdout.split("mode:")[1].split("\n")[0]


def test_the_demo_uses_the_api_the_environment_names(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        url = server.base_url.rstrip("/")
        shown = invoke(*demo_args(tmp_path, requests=6), env=env)
        requests = server.requests
    assert shown.code == 0, shown.stderr
    assert f"the OpenAI-compatible API at {url} (OPENAI_API_KEY is set)" in shown.stdout
    assert 1 <= requests <= 6


def test_the_demo_against_a_dead_url_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": url}
        failed = llmcache_main(*demo_args(tmp_path), env=env)
    message = failed.one_line_failure()
    assert f"cannot reach the OpenAI-compatible API at {url}" in message
    assert "check OPENAI_BASE_URL" in message
    assert failed.code == 2


def test_the_demo_with_a_rejected_key_stops_after_one_request(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        server.fail_next(10_000, status=401)
        env = {"OPENAI_API_KEY": "sk-wrong", "OPENAI_BASE_URL": server.base_url}
        failed = llmcache_main(*demo_args(tmp_path), env=env)
        requests = server.requests
    message = failed.one_line_failure()
    assert "answered 401 invalid_api_key" in message and "check OPENAI_API_KEY" in message
    assert failed.code == 2
    assert requests == 1


def test_the_demo_names_a_refusal_that_is_not_about_the_key(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        server.fail_next(10_000, status=429)
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        failed = llmcache_main(*demo_args(tmp_path), env=env)
    message = failed.one_line_failure()
    assert "answered 429 rate_limit_exceeded" in message and "see the message" in message


def test_the_demo_html_path_is_checked_before_any_request(tmp_path: Path) -> None:
    failed = llmcache_main("demo", "--html", str(tmp_path), "--dir", str(tmp_path / "d"))
    assert "is a folder" in failed.one_line_failure()
    assert not (tmp_path / "d").exists()


def test_a_demo_failure_of_another_kind_names_the_error() -> None:
    import openai

    error = openai.APIResponseValidationError(
        response=_response(200), body=None, message="bad shape\nmore"
    )
    failed = _demo._failure(error, "the local server")
    assert str(failed) == "the local server failed: APIResponseValidationError: bad shape"


def test_run_demo_returns_what_it_did(tmp_path: Path) -> None:
    from rich.console import Console

    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed below
    try:
        result = _demo.run_demo(
            requests=8, concurrency=2, html=tmp_path / "r.html", directory=tmp_path / "d",
            console=quiet, seed=1,
        )  # fmt: skip
    finally:
        quiet.file.close()
    assert result.requests == 8
    assert result.real_calls + result.hits == 8
    assert result.real_calls == len(set(_demo._draw(8, seed=1)))  # each distinct prompt once
    assert result.html == tmp_path / "r.html" and result.html.exists()
    assert result.from_earlier_runs == 0


def _response(status: int) -> Any:
    import httpx

    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat"))


# -- a dict-backed tier that can refuse writes and fail to describe itself -------------------


class DictBackend(llmcache.Backend):
    """A persistent, unshared tier in a dict, with switches for the failures tests need."""

    persistent = True
    refuse_writes: ClassVar[threading.Event] = threading.Event()
    refused: ClassVar[threading.Event] = threading.Event()
    describe_fails: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.store: dict[str, bytes] = {}
        self.counters: dict[str, dict[str, float]] = {}

    @classmethod
    def reset(cls) -> None:
        cls.refuse_writes.clear()
        cls.refused.clear()
        cls.describe_fails = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DictBackend:
        return cls(url)

    def get(self, key: str) -> bytes | None:
        return self.store.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if self.refuse_writes.is_set():
            self.refused.set()
            raise ConnectionError("the tier is away")
        self.store[key] = value

    def delete(self, key: str) -> None:
        self.store.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.store if key.startswith(prefix)]
        for key in doomed:
            del self.store[key]
        return len(doomed)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        record = self.counters.setdefault(key, {})
        for field, delta in deltas.items():
            record[field] = record.get(field, 0.0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self.counters.get(key, {}))

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        if self.describe_fails:
            raise RuntimeError("no facts today\nsecond line")
        return "not a dict"  # type: ignore[return-value]  # a careless third-party backend


@pytest.fixture(autouse=True)
def _forget_registered_backends() -> Iterator[None]:
    from llmcache import _registry

    before = dict(_registry._REGISTERED)
    yield
    _registry._REGISTERED.clear()
    _registry._REGISTERED.update(before)
    DictBackend.reset()


def register_dict_backend() -> None:
    llmcache.register_backend("dict", DictBackend)


def test_the_demo_counts_hits_of_unpriced_models_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit whose saving is unknown (no price for the model) is never added as $0."""
    from llmcache._stats import CallInfo

    def described(saved: float | None) -> CallInfo:
        return CallInfo(
            hit=True,
            tier="memory",
            key="k",
            namespace="n",
            age_s=0.0,
            model="m",
            cost_usd=saved,
            saved_cost_usd=saved,
            saved_time_s=1.0,
        )

    result = _demo.DemoResult(mode="local", requests=2)
    for saved in (0.25, None):
        monkeypatch.setattr(_demo, "info", lambda response, saved=saved: described(saved))
        _demo._tally(result, object(), run_started=0.0)
    assert result.saved_usd == 0.25
    assert result.unpriced_hits == 1
