"""Write sync code from its async source: the core's flow and the provider adapters' endpoints.

`llmcache/_async/*.py` → `llmcache/_sync/*.py`, and for the OpenAI and Anthropic adapters
`adapters/llmcache_<provider>/_async.py` → `_sync.py` (and `_async_streams.py` →
`_sync_streams.py`).

    python scripts/unasync.py          # rewrite the sync files
    python scripts/unasync.py --check  # exit 1 if they are not what this script writes

The async code is the one source (as in httpcore): the sync copy drops ``async`` and
``await`` and renames the few names that differ (see `llmcache/_io.py`). The output is
formatted with ruff, so a current copy is byte-identical to a fresh one; CI runs ``--check``
(scripts/test.sh) and `tests/test_unasync.py` does too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (async source, sync target): a folder's modules (not its __init__), or one file.
PAIRS = [
    (ROOT / "llmcache" / "_async", ROOT / "llmcache" / "_sync"),
    (
        ROOT / "adapters" / "llmcache_openai" / "_async.py",
        ROOT / "adapters" / "llmcache_openai" / "_sync.py",
    ),
    (
        ROOT / "adapters" / "llmcache_openai" / "_async_streams.py",
        ROOT / "adapters" / "llmcache_openai" / "_sync_streams.py",
    ),
    (
        ROOT / "adapters" / "llmcache_anthropic" / "_async.py",
        ROOT / "adapters" / "llmcache_anthropic" / "_sync.py",
    ),
    (
        ROOT / "adapters" / "llmcache_anthropic" / "_async_streams.py",
        ROOT / "adapters" / "llmcache_anthropic" / "_sync_streams.py",
    ),
]

# Whole words only. Order matters where one name contains another.
RENAMES = {
    "AsyncFlow": "Flow",
    "AsyncCompute": "Compute",
    "asleep": "sleep",
    "running_loop": "no_loop",
    "aget": "get",
    "aset": "set",
    "acall": "call",
    "aload": "load",
    "alanded": "landed",
    "async_name": "sync_name",
    "aopen_stream": "open_stream",
    "aclaim": "claim",
    "aenter": "enter",  # a miss check (`_gate`)
    "astore": "store",
    "_async_streams": "_sync_streams",
    "CachedAsyncStream": "CachedStream",
    "AsyncReplayStream": "ReplayStream",
    "_AsyncClosing": "_Closing",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "StopAsyncIteration": "StopIteration",
    "AsyncIterator": "Iterator",
    "AsyncChatCompletions": "ChatCompletions",
    "AsyncChat": "Chat",
    "AsyncResponses": "Responses",
    "AsyncEmbeddings": "Embeddings",
    # the Anthropic adapter's endpoints and streams (the SDK's own helper streams included)
    "AsyncMessages": "Messages",
    "AsyncBetaMessages": "BetaMessages",
    "AsyncBeta": "Beta",
    "AsyncStreamHelper": "StreamHelper",
    "AsyncMessageStream": "MessageStream",
    "BetaAsyncMessageStream": "BetaMessageStream",
    "CachedAsyncMessageStream": "CachedMessageStream",
    "CachedBetaAsyncMessageStream": "CachedBetaMessageStream",
}
SUBSTITUTIONS = [
    # A sync tier call is bounded by the backend itself: the deadline wrapper goes (ruff
    # drops the parentheses it leaves in returns and assignments).
    (re.compile(r"\bawait self\._bounded\("), "("),
    (re.compile(r"\basync (def|with|for)\b"), r"\1"),
    (re.compile(r"\bawait "), ""),
    (re.compile(r"\bAwaitable\[(\w+)\]"), r"\1"),  # what is awaited is what is returned
    *((re.compile(rf"\b{old}\b"), new) for old, new in RENAMES.items()),
]


def header(source: Path) -> str:
    relative = source.relative_to(ROOT).as_posix()
    return (
        f"# Written by scripts/unasync.py from {relative}:\n"
        f"# edit that file, then run `python scripts/unasync.py`. CI fails when this copy is\n"
        f"# not current.\n"
    )


def unasync_text(text: str) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return text


def _ruff(command: str, *args: str) -> None:
    config = str(ROOT / "pyproject.toml")  # the temporary folder of --check has none
    subprocess.run(
        [sys.executable, "-m", "ruff", command, "--config", config, *args],
        check=True,
        capture_output=True,
    )


def _sources() -> list[tuple[Path, Path]]:
    """Every (async source file, sync target file)."""
    found = []
    for source, target in PAIRS:
        if source.is_dir():
            found += [
                (f, target / f.name) for f in sorted(source.glob("*.py")) if f.name != "__init__.py"
            ]
        else:
            found.append((source, target))
    return found


def generate(root: Path) -> list[Path]:
    """Write the sync copy of every async source, under `root` in place of ROOT."""
    written = []
    for source, target in _sources():
        out = root / target.relative_to(ROOT)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header(source) + unasync_text(source.read_text()))
        written.append(out)
    paths = [str(p) for p in written]
    # Imports renamed out of order or no longer used, and lines that got shorter: as ruff
    # leaves them.
    _ruff("check", "--fix", "--select", "I,F401,RUF022", "--quiet", *paths)
    _ruff("format", "--quiet", *paths)
    return written


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        for path in generate(ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    stale = []
    with tempfile.TemporaryDirectory() as folder:
        for fresh in generate(Path(folder)):
            current = ROOT / fresh.relative_to(folder)
            if not current.exists() or current.read_text() != fresh.read_text():
                stale.append(str(current.relative_to(ROOT)))
    if stale:
        print(f"not current: {', '.join(stale)}; run python scripts/unasync.py")
        return 1
    print("the sync code is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
