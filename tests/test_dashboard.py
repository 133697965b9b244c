"""`llmcache dashboard` over HTTP: a real uvicorn on a free loopback port, the token, the Host
check, the panels, and the command line (port in use, a public address without a token,
Ctrl-C). The browser tests are in test_dashboard_browser.py."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llmcache
from llmcache.dashboard import create_app, serve
from llmcache.dashboard._gate import COOKIE, _host_name
from llmcache.dashboard._hourly import SHOWN_HOURS, hour_bars
from llmcache.dashboard._look import bars_svg, headline_figures
from llmcache.dashboard._providers import UNKNOWN, provider_of
from llmcache.dashboard._server import (
    DashboardError,
    bind,
    check_token,
    is_loopback,
    new_token,
)
from llmcache.dashboard._snapshot import SETTLED_REREAD_S, Snapshots
from tests.clocks import FakeClock
from tests.test_cli_inprocess import llmcache_main

WORKSPACE = "shop"
MODEL = "gpt-4o-mini"


def populate(
    folder: Path,
    namespace: str = "support",
    model: str = MODEL,
    n: int = 4,
    clock: Callable[[], float] | None = None,
) -> None:
    """Calls of workspace 'shop' in `folder`: half misses (priced, as `model`), half hits,
    on the day `clock` says (default: today)."""
    cache = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"], clock=clock)

    def usage(result: object) -> dict[str, object]:
        return {"model": model, "input_tokens": 1000, "output_tokens": 200}

    @cache.cached(namespace=namespace, usage=usage)
    def ask(question: str) -> str:
        return question.upper()

    for i in range(n):
        ask(f"question {i % (n // 2 or 1)}")
    cache.close()


@contextlib.contextmanager
def running(
    cache: llmcache.Cache, *, token: str | None = None, refresh_s: float = 0.3
) -> Iterator[str]:
    """The dashboard of `cache` served by uvicorn in a thread; yields its address."""
    binding = bind("127.0.0.1", 0)
    servers: list[Any] = []
    thread = threading.Thread(
        target=serve,
        args=(cache,),
        kwargs={
            "binding": binding,
            "token": token,
            "refresh_s": refresh_s,
            "on_server": servers.append,
        },
        daemon=True,
    )
    thread.start()
    try:
        yield binding.url
    finally:
        deadline = time.monotonic() + 10
        while not servers and time.monotonic() < deadline:
            time.sleep(0.01)
        servers[0].should_exit = True
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[llmcache.Cache]:
    folder = tmp_path / "cache"
    populate(folder)
    cache = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"])
    yield cache
    cache.close()


def test_the_page_the_panels_and_the_report_agree_with_cache_report(shop: llmcache.Cache) -> None:
    with running(shop) as url, httpx.Client(base_url=url) as client:
        page = client.get("/")
        panels = client.get("/api/panels").json()["panels"]
        data = client.get("/api/report").json()
        script = client.get("/static/dashboard.js")
        style = client.get("/static/dashboard.css")
        missing = client.get("/nothing-here")
    report = shop.report()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for figure in headline_figures(report.totals):
        assert f"id='figure-{figure.key}'>{figure.value}<" in page.text
        assert f"id='figure-{figure.key}'>{figure.value}<" in panels["headline"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # the only script is the file
    assert set(panels) == {
        "headline",
        "daily",
        "hourly",
        "namespaces",
        "models",
        "budgets",
        "tiers",
        "updated",
    }
    assert "No spend budget" in panels["budgets"] and data["report"]["budgets"] == []
    assert ">support<" in panels["namespaces"] and ">OpenAI<" in panels["models"]
    assert "disk://" in panels["tiers"] and ">closed<" in panels["tiers"]
    assert data["report"]["totals"]["hits"] == report.totals.hits == 2
    assert data["health"]["ok"] is True
    assert "fetch(" in script.text and script.headers["content-type"].startswith("text/javascript")
    assert ".figures" in style.text
    assert missing.status_code == 404


def test_budgets_declared_by_another_process_show_on_the_dashboard(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    spender = llmcache.Cache(
        workspace=WORKSPACE,
        tiers=["memory", f"disk://{folder}"],
        budget_usd={"*": {"day": 2.0}, "support": {"month": 1.0}},
    )

    @spender.cached(namespace="support", usage=lambda r: {"model": MODEL, "cost_usd": 0.5})
    def ask(question: str) -> str:
        return question.upper()

    ask("one")
    spender.close()
    viewer = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"])
    try:
        with running(viewer) as url, httpx.Client(base_url=url) as client:
            panels = client.get("/api/panels").json()["panels"]
            data = client.get("/api/report").json()
        text = str(viewer.report())
    finally:
        viewer.close()
    budgets = data["report"]["budgets"]
    assert [(b["scope"], b["period"], b["spent_usd"]) for b in budgets] == [
        ("*", "day", 0.5),
        ("support", "month", 0.5),
    ]
    assert ">workspace<" in panels["budgets"] and ">support<" in panels["budgets"]
    assert ">$2.00<" in panels["budgets"] and ">50%<" in panels["budgets"]
    assert "budget of namespace support, month" in text and "$0.50 of $1.00 spent (50%)" in text


def test_a_token_is_required_from_every_request(shop: llmcache.Cache) -> None:
    token = new_token()
    with running(shop, token=token) as url, httpx.Client(base_url=url) as client:
        refused = [client.get(path) for path in ("/", "/api/panels", "/metrics")]
        wrong = client.get("/", headers={"Authorization": "Bearer " + "x" * 32})
        bearer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        entry = client.get(f"/?token={token}")
        with_cookie = client.get("/api/panels")  # the client keeps the cookie it was given
        raw = http.client.HTTPConnection(httpx.URL(url).host, httpx.URL(url).port, timeout=10)
        raw.request("GET", f"//elsewhere.example/?token={token}&x=1")  # a path, as sent
        sneaky = raw.getresponse()
        raw.close()
    assert [r.status_code for r in refused] == [401, 401, 401] and wrong.status_code == 401
    assert "token" in refused[0].text and token not in refused[0].text
    assert bearer.status_code == 200 and "llmcache_hits_total" in bearer.text
    assert entry.status_code == 303 and entry.headers["location"] == "/"
    assert (
        f"{COOKIE}={token}" in entry.headers["set-cookie"]
        and "HttpOnly" in entry.headers["set-cookie"]
    )
    assert with_cookie.status_code == 200
    assert sneaky.getheader("location") == "/elsewhere.example/?x=1"  # stays on this site


def test_only_loopback_host_names_are_answered_without_a_token(shop: llmcache.Cache) -> None:
    """A page elsewhere cannot read the dashboard by pointing its own name at 127.0.0.1."""
    with running(shop) as url, httpx.Client(base_url=url) as client:
        rebound = client.get("/", headers={"Host": "attacker.example:8765"})
        local = client.get("/", headers={"Host": "localhost:8765"})
    assert rebound.status_code == 421 and local.status_code == 200
    assert [_host_name(h) for h in ("[::1]:80", "127.0.0.1:1", "localhost")] == [
        "[::1]",
        "127.0.0.1",
        "localhost",
    ]


def test_bars_start_at_the_first_day_and_say_so_when_empty() -> None:
    svg = bars_svg([("Dec 01", 1.0), ("Dec 02", 0.0), ("Dec 03", 2.0)], title="t", show=str)
    heights = [float(h) for h in re.findall(r"height='([0-9.]+)'", svg)]
    assert len(heights) == 3 and heights[1] == 0 and heights[2] > heights[0] > 0
    assert "Dec 01: 1.0" in svg  # tooltips
    assert "no data yet" in bars_svg([], title="t", show=str)
    assert "&lt;b&gt;" in bars_svg([("<b>", 1.0)], title="<b>", show=str)
    assert "<b>" not in bars_svg([("<b>", 1.0)], title="<b>", show=str)


def test_hour_bars_run_from_the_first_hour_with_counts_to_now() -> None:
    assert hour_bars([], now=1_700_000_000) == []
    base = 1_700_000_000 // 3600  # 2023-11-14T22
    rows = [
        {"epoch_hour": base, "calls": 4.0, "hits": 2.0, "saved_usd": 0.5, "saved_s": 1.0},
        {"epoch_hour": base + 2, "calls": 1.0, "hits": 1.0, "saved_usd": 0.25, "saved_s": 2.0},
    ]
    bars = hour_bars(rows, now=(base + 3) * 3600 + 5)
    assert [(b.hour, b.calls, b.hits, b.saved_usd) for b in bars] == [
        ("22:00", 4, 2, 0.5),
        ("23:00", 0, 0, 0.0),  # the ledger kept hours then: no calls is a zero
        ("00:00", 1, 1, 0.25),
        ("01:00", 0, 0, 0.0),  # up to the current hour
    ]
    assert bars[2].when == "2023-11-15 00:00 UTC"


def test_the_hourly_panel_shows_calls_made_before_the_dashboard_started(tmp_path: Path) -> None:
    """The hours come from the ledger (every process), not from what the dashboard watched."""
    folder = tmp_path / "cache"
    start = time.time() // 3600 * 3600 - 3 * 3600 + 60  # three hours ago, just after the hour
    clock = FakeClock(start)
    populate(folder, n=4, clock=clock)  # 2 misses and 2 hits, three hours ago
    clock.advance(3600)
    populate(folder, n=6, clock=clock)  # 3 more, 3 hits (the first 2 questions are cached)
    cache = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"])
    with running(cache) as url, httpx.Client(base_url=url) as client:
        hourly = client.get("/api/panels").json()["panels"]["hourly"]
        page = client.get("/").text
    cache.close()
    first = time.strftime("%Y-%m-%d %H:00 UTC", time.gmtime(start))
    second = time.strftime("%Y-%m-%d %H:00 UTC", time.gmtime(start + 3600))
    assert f"{first}: 2 hits" in hourly and f"{second}: 5 hits" in hourly
    # Two charts, a bar per hour from three hours ago to now (five if the hour turned meanwhile).
    assert hourly.count("<rect class=bar") in (2 * 4, 2 * 5)
    assert "Per hour, the last 48 hours (UTC)" in page


def test_older_hours_are_read_again_only_every_half_minute(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    hour = 1_700_000_000 // 3600
    clock = FakeClock(hour * 3600 + 60)
    populate(folder, n=4, clock=clock)  # 2 hits in `hour`
    cache = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"], clock=clock)
    read = cache.read_counters
    hour_reads: list[str] = []

    def counting(key: str) -> dict[str, float]:
        if ":hour:" in key:
            hour_reads.append(key)
        return read(key)

    cache.read_counters = counting  # type: ignore[method-assign]
    seconds = FakeClock(0.0)
    snapshots = Snapshots(cache, min_interval_s=0.5, clock=seconds)

    def hits_by_hour() -> list[int]:
        return [bar.hits for bar in snapshots.current().hours]

    assert hits_by_hour() == [2] and len(hour_reads) == SHOWN_HOURS
    clock.advance(2 * 3600)  # two hours on: `hour` is settled now, so read again once
    populate(folder, n=4, clock=clock)  # 4 hits this hour (the questions are cached)
    seconds.advance(1)
    assert hits_by_hour() == [2, 0, 4] and len(hour_reads) == 2 * SHOWN_HOURS
    populate(folder, n=4, clock=clock)  # 4 more
    seconds.advance(1)  # the recent hours only
    assert hits_by_hour() == [2, 0, 8] and len(hour_reads) == 2 * SHOWN_HOURS + 2
    seconds.advance(SETTLED_REREAD_S)  # all of them again
    assert hits_by_hour() == [2, 0, 8] and len(hour_reads) == 3 * SHOWN_HOURS + 2
    cache.close()


def test_providers_come_from_the_model_name() -> None:
    assert provider_of("gpt-4o-mini") == "OpenAI"
    assert provider_of("claude-sonnet-4-6") == "Anthropic"
    assert provider_of("my-local-model") == UNKNOWN


def test_addresses_and_tokens() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("no-such-host.invalid")
    assert check_token("a" * 16) == "a" * 16
    for bad in ("short", "has space in it here", "semi;colon;in;a;token"):
        with pytest.raises(DashboardError, match="at least 16 characters"):
            check_token(bad)
    with pytest.raises(DashboardError, match="not an address"):
        bind("no-such-host.invalid", 0)
    with pytest.raises(DashboardError, match="0 to 65535"):
        bind("127.0.0.1", 70000)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is in use"):
            bind("127.0.0.1", port)
    ipv6 = bind("::1", 0)
    assert ipv6.url.startswith("http://[::1]:")
    ipv6.sock.close()


def test_the_app_can_be_made_from_the_package(shop: llmcache.Cache) -> None:
    assert callable(create_app(shop, token=None))


# -- the command line ----------------------------------------------------------------------
def cli_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
    return {**env, "LLMCACHE_DIR": str(folder), "COLUMNS": "200", **extra}


def test_a_public_address_without_a_token_is_refused(tmp_path: Path) -> None:
    refused = llmcache_main("dashboard", "--dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert "set LLMCACHE_DASHBOARD_TOKEN or pass --generate-token" in refused.one_line_failure()
    assert refused.code == 2
    short = llmcache_main(
        "dashboard", "--dir", str(tmp_path), "--port", "0", env={"LLMCACHE_DASHBOARD_TOKEN": "x"}
    )
    assert "at least 16 characters" in short.one_line_failure()
    bad_refresh = llmcache_main("dashboard", "--dir", str(tmp_path), "--refresh", "0")
    assert "--refresh" in bad_refresh.one_line_failure()
    for port in ("70000", "-1"):
        bad_port = llmcache_main("dashboard", "--dir", str(tmp_path), "--port", port)
        assert "--port" in bad_port.one_line_failure() and bad_port.code == 2


def test_a_cache_only_in_memory_gets_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcache.dashboard import _server

    def serve_once(cache: llmcache.Cache, **options: Any) -> None:
        options["binding"].sock.close()

    monkeypatch.setattr(_server, "serve", serve_once)
    shown = llmcache_main("dashboard", "--tiers", "memory", "--port", "0")
    assert shown.code == 0, shown.stderr
    assert "sees only its own process's calls" in shown.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        failed = llmcache_main("dashboard", "--dir", str(tmp_path), "--port", port)
    message = failed.one_line_failure()
    assert f"port {port} on 127.0.0.1 is in use" in message and "--port" in message
    assert failed.code == 2


def test_the_command_serves_until_ctrl_c(tmp_path: Path) -> None:
    """A real `llmcache dashboard` process: it prints its address (with a generated token),
    serves it, and SIGINT stops it cleanly."""
    populate(tmp_path / "cache")
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcache", "dashboard", "-w", WORKSPACE, "--tiers",
         f"memory,disk://{tmp_path / 'cache'}", "--port", "0", "--generate-token"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        address = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", first)
        assert address is not None, first + (process.stderr.read() if process.stderr else "")
        url, token = address.groups()
        with httpx.Client(base_url=url) as client:
            assert client.get("/api/panels").status_code == 401
            shown = client.get("/api/panels", headers={"Authorization": f"Bearer {token}"})
        assert shown.status_code == 200 and "support" in shown.text
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, 130), err
    assert "Traceback" not in err and "dashboard stopped" in out


def test_the_command_prints_where_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process (for coverage): a token from the environment is required, not printed."""
    populate(tmp_path / "cache")
    from llmcache.dashboard import _server

    def serve_once(cache: llmcache.Cache, **options: Any) -> None:
        options["binding"].sock.close()
        assert options["token"] == "t" * 20
        raise KeyboardInterrupt  # what uvicorn does after a graceful stop on Ctrl-C

    monkeypatch.setattr(_server, "serve", serve_once)
    shown = llmcache_main(
        "dashboard", "-w", WORKSPACE, "--tiers", f"memory,disk://{tmp_path / 'cache'}",
        "--port", "0", env={"LLMCACHE_DASHBOARD_TOKEN": "t" * 20},
    )  # fmt: skip
    assert shown.code == 0, shown.stderr
    assert "t" * 20 not in shown.stdout and "LLMCACHE_DASHBOARD_TOKEN" in shown.stdout
    assert "/metrics" in shown.stdout and "dashboard stopped" in shown.stdout


def test_without_the_extra_the_command_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    failed = llmcache_main("dashboard", "--dir", str(tmp_path))
    assert "pip install 'llmcache[dashboard]'" in failed.one_line_failure()


def test_other_scopes_pass_the_gate_and_regroup_checks_its_names(shop: llmcache.Cache) -> None:
    import asyncio

    from llmcache._errors import ConfigError
    from llmcache.dashboard._gate import Gate

    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(Gate(app, token="t" * 20, loopback_only=True)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
    report = shop.report()
    assert [row.group for row in report.regroup(("model",))] == [{"model": MODEL}]
    with pytest.raises(ConfigError, match="regroup"):
        report.regroup(("provider",))


def test_plain_functions_get_time_bars_not_zero_dollars(tmp_path: Path) -> None:
    """Calls without usage have nothing to price: the report's bars show time saved."""
    with llmcache.Cache(workspace="plain", tiers=["memory", f"disk://{tmp_path}"]) as cache:
        shout = cache.cached(namespace="text")(lambda text: text.upper())
        shout("a")
        shout("a")
        page = cache.report()._repr_html_()
    assert "time saved per day" in page and "money saved per day" not in page
    assert page.index("id='figure-time'") < page.index("<svg") < page.index("<table")
