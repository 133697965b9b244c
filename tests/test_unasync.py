"""The sync code written from its async source (scripts/unasync.py) is current and sync."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import unasync  # scripts/unasync.py (first on the path)
    finally:
        sys.path.pop(0)
    return unasync


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
    generated = [target for _, target in _script()._sources()]
    assert len(generated) >= 4  # the flow, the tier calls, the OpenAI endpoints and streams
    for path in generated:
        text = path.read_text()
        assert text.startswith("# Written by scripts/unasync.py"), path
        nodes = ast.walk(ast.parse(text))
        kinds = (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)
        assert not [n for n in nodes if isinstance(n, kinds)], path


def test_the_rewrite_drops_async_and_await_and_renames() -> None:
    rewrite = _script().unasync_text
    assert rewrite("async def f():\n    await g.aget(k)\n") == "def f():\n    g.get(k)\n"
    assert rewrite("x = await self._bounded(self.backend.aget(k))") == "x = (self.backend.get(k))"
    assert rewrite("f: Callable[[], Awaitable[Any]]") == "f: Callable[[], Any]"
