"""Single-flight through LiteLLM: identical concurrent `litellm.completion` / `acompletion` /
stream / embedding calls of one process make one request against our loopback server, and a
call that ends without a write (an error, a cut or abandoned stream, ``no-store``) never
keeps the identical calls waiting for `lock_wait`."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import litellm
import llmcache_litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litellm.integrations.custom_logger import CustomLogger
from llmcache_litellm import LLMCacheBackend
from llmcache_litellm._flight import _ENDER, Claims

import llmcache
from llmcache.ext import MISS
from llmcache.testing import FakeOpenAIServer

MODEL = "openai/gpt-4o-mini"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
N = 5  # identical concurrent calls
LOCK_WAIT = 20.0  # what a waiter would wait for a call that ends without a write
PROMPT = 6.0  # "at once": far below LOCK_WAIT, far above the calls' own time


class LateServer(FakeOpenAIServer):
    """The loopback OpenAI server, answering every request (an error too) after `delay`
    seconds, so that identical calls overlap; `arrived` counts requests as they come in."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.arrived = 0
        self.most_at_once = 0  # the most requests it held at the same time
        self._inside = 0
        self._count = threading.Lock()

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        with self._count:
            self.arrived += 1
            self._inside += 1
            self.most_at_once = max(self.most_at_once, self._inside)
        try:
            time.sleep(self.delay)
        finally:
            with self._count:
                self._inside -= 1
        return super()._record(path, body, headers)


@pytest.fixture
def server() -> Iterator[LateServer]:
    with LateServer(delay=0.4) as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    tiers = ["memory", f"disk://{tmp_path}/tier"]
    with llmcache.Cache(workspace="litellm-flight", tiers=tiers, lock_wait=LOCK_WAIT) as c:
        yield c


@pytest.fixture
def installed(cache: llmcache.Cache) -> Iterator[litellm.Cache]:
    made = llmcache_litellm.cache(cache)
    litellm.cache = made
    yield made
    litellm.disable_cache()


@pytest.fixture
def backend(installed: litellm.Cache) -> LLMCacheBackend:
    assert isinstance(installed.cache, LLMCacheBackend)
    return installed.cache


def ask(server: FakeOpenAIServer, text: str = "Why cache?", **kwargs: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "api_base": server.base_url,
        "api_key": "test",
        "max_retries": 0,  # a failure is one request: the SDK does not retry it
        **kwargs,
    }


def embed(server: FakeOpenAIServer, *inputs: str) -> dict[str, Any]:
    return {
        "model": EMBEDDING_MODEL,
        "input": list(inputs),
        "api_base": server.base_url,
        "api_key": "test",
    }


def content(response: Any) -> str:
    return str(response.choices[0].message.content)


