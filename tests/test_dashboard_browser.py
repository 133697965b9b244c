"""The dashboard in a real headless Chromium (selenium, Debian's chromium and chromedriver):
its headline figures are `cache.report()`'s, it follows calls made by another process
without a reload, user-controlled names show as text and never run, it fits a phone's
width, and it leaves screenshots (in the test's folder and in LLMCACHE_SCREENSHOT_DIR).

One browser and one server for the module: starting Chromium is most of the cost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver  # a dev dependency: scripts/test.sh installs it
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import llmcache
from llmcache.dashboard._look import headline_figures
from tests.test_dashboard import WORKSPACE, populate, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NASTY = "<script>window.__pwned = 1</script>"
DAY = 86400.0

HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
if not HAVE_BROWSER and os.environ.get("LLMCACHE_REQUIRE_BROWSER"):
    # scripts/test.sh (CI) installs the browser and sets this: there, a missing browser is
    # a failure, never a skip.
    raise RuntimeError(
        "the dashboard's browser tests need Debian's chromium and chromium-driver "
        f"({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver"
    )
pytestmark = pytest.mark.skipif(
    not HAVE_BROWSER,
    reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with three days of calls: two namespaces, an OpenAI and a Claude model."""
    where = tmp_path_factory.mktemp("dashboard") / "cache"
    now = time.time()
    for days_ago, n in ((2, 8), (1, 12)):
        populate(where, n=n, clock=lambda ago=days_ago: now - ago * DAY)
    populate(where, n=10)
    populate(where, namespace="research", model="claude-sonnet-4-6", n=6)
    return where


@pytest.fixture(scope="module")
def cache(folder: Path) -> Iterator[llmcache.Cache]:
    opened = llmcache.Cache(workspace=WORKSPACE, tiers=["memory", f"disk://{folder}"])
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def url(cache: llmcache.Cache) -> Iterator[str]:
    with running(cache, refresh_s=0.3) as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def shown(browser: Any, key: str) -> str:
    return str(browser.find_element(By.ID, f"figure-{key}").text)


def test_the_headline_figures_are_the_reports(
    browser: Any, url: str, cache: llmcache.Cache
) -> None:
    browser.get(url)
    totals = cache.report().totals
    figures = headline_figures(totals)
    assert [shown(browser, f.key) for f in figures] == [f.value for f in figures]
    assert figures[0].value.startswith("$") and figures[2].value == f"{totals.hits:,}"
    assert totals.hits > 0 and cache.report().first_day < cache.report().last_day
    assert browser.find_elements(By.CSS_SELECTOR, "section[data-panel=daily] svg rect.bar")
    assert "research" in browser.find_element(By.CSS_SELECTOR, "[data-panel=namespaces]").text


OTHER_PROCESS = """
import sys, llmcache
cache = llmcache.Cache(workspace=%(workspace)r, tiers=["memory", "disk://" + sys.argv[1]])
usage = lambda result: {"model": %(nasty)r, "input_tokens": 500, "output_tokens": 50}
@cache.cached(namespace="support", usage=usage)
def ask(question):
    return question[::-1]
for question in ["new 1", "new 2", "new 1", "new 1", "new 2"]:
    ask(question)
# Namespace names are checked (letters, digits, _ . -), so one that is markup can only come
# from the ledger itself (another version, someone with the secret): written there directly.
cache.ledger.miss(%(nasty)r, {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 1})
cache.close()
"""


@pytest.fixture(scope="module")
def before_other_process(browser: Any, url: str, folder: Path) -> dict[str, str]:
    """The page as it was, then calls (and markup names) from another process."""
    browser.get(url)
    browser.execute_script("window.__loaded_once = 'yes';")  # gone if the page reloads
    before = {key: shown(browser, key) for key in ("avoided", "hit-rate", "saved")}
    code = OTHER_PROCESS % {"workspace": WORKSPACE, "nasty": NASTY}
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(folder)], check=True, timeout=60
    )
    return before


def test_the_page_follows_another_process_without_a_reload(
    browser: Any, cache: llmcache.Cache, before_other_process: dict[str, str]
) -> None:
    expected = {f.key: f.value for f in headline_figures(cache.report().totals)}
    assert expected["avoided"] != before_other_process["avoided"]  # 3 more hits
    WebDriverWait(browser, 15, poll_frequency=0.1).until(
        lambda driver: shown(driver, "avoided") == expected["avoided"]
    )
    assert {key: shown(browser, key) for key in expected} == expected
    assert browser.execute_script("return window.__loaded_once") == "yes"  # no reload
    assert browser.find_element(By.ID, "status").text == "live"


def test_names_that_are_markup_show_as_text_and_never_run(
    browser: Any, url: str, before_other_process: dict[str, str]
) -> None:
    def panel_text(driver: Any, name: str) -> str:
        return str(driver.find_element(By.CSS_SELECTOR, f"[data-panel={name}]").text)

    # Swapped in by the page's script, then rendered by the server on a fresh load.
    for load in (False, True):
        if load:
            browser.get(url)
        WebDriverWait(browser, 15, poll_frequency=0.1).until(
            lambda driver: NASTY in panel_text(driver, "namespaces")
        )
        assert NASTY in panel_text(browser, "models")  # a model named so, too
        assert browser.execute_script("return window.__pwned") is None
        scripts = browser.find_elements(By.TAG_NAME, "script")
        assert [s.get_attribute("src").rsplit("/", 1)[-1] for s in scripts] == ["dashboard.js"]


def save_screenshot(browser: Any, name: str, folder: Path) -> Path:
    path = folder / name
    assert browser.save_screenshot(str(path))
    wanted = os.environ.get("LLMCACHE_SCREENSHOT_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(wanted) / name)
    return path


def test_screenshots_on_a_laptop_and_a_phone(
    browser: Any, url: str, tmp_path: Path, before_other_process: dict[str, str]
) -> None:
    browser.set_window_size(1280, 1100)
    browser.get(url)
    laptop = save_screenshot(browser, "dashboard.png", tmp_path)
    assert laptop.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and laptop.stat().st_size > 20_000
    try:
        browser.set_window_size(390, 844)
        browser.get(url)
        # Nothing wider than the screen but the tables, which scroll inside their own box.
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0
        figure = browser.find_element(By.ID, "figure-saved")
        assert figure.is_displayed() and figure.rect["x"] + figure.rect["width"] <= 390
        phone = save_screenshot(browser, "dashboard-narrow.png", tmp_path)
        assert phone.stat().st_size > 10_000
    finally:
        browser.set_window_size(1280, 1100)
