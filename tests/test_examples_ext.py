"""The extension API's examples and README samples run, and say what they should.

`examples/provider_adapter.py` and `examples/backend.py` run as scripts (their own process:
they register a provider and a backend, which must not leak into other tests) and their
output is checked line by line. The code samples under the README's "Writing a provider
adapter" and "Writing a backend" are self-contained: each runs as a script (it asserts what
it shows), and passes ruff. The example's toy backend also passes the backend contract suite.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import runpy
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcache.ext import Backend
from tests.backend_contract import BackendContract

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXT_EXAMPLES = [EXAMPLES / "provider_adapter.py", EXAMPLES / "backend.py"]
README_SECTIONS = ["Writing a provider adapter", "Writing a backend"]


def _run_script(path: Path) -> str:
    """Run `path` with this interpreter; its stdout, or a failure showing its stderr."""
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{path.name} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


# -- the examples ----------------------------------------------------------------------------------
def test_the_provider_example_caches_coalesces_streams_and_prices() -> None:
    lines = _run_script(EXAMPLES / "provider_adapter.py").splitlines()
    assert lines == [
        "first call: miss, 'WHY CACHE LLM CALLS', real calls 1",
        "second call: hit from memory, 'WHY CACHE LLM CALLS', real calls 1",
        "another timeout: hit from memory, real calls 1",
        "8 threads, same question: 1 real call",
        "5 tasks, same question: 1 real call",
        "cut short twice ('A LONG'): 2 real calls, nothing kept",
        "first stream: ['STREAM', 'ME', 'PLEASE'], real calls 6",
        "second stream: ['STREAM', 'ME', 'PLEASE'], real calls 6",
        # 48 tokens paid for, 132 served from the cache, at the toy's $0.000002 per token:
        # priced by the adapter's usage_of, the stream's recording included.
        "ledger: 6 real calls, 14 hits, spent $0.000096, saved $0.000264",
    ]


def test_the_backend_example_stores_shares_and_survives_its_tier_going_down() -> None:
    lines = _run_script(EXAMPLES / "backend.py").splitlines()
    assert lines[0].startswith("without a secret: ConfigError: tier toy://demo is shared")
    assert lines[1:9] == [
        "first cache: miss, real calls 1",
        "first cache again: hit from memory, real calls 1",
        "second cache: hit from toy://demo, real calls 1",
        "tier down: 'an answer to: Is the tier down?', real calls 2, no exception",
        "  health: toy://demo last error 'BackendError: toy://demo: the toy server is down'",
        "  writes queued for when it is back: 1",
        "tier back: queued writes 0",
        "first cache, the answer written late: hit from toy://demo",
    ]
    cleared = re.fullmatch(r"clear\(\): (\d+) entries removed", lines[9])
    assert cleared is not None and int(cleared.group(1)) >= 2  # both answers, in the toy tier
    assert len(lines) == 10


@pytest.mark.parametrize("path", EXT_EXAMPLES, ids=lambda p: p.name)
def test_the_examples_import_only_llmcache_its_ext_and_the_standard_library(path: Path) -> None:
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.append(node.module)
    ours = {name for name in imported if name.split(".")[0] == "llmcache"}
    others = {name for name in imported if name.split(".")[0] != "llmcache"}
    assert ours <= {"llmcache", "llmcache.ext"}, ours
    assert "llmcache.ext" in ours
    assert {name.split(".")[0] for name in others} <= sys.stdlib_module_names | {"__future__"}


# -- the README's samples --------------------------------------------------------------------------
def _section(heading: str) -> str:
    """The text of the README section under `## heading`, up to the next `## ` heading."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _python_blocks(section: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("heading", README_SECTIONS)
def test_the_readme_sample_compiles_and_runs(heading: str, tmp_path: Path) -> None:
    blocks = _python_blocks(_section(heading))
    assert len(blocks) == 1, f"README '{heading}' has {len(blocks)} python blocks, expected 1"
    compile(blocks[0], f"README: {heading}", "exec")
    script = tmp_path / "sample.py"
    script.write_text(blocks[0])
    _run_script(script)  # the sample asserts what it shows (a hit, one real call, a write)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("heading", README_SECTIONS)
def test_the_readme_sample_passes_ruff(heading: str, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(_python_blocks(_section(heading))[0])
    config = str(ROOT / "pyproject.toml")
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--config", config, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"ruff {' '.join(command)}:\n{done.stdout}{done.stderr}"


def test_the_section_finder_sees_a_missing_sample() -> None:
    assert _python_blocks("## X\n\ntext\n\n```bash\nls\n```\n") == []
    assert _python_blocks("## X\n\n```python\nx = 1\n```\n") == ["x = 1\n"]


# -- the example's backend keeps the contract every backend keeps ----------------------------------
# Loaded without running its main(): nothing is registered in this process.
_TOY = runpy.run_path(str(EXAMPLES / "backend.py"), run_name="llmcache_example_backend")


class TestToyBackendContract(BackendContract):
    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        toy: Any = _TOY["ToyBackend"](f"contract-{uuid.uuid4().hex}")  # a fresh, empty store
        yield toy
        toy.close()

    def test_a_store_that_is_down_raises_backend_errors_caused_by_a_connection_error(
        self, backend: Any
    ) -> None:
        from llmcache.ext import BackendError

        backend.server.up = False
        with pytest.raises(BackendError) as raised:
            backend.get("llmc:any")
        assert isinstance(raised.value.__cause__, ConnectionError)