def streamed(server: FakeOpenAIServer, text: str) -> str:
    """A streamed completion's text (a stream is keyed apart from the same call unstreamed)."""
    stream = litellm.completion(**ask(server, text), stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


async def astreamed(server: FakeOpenAIServer, text: str) -> str:
    stream = await litellm.acompletion(**ask(server, text), stream=True)
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


async def await_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def together(call: Callable[[], Any], n: int = N) -> list[Any]:
    """`call` made by `n` threads at once; their results (or exceptions), in order."""
    barrier = threading.Barrier(n)

    def one(_: int) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


class Leader:
    """A thread that makes one call and then lives on until `done()`: the end of the thread
    is then not what lets the identical calls go on."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.finished = threading.Event()
        self._exit = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except Exception as error:
            self.result = error
        self.finished.set()
        self._exit.wait(30)

    def done(self) -> None:
        self._exit.set()
        self._thread.join(5)


# ------------------------------------------------------------------------------ one request


def test_identical_completions_of_threads_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    answers = together(lambda: litellm.completion(**ask(server)))
    assert server.requests == 1
    assert len({content(answer) for answer in answers}) == 1
    assert cache.stats().coalesced == N - 1  # the ones served the leader's entry
    assert sum(bool(a._hidden_params.get("cache_hit")) for a in answers) == N - 1


async def test_identical_acompletions_of_tasks_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    answers = await asyncio.gather(*[litellm.acompletion(**ask(server)) for _ in range(N)])
    assert server.requests == 1
    assert len({content(answer) for answer in answers}) == 1
    assert cache.stats().coalesced == N - 1


def test_identical_calls_of_threads_and_of_a_loop_share_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    async def in_a_loop() -> list[Any]:
        calls = [litellm.acompletion(**ask(server, "mixed")) for _ in range(2)]
        return list(await asyncio.gather(*calls))

    leader = Leader(lambda: litellm.completion(**ask(server, "mixed")))
    wait_until(lambda: server.arrived >= 1, "the leader's request")
    answers = asyncio.run(in_a_loop())
    assert leader.finished.wait(10)
    leader.done()
    assert server.requests == 1
    assert {content(a) for a in answers} == {content(leader.result)}
    assert cache.stats().coalesced == 2


def test_different_calls_do_not_wait_for_each_other(
    installed: litellm.Cache, server: LateServer
) -> None:
    texts = iter(f"question {i}" for i in range(N))
    lock = threading.Lock()

    def next_question() -> Any:
        with lock:
            text = next(texts)
        return litellm.completion(**ask(server, text))

    answers = together(next_question)
    assert server.requests == N
    assert not any(isinstance(answer, Exception) for answer in answers)
    assert server.most_at_once >= 2  # side by side: no call waited for another's


# ------------------------------------------------------------------------------ streams


def test_identical_streams_of_threads_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    texts = together(lambda: streamed(server, "stream"))
    assert server.requests == 1
    assert len(set(texts)) == 1 and texts[0]
    assert cache.stats().coalesced == N - 1


async def test_identical_async_streams_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    texts = await asyncio.gather(*[astreamed(server, "astream") for _ in range(N)])
    assert server.requests == 1
    assert len(set(texts)) == 1 and texts[0]
    assert cache.stats().coalesced == N - 1


# ------------------------------------------------------------------------------ embeddings


def test_identical_embeddings_of_threads_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    answers = together(lambda: litellm.embedding(**embed(server, "alpha", "beta")))
    assert server.requests == 1
    vectors = {str([row["embedding"] for row in answer.data]) for answer in answers}
    assert len(vectors) == 1
    assert cache.stats().coalesced == N - 1


async def test_identical_aembeddings_of_tasks_make_one_request(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    # LiteLLM reads each input in a task of its own: the claims are the calling task's.
    calls = [litellm.aembedding(**embed(server, "alpha", "beta")) for _ in range(N)]
    answers = await asyncio.gather(*calls)
    assert server.requests == 1
    vectors = {str([row["embedding"] for row in answer.data]) for answer in answers}
    assert len(vectors) == 1
    stats = cache.stats()
    # The first input's waiters were served the leader's entries: the second input is then
    # a hit (LiteLLM writes every input of the call at once).
    assert stats.coalesced == N - 1
    assert stats.coalesced + stats.hits == 2 * (N - 1)


async def test_aembeddings_of_the_same_inputs_in_other_orders_make_one_request(
    installed: litellm.Cache, server: LateServer
) -> None:
    orders = [("alpha", "beta", "gamma"), ("gamma", "beta", "alpha"), ("beta", "gamma", "alpha")]
    started = time.monotonic()
    answers = await asyncio.gather(*[litellm.aembedding(**embed(server, *o)) for o in orders * 2])
    assert time.monotonic() - started < PROMPT  # no two calls wait for each other's input
    assert server.requests == 1
    vectors = [
        {text: str(row["embedding"]) for text, row in zip(order, answer.data, strict=True)}
        for order, answer in zip(orders * 2, answers, strict=True)
    ]
    assert all(vector == vectors[0] for vector in vectors)


async def test_an_aembedding_that_repeats_an_input_never_waits_for_itself(
    installed: litellm.Cache, server: LateServer
) -> None:
    started = time.monotonic()
    answer = await litellm.aembedding(**embed(server, "alpha", "alpha", "beta"))
    assert time.monotonic() - started < PROMPT
    assert len(answer.data) == 3 and server.requests == 1


# ------------------------------------------------------------------------------ failures


def test_a_failed_call_lets_its_waiters_go_at_once(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    server.fail_next(1)
    leader = Leader(lambda: litellm.completion(**ask(server, "fails")))
    wait_until(lambda: server.arrived >= 1, "the leader's request")
    started = time.monotonic()
    answers = together(lambda: litellm.completion(**ask(server, "fails")), n=3)
    elapsed = time.monotonic() - started
    assert leader.finished.is_set()
    leader.done()
    assert isinstance(leader.result, litellm.InternalServerError)
    # Freed by the failure event (the leader's thread lived on), long before LOCK_WAIT; one
    # of them made the call again and the others were served its entry.
    assert elapsed < PROMPT
    assert server.requests == 2
    assert len({content(answer) for answer in answers}) == 1
    assert cache.stats().coalesced == 2


async def test_a_failed_acompletion_lets_its_waiters_go_at_once(
    installed: litellm.Cache, server: LateServer, cache: llmcache.Cache
) -> None:
    server.fail_next(1)
    failed: list[BaseException] = []
    exit_leader = asyncio.Event()

    async def leader() -> None:
        try:
            await litellm.acompletion(**ask(server, "afails"))
        except Exception as error:
            failed.append(error)
        await exit_leader.wait()  # the task lives on: its end does not free anyone

    leading = asyncio.create_task(leader())
    await await_until(lambda: server.arrived >= 1, "the leader's request")
    started = time.monotonic()
    answers = await asyncio.gather(
        *[litellm.acompletion(**ask(server, "afails")) for _ in range(3)]
    )
    elapsed = time.monotonic() - started
    exit_leader.set()
    await leading
    assert isinstance(failed[0], litellm.InternalServerError)
    assert elapsed < PROMPT
    assert server.requests == 2
    assert len({content(answer) for answer in answers}) == 1


def test_a_cut_stream_lets_its_waiters_go_at_once(
    installed: litellm.Cache, server: LateServer
) -> None:
    # LiteLLM logs a stream's failure from a thread of its own: the claim is found by the
    # call's id, not by the thread.
    server.abort_stream_after(2)
    leader = Leader(lambda: streamed(server, "cut"))
    wait_until(lambda: server.arrived >= 1, "the leader's request")
    started = time.monotonic()
    answers = together(lambda: streamed(server, "cut"), n=3)
    elapsed = time.monotonic() - started
    assert leader.finished.wait(10)
    leader.done()
    assert isinstance(leader.result, Exception)
    assert elapsed < PROMPT
    assert server.requests == 2  # one waiter streamed it again, for the others too
    assert len(set(answers)) == 1 and answers[0]


async def test_a_cut_async_stream_lets_its_waiters_go_at_once(
    installed: litellm.Cache, server: LateServer
) -> None:
    exit_leader = asyncio.Event()
    outcome: list[Any] = []

    async def leader() -> None:
        try:
            outcome.append(await astreamed(server, "acut"))
        except Exception as error:
            outcome.append(error)
        await exit_leader.wait()

    server.abort_stream_after(2)
    leading = asyncio.create_task(leader())
    await await_until(lambda: server.arrived >= 1, "the leader's request")
    started = time.monotonic()
    answers = await asyncio.gather(*[astreamed(server, "acut") for _ in range(3)])
    elapsed = time.monotonic() - started
    exit_leader.set()
    await leading
    assert isinstance(outcome[0], Exception)
    assert elapsed < PROMPT
    assert server.requests == 2
    assert len(set(answers)) == 1 and answers[0]


# ------------------------------------------------------------------------------ no write


def test_an_abandoned_stream_ends_with_its_threads_next_call(
    installed: litellm.Cache, server: LateServer
) -> None:
    server.delay = 0.05
    asked = threading.Event()

    def abandon_then_call_again() -> Any:
        stream = litellm.completion(**ask(server, "abandoned"), stream=True)
        next(iter(stream))  # read one chunk, then leave the stream
        asked.wait(10)
        time.sleep(0.3)  # the waiter is waiting
        return litellm.completion(**ask(server, "something else"))

    leader = Leader(abandon_then_call_again)
    wait_until(lambda: server.arrived >= 1, "the leader's request")
    waiter = Leader(lambda: streamed(server, "abandoned"))
    asked.set()
    assert waiter.finished.wait(PROMPT)  # freed by the leader's next call
    assert leader.finished.wait(10)
    leader.done()
    waiter.done()
    assert isinstance(waiter.result, str) and waiter.result
    assert server.requests == 3


async def test_an_abandoned_async_stream_ends_with_its_task(
    installed: litellm.Cache, server: LateServer
) -> None:
    server.delay = 0.05
    abandon = asyncio.Event()

    async def leader() -> None:
        stream = await litellm.acompletion(**ask(server, "aabandoned"), stream=True)
        async for _ in stream:
            break
        await abandon.wait()

    leading = asyncio.create_task(leader())
    await await_until(lambda: server.arrived >= 1, "the leader's request")
    waiting = asyncio.create_task(astreamed(server, "aabandoned"))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # it waits for the leader's stream
    abandon.set()
    await leading
    assert await asyncio.wait_for(waiting, PROMPT)
    assert server.requests == 2


def test_a_no_store_call_keeps_nobody_waiting(installed: litellm.Cache, server: LateServer) -> None:
    no_store = Leader(lambda: litellm.completion(**ask(server, "ns"), cache={"no-store": True}))
    wait_until(lambda: server.arrived >= 1, "the no-store request")
    answer = litellm.completion(**ask(server, "ns"))
    assert no_store.finished.wait(10)
    no_store.done()
    assert content(answer) and content(no_store.result)
    assert server.requests == 2 and server.most_at_once == 2  # its own call, at once


async def test_an_async_no_store_call_keeps_nobody_waiting(
    installed: litellm.Cache, server: LateServer
) -> None:
    first = asyncio.create_task(litellm.acompletion(**ask(server, "ans"), cache={"no-store": True}))
    await await_until(lambda: server.arrived >= 1, "the no-store request")
    second = await litellm.acompletion(**ask(server, "ans"))
    assert content(await first) and content(second)
    assert server.requests == 2 and server.most_at_once == 2


# ------------------------------------------------------------------------------ the backend


def waiter_of(backend: LLMCacheBackend, key: str) -> Leader:
    return Leader(lambda: backend.get_cache(key))


def test_the_write_serves_the_waiters(backend: LLMCacheBackend) -> None:
    key = "a" * 64
    assert backend.get_cache(key) is None  # this thread leads
    waiter = waiter_of(backend, key)
    time.sleep(0.1)
    assert not waiter.finished.is_set()
    backend.set_cache(key, {"timestamp": 1.0, "response": '{"id": "x"}'})
    assert waiter.finished.wait(PROMPT)
    waiter.done()
    assert waiter.result == {"timestamp": 1.0, "response": {"id": "x"}}
    assert not backend.claims.by_key


def test_a_write_that_stores_nothing_frees_the_waiters(backend: LLMCacheBackend) -> None:
    key = "b" * 64
    assert backend.get_cache(key) is None
    waiter = waiter_of(backend, key)
    time.sleep(0.1)
    backend.set_cache(key, {"timestamp": 1.0, "response": "{}"}, ttl=0)  # expires at once
    assert waiter.finished.wait(PROMPT)
    waiter.done()
    assert waiter.result is None  # not stored: the waiter leads its own call


def test_a_retry_of_the_same_key_never_waits_for_itself(backend: LLMCacheBackend) -> None:
    key = "c" * 64
    assert backend.get_cache(key) is None
    started = time.monotonic()
    assert backend.get_cache(key) is None  # the same thread again: no wait
    assert time.monotonic() - started < 1.0
    assert len(backend.claims.by_key[key]) == 1  # the first claim is kept
    backend.set_cache(key, {"timestamp": 1.0, "response": "{}"})
    assert not backend.claims.by_key


def test_the_end_of_a_thread_frees_its_claims(backend: LLMCacheBackend) -> None:
    key = "d" * 64
    owner = threading.Thread(target=backend.get_cache, args=(key,))
    owner.start()
    owner.join()
    del owner
    gc.collect()
    started = time.monotonic()
    assert backend.get_cache(key) is None  # not waited for: the owner is gone
    assert time.monotonic() - started < PROMPT
    backend.set_cache(key, {"timestamp": 1.0, "response": "{}"})


async def test_the_pipeline_write_frees_every_input(backend: LLMCacheBackend) -> None:
    keys = ["e" * 64, "f" * 64]
    for key in keys:
        assert await backend.async_get_cache(key) is None
    assert set(backend.claims.by_key) == set(keys)
    values = [{"timestamp": 1.0, "response": {"embedding": [0.5]}} for _ in keys]
    await backend.async_set_cache_pipeline(list(zip(keys, values, strict=True)))
    assert not backend.claims.by_key
    assert await backend.async_get_cache(keys[1]) == values[1]


async def test_a_tasks_next_call_ends_its_earlier_claims(backend: LLMCacheBackend) -> None:
    assert await backend.async_get_cache("g" * 64, litellm_call_id="one") is None
    assert await backend.async_get_cache("h" * 64, litellm_call_id="two") is None
    for _ in range(5):  # the release waits a few turns of the loop for a pending write
        await asyncio.sleep(0)
    assert set(backend.claims.by_key) == {"h" * 64}
    await backend.async_set_cache("h" * 64, {"timestamp": 1.0, "response": "{}"})
    assert not backend.claims.by_key


def test_a_failure_event_without_a_call_id_frees_its_threads_claims(
    backend: LLMCacheBackend,
) -> None:
    assert backend.get_cache("i" * 64) is None
    _ENDER.log_failure_event({}, None, None, None)  # as LiteLLM calls it, on this thread
    assert not backend.claims.by_key


async def test_an_async_failure_event_without_a_call_id_frees_its_tasks_claims(
    backend: LLMCacheBackend,
) -> None:
    assert await backend.async_get_cache("j" * 64) is None
    await _ENDER.async_log_failure_event({"litellm_call_id": "unknown"}, None, None, None)
    assert not backend.claims.by_key


# ------------------------------------------------------------------------------ the callback


class Recorder(CustomLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.failures += 1


def test_the_failure_callback_is_registered_once_beside_the_users(
    cache: llmcache.Cache, server: LateServer
) -> None:
    server.delay = 0.0
    mine = Recorder()
    saved = (list(litellm.failure_callback), list(litellm._async_failure_callback))
    litellm.callbacks = [mine]
    try:
        for _ in range(3):
            litellm.cache = llmcache_litellm.cache(cache)
            litellm.completion(**ask(server, f"register {_}"))
        assert litellm.failure_callback.count(_ENDER) == 1
        assert litellm._async_failure_callback.count(_ENDER) == 1
        assert _ENDER not in litellm.success_callback  # a hit dispatches nothing to it
        litellm.failure_callback[:] = [mine]  # the user resets LiteLLM's lists
        litellm._async_failure_callback.clear()
        server.fail_next(1)
        with pytest.raises(litellm.InternalServerError):
            litellm.completion(**ask(server, "registered again"))
        assert _ENDER in litellm.failure_callback and mine.failures == 1
        assert litellm.callbacks == [mine]
    finally:
        litellm.callbacks = []
        litellm.failure_callback[:], litellm._async_failure_callback[:] = saved
        litellm.disable_cache()


def test_claims_of_a_gone_backend_are_not_visited() -> None:
    from llmcache_litellm._flight import _LIVE

    claims = Claims()
    assert claims in _LIVE
    del claims
    gc.collect()
    assert all(isinstance(live, Claims) for live in _LIVE)


class CountingSite:
    """A call site whose every claim leads, and counts its releases by key."""

    def __init__(self) -> None:
        self.released: Counter[str] = Counter()

    def claim(self, request: dict[str, str]) -> tuple[Any, Callable[[], None]]:
        key = request["key"]
        return MISS, lambda: self.released.update([key])


ENDS = st.lists(
    st.tuples(st.sampled_from(["write", "fail", "next call", "thread failure"]), st.integers(0, 2)),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(ends=ENDS)
def test_each_claim_is_released_exactly_once_whatever_ends_it(
    ends: list[tuple[str, int]],
) -> None:
    site = CountingSite()
    claims = Claims()
    keys = [f"{i}" * 64 for i in range(3)]
    led = []
    for index, key in enumerate(keys):
        assert claims.lead(site, key, f"call-{index}") is MISS  # type: ignore[arg-type]
        led.extend(claims.by_key[key])
    for kind, index in ends:
        if kind == "write":  # as set_cache does: take, store, release
            claims.release(claims.take_key(keys[index]))
        elif kind == "fail":
            claims.failed(f"call-{index}", None)
        elif kind == "next call":
            claims.next_call_of_thread(keys[index])
        else:
            claims.failed(None, None)
        assert all(count == 1 for count in site.released.values())
    claims.end(led)  # whatever is left: the owner's end
    assert site.released == Counter(keys)
    assert not claims.by_key


def test_the_litellm_cache_reads_another_backend_as_litellm_does() -> None:
    from llmcache_litellm._cache import SingleFlightCache

    made = SingleFlightCache(type="local")  # LiteLLM's in-memory backend, not ours
    value = {"timestamp": time.time(), "response": '{"id": "chatcmpl-1"}'}
    made.cache.set_cache("k", value)
    assert made.get_cache(cache_key="k") == {"id": "chatcmpl-1"}
    assert asyncio.run(made.async_get_cache(cache_key="k")) == {"id": "chatcmpl-1"}


def test_a_claimed_call_with_its_own_ttl_is_settled_by_its_write(server: LateServer) -> None:
    # The claim enters the cache's checks (here a budget) on the site the write will use,
    # so the write settles them with the call's cost.
    server.delay = 0.0
    with llmcache.Cache(workspace="litellm-budget", tiers=["memory"], budget_usd=100) as cache:
        litellm.cache = llmcache_litellm.cache(cache)
        try:
            litellm.completion(**ask(server, "first"))
            once = cache.budgets()[0]["spent_usd"]
            litellm.completion(**ask(server, "other"), cache={"ttl": 60})
            assert once > 0
            assert cache.budgets()[0]["spent_usd"] > once  # the second call's cost too
        finally:
            litellm.disable_cache()
