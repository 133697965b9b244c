"""The pytest plugin (``--llmcache=record|replay|refresh``, the ``llmcache`` marker and the
``llmcache_cache`` fixture), run on test suites written here with `pytester`: record, then
replay offline, a new call failing with the hint, refresh re-recording, and nothing at all
when a run does not use it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import llmcache
import llmcache.pytest_plugin  # kept loaded across the in-process runs (see below)

# In-process runs (`runpytest`) unload the modules a run imported when it ends; the plugin's,
# imported here first, stay: every run uses the same classes, as a real run does.
pytest_plugins = ["pytester"]

SUITE = '''
import os
import pytest
import llmcache

def provider(prompt, temperature):
    """A paid call: refused when the outer test says we are offline."""
    if os.environ.get("LLM_OFFLINE"):
        raise AssertionError("the provider was called")
    return f"{prompt.upper()} {os.environ.get('LLM_ANSWER', 'v1')}"

@pytest.mark.llmcache
def test_ask():
    @llmcache.cached
    def ask(prompt, temperature=0.0):
        return provider(prompt, temperature)

    answer = ask("the secret prompt", temperature=float(os.environ.get("LLM_TEMPERATURE", "0")))
    print("ANSWER", answer)
    assert answer.startswith("THE SECRET PROMPT")
'''


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    for name in ("LLMCACHE_MODE", "LLM_OFFLINE", "LLM_ANSWER", "LLM_TEMPERATURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LLMCACHE_CASSETTE_SECRET", raising=False)


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "cache.sqlite3").read_bytes()).hexdigest()


def test_record_then_replay_offline_then_a_new_call_fails_with_the_hint_then_refresh(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--llmcache=record", "-s").assert_outcomes(passed=1)
    folder = pytester.path / "llm_cassettes" / "test_suite"
    assert (folder / "cache.sqlite3").is_file() and (folder / "secret").is_file()
    ignored = (pytester.path / "llm_cassettes" / ".gitignore").read_text()
    assert "*-wal" in ignored and "*.reopen-lock" in ignored
    recorded = _digest(folder)
    # A record run that records nothing new leaves the file as it was (counts stay in memory).
    pytester.runpytest("--llmcache=record").assert_outcomes(passed=1)
    assert _digest(folder) == recorded

    # Offline: the recorded call is served, and replaying does not change the recording.
    monkeypatch.setenv("LLM_OFFLINE", "1")
    replay = pytester.runpytest("--llmcache=replay", "-s")
    replay.assert_outcomes(passed=1)
    replay.stdout.fnmatch_lines(["*ANSWER THE SECRET PROMPT v1*"])
    assert _digest(folder) == recorded

    # A call never recorded fails its test, saying which argument differs (not its value).
    monkeypatch.setenv("LLM_TEMPERATURE", "0.5")
    failed = pytester.runpytest("--llmcache=replay")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            "*CacheMiss: replay mode: no recorded entry for test_suite.test_ask.<locals>.ask*",
            "*llmcache*",
            "*mode replay; recordings folder*test_suite (holds recordings)*",
        ]
    )
    output = failed.stdout.str()
    assert "differs from the nearest of 1 recorded call of this function in: temperature" in (
        output
    )
    assert "0.5" not in output.split("CacheMiss:", 1)[1].split("\n", 1)[0]

    # Recordings without their secret cannot be read: the report says what is missing.
    secret = (folder / "secret").read_bytes()
    (folder / "secret").unlink()
    monkeypatch.delenv("LLM_TEMPERATURE")
    unread = pytester.runpytest("--llmcache=replay")
    unread.assert_outcomes(failed=1)
    unread.stdout.fnmatch_lines(["*holds recordings, but not their secret: commit*secret*"])
    (folder / "secret").write_bytes(secret)
    monkeypatch.setenv("LLM_TEMPERATURE", "0")

    # refresh makes the call again and records its new answer, which replay then serves.
    monkeypatch.delenv("LLM_TEMPERATURE")
    monkeypatch.delenv("LLM_OFFLINE")
    monkeypatch.setenv("LLM_ANSWER", "v2")
    pytester.runpytest("--llmcache=refresh").assert_outcomes(passed=1)
    monkeypatch.setenv("LLM_OFFLINE", "1")
    monkeypatch.delenv("LLM_ANSWER")
    again = pytester.runpytest("--llmcache=replay", "-s")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*ANSWER THE SECRET PROMPT v2*"])


def test_a_missing_recording_fails_in_replay_and_creates_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--llmcache=replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no call of*was recorded*", "*(is missing)*"])
    assert not (pytester.path / "llm_cassettes").exists()


def test_the_plugin_does_nothing_when_a_run_does_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import os, sys

        def test_untouched():
            assert "llmcache" not in sys.modules  # the plugin imported nothing of llmcache
            assert "LLMCACHE_MODE" not in os.environ
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "llm_cassettes").exists()
    listed = pytester.runpytest("--help")
    listed.stdout.fnmatch_lines(["*--llmcache=*"])


def test_a_caught_cache_miss_still_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_swallow="""
        import pytest
        import llmcache

        @pytest.mark.llmcache
        def test_fallback():
            @llmcache.cached
            def ask(prompt):
                return prompt
            try:
                ask("new")
            except Exception:
                pass  # the code under test falls back to something else
        """
    )
    result = pytester.runpytest("--llmcache=replay")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test passed, but the code under test caught a CacheMiss*"])


def test_scope_cassette_ini_options_and_the_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INI + "llmcache = record\nllmcache_cassettes = recordings\n")
    pytester.makepyfile(
        test_scopes="""
        import pytest
        import llmcache

        @pytest.mark.llmcache(scope="test")
        @pytest.mark.parametrize("n", [1])
        def test_own_folder(n):
            assert llmcache.get_default_cache().cached(lambda x: x)(n) == 1

        @pytest.mark.llmcache(cassette="shared/one")
        def test_named():
            assert llmcache.get_default_cache().cached(lambda x: x)(2) == 2

        def test_fixture(llmcache_cache):
            assert llmcache.get_default_cache() is llmcache_cache
            assert llmcache_cache.workspace == "pytest" and llmcache_cache.mode == "record"

        def test_outside():
            assert llmcache.get_default_cache().workspace != "pytest"
        """
    )
    pytester.runpytest().assert_outcomes(passed=4)
    base = pytester.path / "recordings"
    assert (base / "test_scopes" / "test_own_folder_1" / "cache.sqlite3").is_file()
    assert (base / "shared" / "one" / "cache.sqlite3").is_file()
    assert (base / "test_scopes" / "cache.sqlite3").is_file()  # the fixture's, per module

    monkeypatch.setenv("LLMCACHE_CASSETTE_SECRET", "a-secret-from-the-ci-environment")
    pytester.makepyfile(
        test_secret="""
        import pytest
        import llmcache

        @pytest.mark.llmcache
        def test_env_secret():
            assert llmcache.get_default_cache().cached(lambda x: x)(3) == 3
        """
    )
    pytester.runpytest("test_secret.py").assert_outcomes(passed=1)
    assert not (base / "test_secret" / "secret").exists()  # the secret stayed in the env
    pytester.runpytest("test_secret.py", "--llmcache=replay").assert_outcomes(passed=1)


def test_bad_settings_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "llmcache = rewind\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the llmcache ini option must be one of*rewind*"])
    pytester.makeini(INI)
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.llmcache(scope="session")
        def test_x():
            pass
        """
    )
    pytester.runpytest().stdout.fnmatch_lines(["*llmcache scope must be 'module' or 'test'*"])


