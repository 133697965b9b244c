"""The sync code written from its async source (scripts/unasync.py) is current and sync."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = [
    *sorted(p for p in (ROOT / "llmcache" / "_sync").glob("_*.py") if p.name != "__init__.py"),
    ROOT / "adapters" / "llmcache_openai" / "_sync.py",
]


def test_the_sync_copies_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "current" in result.stdout


def test_the_sync_copies_neither_await_nor_define_coroutines() -> None:
    assert len(GENERATED) >= 3
    for path in GENERATED:
        text = path.read_text()
        assert text.startswith("# Written by scripts/unasync.py"), path
        nodes = ast.walk(ast.parse(text))
        assert not [n for n in nodes if isinstance(n, ast.AsyncFunctionDef | ast.Await)], path


def test_the_rewrite_drops_async_and_await_and_renames() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import unasync as script  # scripts/unasync.py
    finally:
        sys.path.pop(0)
    assert (
        script.unasync_text("async def f():\n    await g.aget(k)\n") == "def f():\n    g.get(k)\n"
    )
