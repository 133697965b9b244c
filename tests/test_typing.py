"""The typed public surface: what `mypy --strict` sees in a user's code, and that it holds.

`cached` returns a `CachedFunction[P, R]` (the function's own signature plus `cache_key`,
`cache_info` and `__wrapped__`), for sync and async functions and for methods, where
``obj.method`` binds the instance for the call and for the introspection alike; `wrap`
returns the client's own type; `Cache`'s options are keyword-only.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import CacheInfo

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = """
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from openai import OpenAI

import llmcache
from llmcache import CachedFunction, CacheInfo

cache = llmcache.Cache(workspace="typing", tiers=["memory"])


@cache.cached
def ask(question: str, model: str = "gpt-4o-mini") -> str:
    return question + model


@cache.cached(namespace="research", ttl=60.0, ignore=("verbose",))
async def aask(question: str, verbose: bool = False) -> list[int]:
    return [len(question)]


@llmcache.cached
def default_cache_bare(n: int) -> int:
    return n


@llmcache.cached(version=2)
def default_cache_configured(n: int) -> float:
    return n / 2


class Assistant:
    @cache.cached
    def answer(self, question: str) -> int:
        return len(question)

    @cache.cached(namespace="methods")
    async def aanswer(self, question: str, *, loud: bool = False) -> str:
        return question.upper() if loud else question


async def main() -> None:
    text: str = ask("q", model="m")
    numbers: list[int] = await aask("q", verbose=True)
    key: str = ask.cache_key("q")
    async_key: str = aask.cache_key("q")
    info: CacheInfo = ask.cache_info()
    hits: int = info.hits
    ask.cache_clear()
    original: Callable[[str, str], str] = ask.__wrapped__
    async_original: Callable[..., Coroutine[Any, Any, list[int]]] = aask.__wrapped__
    as_protocol: CachedFunction[[str, str], str] = ask
    bare: int = default_cache_bare(1)
    configured: float = default_cache_configured(1)

    assistant = Assistant()
    length: int = assistant.answer("q")
    method_key: str = assistant.answer.cache_key("q")
    method_info: CacheInfo = assistant.answer.cache_info()
    assistant.answer.cache_clear()
    bound_original: Callable[[str], int] = assistant.answer.__wrapped__
    unbound_call: int = Assistant.answer(assistant, "q")
    shouted: str = await assistant.aanswer("q", loud=True)
    method_async_key: str = assistant.aanswer.cache_key("q", loud=True)

    client: OpenAI = cache.wrap(OpenAI(api_key="sk-test"))
    print(text, numbers, key, async_key, hits, original, async_original, as_protocol, bare)
    print(configured, length, method_key, method_info, bound_original, unbound_call, shouted)
    print(method_async_key, client)


asyncio.run(main())
"""

# Each line is a mistake the types must catch: wrong result type, wrong argument type,
# a missing argument, and options passed positionally to Cache.
USER_MISTAKES = """
from __future__ import annotations

import llmcache

cache = llmcache.Cache(workspace="typing", tiers=["memory"])


@cache.cached
def ask(question: str) -> str:
    return question


class Assistant:
    @cache.cached
    def answer(self, question: str) -> int:
        return len(question)


wrong_result: int = ask("q")
wrong_argument = ask(1)
missing_argument = Assistant().answer.cache_key()
positional_options = llmcache.Cache("typing", "secret")
"""


def _mypy_strict(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    environment = {**os.environ, "MYPYPATH": ""}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-version",
            "3.11",
            str(path),
        ],
        cwd=tmp_path,  # not the project: its [tool.mypy] settings must not apply
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_user_code_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    result = _mypy_strict(tmp_path, "user_code.py", USER_CODE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_catches_mistakes_in_user_code(tmp_path: Path) -> None:
    result = _mypy_strict(tmp_path, "user_mistakes.py", USER_MISTAKES)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = USER_MISTAKES.splitlines()
    flagged = {
        lines[int(line.split(":")[1]) - 1].split(" =")[0]
        for line in result.stdout.splitlines()
        if line.startswith("user_mistakes.py:") and ": error:" in line
    }
    assert flagged == {
        "wrong_result: int",
        "wrong_argument",
        "missing_argument",
        "positional_options",
    }, result.stdout


# -- the same surface at run time ------------------------------------------------------------------


class Assistant:
    def __init__(self, cache: llmcache.Cache, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

        @cache.cached
        def nested(question: str) -> str:  # a function of `<locals>`: a plain wrapper
            return question

        self.nested = nested


@pytest.fixture
def methods_cache(memory_cache: llmcache.Cache) -> Any:
    """A class with cached methods (defined per test: a method needs its class body)."""

    class Bot(Assistant):
        @memory_cache.cached
        def answer(self, question: str) -> str:
            """Answers a question."""
            self.calls.append(question)
            return f"{self.name}: {question}"

        @memory_cache.cached
        async def aanswer(self, question: str) -> str:
            self.calls.append(question)
            return f"{self.name}: {question}"

    return Bot


def test_a_method_binds_its_instance_for_call_key_info_and_original(
    memory_cache: llmcache.Cache, methods_cache: Any
) -> None:
    first, second = methods_cache(memory_cache, "first"), methods_cache(memory_cache, "second")
    assert first.answer("q") == "first: q"
    # The instance stays out of the key (as with cachetools.cachedmethod): the second
    # instance is served the first one's result, and both compute the same key.
    assert second.answer("q") == "first: q"
    assert second.calls == []
    assert first.answer.cache_key("q") == second.answer.cache_key(question="q")
    assert first.answer.cache_key("q") != first.answer.cache_key("other")
    assert first.answer.cache_info() == CacheInfo(1, 1, 0, 0, 1, 0)
    assert first.answer.__wrapped__("direct") == "first: direct"  # uncached, bound
    assert first.calls == ["q", "direct"]
    assert type(first).answer(first, "q") == "first: q"  # through the class: instance first
    assert type(first).answer.cache_info().hits == 2
    assert first.answer.__name__ == "answer"
    assert first.answer.__doc__ == "Answers a question."
    assert first.answer.__self__ is first
    assert list(inspect.signature(first.answer.__wrapped__).parameters) == ["question"]


def test_an_async_method_binds_its_instance(
    memory_cache: llmcache.Cache, methods_cache: Any
) -> None:
    bot = methods_cache(memory_cache, "bot")

    async def twice() -> list[str]:
        return [await bot.aanswer("q"), await bot.aanswer("q")]

    assert asyncio.run(twice()) == ["bot: q", "bot: q"]
    assert bot.calls == ["q"]
    assert bot.aanswer.cache_key("q").startswith(memory_cache._keys.workspace_prefix())
    assert bot.aanswer.cache_info().memory_hits == 1


def test_a_module_or_nested_function_stays_a_plain_function(
    memory_cache: llmcache.Cache,
) -> None:
    # The cheapest call there is: no descriptor in front of a plain function's hit path.
    @memory_cache.cached
    def plain(question: str) -> str:
        return question

    assert inspect.isfunction(plain)
    assert inspect.isfunction(Assistant(memory_cache, "a").nested)
    assert plain("q") == "q"
    assert plain.cache_key("q") == plain.cache_key(question="q")
    assert plain.__wrapped__("x") == "x"


def test_cache_options_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        llmcache.Cache("typing", "secret")  # type: ignore[misc]
    cache = llmcache.Cache("typing", tiers=["memory"])
    assert cache.workspace == "typing"
    cache.close()