def test_the_mode_reaches_every_cache_of_the_run_and_is_put_back(
    pytester: pytest.Pytester,
) -> None:
    default = llmcache.get_default_cache()
    assert default.mode == "record"
    pytester.makepyfile(
        test_mode="""
        import os
        import llmcache

        def test_other_caches():
            assert os.environ["LLMCACHE_MODE"] == "replay"
            assert llmcache.Cache(tiers=["memory"]).mode == "replay"
            assert llmcache.get_default_cache().mode == "replay"
        """
    )
    pytester.runpytest("--llmcache=replay").assert_outcomes(passed=1)
    assert default.mode == "record"
    assert "LLMCACHE_MODE" not in os.environ
    os.environ["LLMCACHE_MODE"] = "refresh"
    try:
        pytester.runpytest("--llmcache=replay").assert_outcomes(passed=1)
        assert os.environ["LLMCACHE_MODE"] == "refresh"
    finally:
        del os.environ["LLMCACHE_MODE"]


def test_a_session_folder_records_functions_decorated_at_import(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INI + "llmcache_session = tests/llm_cassettes/session\n")
    pytester.makepyfile(
        test_app="""
        import os
        import pytest
        import llmcache

        @llmcache.cached  # decorated at import, as application code is
        def summarize(text):
            if os.environ.get("LLM_OFFLINE"):
                raise AssertionError("the provider was called")
            return text[:3]

        def test_summarize():
            assert summarize("abcdef") == "abc"

        @pytest.mark.llmcache
        def test_marked_tests_still_get_their_own():
            assert llmcache.get_default_cache() is not summarize.cache  # its own folder
            assert summarize("abcdef") == "abc"
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)  # record, the default mode
    assert (pytester.path / "tests" / "llm_cassettes" / "session" / "cache.sqlite3").is_file()
    monkeypatch.setenv("LLM_OFFLINE", "1")
    pytester.runpytest("--llmcache=replay").assert_outcomes(passed=2)
    assert llmcache._config._DEFAULT is None or "session" not in repr(llmcache._config._DEFAULT)


def test_a_default_cache_built_before_the_session_folder_is_kept_with_a_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI + "llmcache_session = recordings\n")
    pytester.makeconftest("import llmcache\nllmcache.get_default_cache()\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("-W", "always::pytest.PytestConfigWarning")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*llmcache_session = recordings: the default cache was built*"])
    assert not (pytester.path / "recordings").exists()
