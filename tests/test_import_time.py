"""`import llmcache` stays light: heavy modules load only when a call needs them.

Each check runs in a fresh interpreter (this one has imported everything long ago). Each
module is asserted absent after `import llmcache` and, where llmcache is what needs it,
present after the call that does: so a check cannot pass because the module is not
installed or is imported under another name. How long the import takes is measured by
benchmarks/bench_import.py, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Never needed by `import llmcache` itself.
LAZY_MODULES = (
    "pydantic",
    "asyncio",
    "importlib.metadata",
    "cryptography",
    "sqlite3",
    "concurrent.futures",
    "argparse",
    "rich",
    "typer",
)


def loaded_after(code: str) -> set[str]:
    """Which of LAZY_MODULES a fresh interpreter has loaded after running `code`."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json as _json, sys as _sys
        print(_json.dumps([m for m in {LAZY_MODULES!r} if m in _sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_llmcache_loads_none_of_the_heavy_modules() -> None:
    assert loaded_after("import llmcache") == set()


def test_a_plain_cached_call_needs_neither_pydantic_nor_asyncio_nor_entry_points() -> None:
    loaded = loaded_after(
        """
        import llmcache

        cache = llmcache.Cache(workspace="light", tiers=["memory://"])

        @cache.cached
        def answer(question: str) -> str:
            return question.upper()

        assert answer("why") == answer("why") == "WHY"
        assert cache.stats  # looked up, not called: the stats model is not built
        """
    )
    # A cache keys its cipher (cryptography) and loads namespaces on a thread of its own
    # (concurrent.futures); it also imports the disk tier's module (sqlite3) to tell whether
    # it has one. Nothing else is needed.
    assert loaded <= {"cryptography", "concurrent.futures", "sqlite3"}, loaded
    assert "cryptography" in loaded  # the check sees what a call loads


@pytest.mark.parametrize(
    ("module", "call"),
    [
        ("pydantic", "llmcache.CallInfo"),
        ("pydantic", "from llmcache import CacheStats"),
        ("pydantic", "llmcache.Cache(workspace='s', tiers=['memory://']).stats()"),
        ("cryptography", "llmcache.Cache(workspace='c', tiers=['memory://'])"),
        ("argparse", "llmcache.load_ipython_extension"),
        (
            "importlib.metadata",
            "import contextlib\n"
            "with contextlib.suppress(llmcache.ConfigError):\n"
            "    llmcache.Cache(workspace='w', tiers=['memory://']).wrap(object())",
        ),
    ],
)
def test_the_call_that_needs_a_module_loads_it(module: str, call: str, tmp_path: object) -> None:
    assert module in loaded_after(f"import llmcache\n{call}\n")


def test_a_disk_tier_loads_sqlite3(tmp_path: object) -> None:
    loaded = loaded_after(
        f"import llmcache\nllmcache.Cache(workspace='d', tiers=['disk://{tmp_path}'])\n"
    )
    assert "sqlite3" in loaded


def test_a_pydantic_model_imported_after_llmcache_is_still_stored_as_a_model() -> None:
    """llmcache asks whether a value is a pydantic model only once pydantic is loaded: a
    model class defined after `import llmcache` must still be stored and decoded as one."""
    loaded = loaded_after(
        """
        import llmcache

        cache = llmcache.Cache(workspace="late", tiers=["memory://"])

        @cache.cached
        def unannotated(n: int):
            return Point(x=n, y=-n)

        @cache.cached
        def annotated(n: int) -> dict[str, int]:
            return {"n": n}

        annotated(1)  # decorated and called before pydantic is loaded

        from pydantic import BaseModel

        class Point(BaseModel):
            x: int
            y: int

        @cache.cached
        def typed(n: int) -> Point:
            return Point(x=n, y=n)

        for function in (unannotated, typed):
            first, second = function(3), function(3)
            assert isinstance(second, Point), second
            assert first == second and first is not second
            assert llmcache.last_info().hit
        assert cache.stats().unstorable == 0
        """
    )
    assert "pydantic" in loaded
