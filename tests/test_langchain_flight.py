"""Single-flight through LangChain's cache protocol: identical concurrent calls (threads or
tasks) make one request, and a call that fails never holds the others for `lock_wait`.

Real `ChatOpenAI` models talk to `FakeOpenAIServer`; ordering is by the server's request
counter, the cache's counters and events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain_core.language_models import FakeListLLM
from langchain_openai import ChatOpenAI
from llmcache_langchain import LangChainCache

import llmcache
from llmcache.testing import FakeOpenAIServer

warnings.filterwarnings("ignore", module="langchain_core")

QUESTION = "One question for all"


def chat(server: FakeOpenAIServer, cache: LangChainCache, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        cache=cache,
        **options,
    )


def wait_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.005)


async def await_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def misses(ours: LangChainCache) -> int:
    """Lookups that found nothing in memory: a waiting follower has made two (its lookup and
    its claim's)."""
    return ours.site.counters.memory_misses


# -- identical concurrent calls -----------------------------------------------------------------
def test_identical_concurrent_invokes_in_threads_make_one_request() -> None:
    with (
        FakeOpenAIServer(base_latency=1.0) as slow,
        llmcache.Cache(workspace="flight", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        model = chat(slow, ours)
        answers: list[str] = []

        def ask() -> None:
            answers.append(str(model.invoke(QUESTION).content))

        leader = threading.Thread(target=ask)
        leader.start()
        wait_for(lambda: slow.requests == 1, "the leader's request")
        followers = [threading.Thread(target=ask) for _ in range(4)]
        for thread in followers:
            thread.start()
        for thread in (leader, *followers):
            thread.join(60)
        assert slow.requests == 1
        assert len(answers) == 5 and len(set(answers)) == 1
        assert ours.site.counters.misses == 1
        assert ours.site.counters.coalesced == 4  # the followers were served by its call
        assert model.invoke(QUESTION).content == answers[0] and slow.requests == 1


def test_identical_concurrent_ainvokes_make_one_request() -> None:
    async def scenario(slow: FakeOpenAIServer, model: ChatOpenAI) -> list[str]:
        leader = asyncio.create_task(model.ainvoke(QUESTION))
        await await_for(lambda: slow.requests == 1, "the leader's request")
        followers = [asyncio.create_task(model.ainvoke(QUESTION)) for _ in range(4)]
        answers = await asyncio.wait_for(asyncio.gather(leader, *followers), 60)
        return [str(answer.content) for answer in answers]

    with (
        FakeOpenAIServer(base_latency=1.0) as slow,
        llmcache.Cache(workspace="flight", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        answers = asyncio.run(scenario(slow, chat(slow, ours)))
        assert slow.requests == 1
        assert len(answers) == 5 and len(set(answers)) == 1
        assert ours.site.counters.misses == 1 and ours.site.counters.coalesced == 4
        assert not ours._tasks  # every claim let go


def test_a_batch_and_an_abatch_of_one_question_make_one_request_each() -> None:
    with (
        FakeOpenAIServer(base_latency=0.5) as slow,
        llmcache.Cache(workspace="flight", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        model = chat(slow, ours)
        answers = model.batch([QUESTION] * 5)  # LangChain's thread pool
        assert slow.requests == 1 and len({str(a.content) for a in answers}) == 1
        other = "Another question for all"
        answers = asyncio.run(model.abatch([other] * 5))  # one task per input
        assert slow.requests == 2 and len({str(a.content) for a in answers}) == 1
        assert ours.site.counters.misses == 2 and ours.site.counters.coalesced == 8


def test_identical_calls_of_two_models_of_one_configuration_share_the_flight() -> None:
    """The key is LangChain's llm_string, not the model object: two equal models are one."""
    with (
        FakeOpenAIServer(base_latency=1.0) as slow,
        llmcache.Cache(workspace="flight", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        first, second = chat(slow, ours), chat(slow, ours)
        leader = threading.Thread(target=first.invoke, args=(QUESTION,))
        leader.start()
        wait_for(lambda: slow.requests == 1, "the leader's request")
        assert second.invoke(QUESTION).content
        leader.join(60)
        assert slow.requests == 1


# -- a leader that fails ------------------------------------------------------------------------
def test_a_failed_sync_call_lets_the_waiters_go_at_its_threads_next_call() -> None:
    with (
        FakeOpenAIServer() as server,
        llmcache.Cache(workspace="fails", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        model = chat(server, ours)
        server.fail_next(1, status=400)
        with pytest.raises(Exception, match="400"):
            model.invoke(QUESTION)  # this thread now holds the question's claim
        answers: list[str] = []
        before = misses(ours)
        followers = [
            threading.Thread(target=lambda: answers.append(str(model.invoke(QUESTION).content)))
            for _ in range(3)
        ]
        for thread in followers:
            thread.start()
        wait_for(lambda: misses(ours) >= before + 6, "the followers to wait")
        assert all(thread.is_alive() for thread in followers) and server.requests == 1
        # LangChain never tells a cache that a call failed: this thread's next call does.
        assert model.invoke("Something else").content
        for thread in followers:
            thread.join(60)
        assert not any(thread.is_alive() for thread in followers)
        # One follower made the call again; the two others read its entry.
        assert server.requests == 3
        assert len(answers) == 3 and len(set(answers)) == 1


def test_a_follower_whose_leader_never_comes_back_goes_on_after_lock_wait() -> None:
    with (
        FakeOpenAIServer() as server,
        llmcache.Cache(workspace="fails", tiers=["memory"], lock_wait=0.2) as c,
    ):
        ours = LangChainCache(c)
        model = chat(server, ours)
        server.fail_next(1, status=400)
        with pytest.raises(Exception, match="400"):
            model.invoke(QUESTION)  # a claim held, and this thread asks nothing again
        answers: list[str] = []
        follower = threading.Thread(
            target=lambda: answers.append(str(model.invoke(QUESTION).content))
        )
        follower.start()
        follower.join(60)
        assert not follower.is_alive() and answers and answers[0]
        assert server.requests == 2
        assert model.invoke(QUESTION).content == answers[0]  # the follower stored it
        assert server.requests == 2


def test_a_thread_that_ends_after_a_failed_call_lets_the_waiters_go() -> None:
    with (
        FakeOpenAIServer() as server,
        llmcache.Cache(workspace="fails", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        model = chat(server, ours)
        server.fail_next(1, status=400)
        failed: list[BaseException] = []

        def fail() -> None:
            try:
                model.invoke(QUESTION)
            except Exception as error:
                failed.append(error)

        answers: list[str] = []
        go = threading.Event()

        def follow() -> None:
            go.wait(60)
            answers.append(str(model.invoke(QUESTION).content))

        # Started first, so that it is not a new thread given the worker's ident (a thread
        # never waits for a flight of its own ident).
        follower = threading.Thread(target=follow)
        follower.start()
        worker = threading.Thread(target=fail)  # e.g. a batch's pool, shut down after it
        worker.start()
        worker.join(60)
        assert failed and server.requests == 1
        go.set()
        follower.join(60)
        assert not follower.is_alive() and answers
        assert server.requests == 2


class _Gate:
    """An httpx request hook that holds every request until `opened`, so that identical
    calls are known to be waiting before the leader's request fails."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> None:
        self.arrived.set()
        await self.opened.wait()


@pytest.mark.parametrize("ending", ["fails", "cancelled"])
def test_an_async_leader_that_ends_without_an_update_lets_the_waiters_go_at_once(
    ending: str,
) -> None:
    async def scenario(server: FakeOpenAIServer, ours: LangChainCache) -> list[str]:
        gate = _Gate()
        client = httpx.AsyncClient(event_hooks={"request": [gate]})
        model = chat(server, ours, http_async_client=client)
        leader = asyncio.create_task(model.ainvoke(QUESTION))
        await asyncio.wait_for(gate.arrived.wait(), 30)  # its lookup missed and claimed
        before = misses(ours)
        followers = [asyncio.create_task(model.ainvoke(QUESTION)) for _ in range(3)]
        await await_for(lambda: misses(ours) >= before + 6, "the followers to wait")
        assert not any(task.done() for task in followers)
        if ending == "fails":
            server.fail_next(1, status=400)
        else:
            leader.cancel()
        gate.opened.set()
        with pytest.raises((Exception, asyncio.CancelledError)):
            await leader
        # lock_wait is 600 s: only the leader's task ending lets them go.
        answers = await asyncio.wait_for(asyncio.gather(*followers), 60)
        await client.aclose()
        return [str(answer.content) for answer in answers]

    with (
        FakeOpenAIServer() as server,
        llmcache.Cache(workspace="fails", tiers=["memory"], lock_wait=600) as c,
    ):
        ours = LangChainCache(c)
        answers = asyncio.run(scenario(server, ours))
        assert len(answers) == 3 and len(set(answers)) == 1 and answers[0]
        # The cancelled leader never got past the gate; one follower made the call.
        assert server.requests == (2 if ending == "fails" else 1)
        assert ours.site.counters.misses == 1 and ours.site.counters.coalesced == 2
        assert not ours._tasks


def test_an_async_tasks_next_call_lets_go_of_its_failed_ones_claim() -> None:
    async def scenario(ours: LangChainCache) -> None:
        assert await ours.alookup("failed", "model") is None  # claimed; never updated
        assert len(ours._tasks) == 1
        assert await ours.alookup("next", "model-2") is None  # a new call: the old one failed
        [(held, _, _)] = next(iter(ours._tasks.values()))
        assert held == "next"
        other = asyncio.create_task(ours.alookup("failed", "model"))
        assert await asyncio.wait_for(other, 30) is None  # not held: it leads its own call
        await ours.aupdate("next", "model-2", [])
        assert not any(ours._tasks.values())

    with llmcache.Cache(workspace="tasks", tiers=["memory"], lock_wait=600) as c:
        asyncio.run(scenario(LangChainCache(c)))


# -- LangChain's legacy LLMs: one batch looks up every prompt first ------------------------------
def test_a_legacy_llm_batch_with_one_prompt_twice_does_not_wait_for_itself() -> None:
    with llmcache.Cache(workspace="batch", tiers=["memory"], lock_wait=600) as c:
        ours = LangChainCache(c)
        llm = FakeListLLM(responses=["a", "b", "c", "d"], cache=ours)
        done: list[Any] = []
        worker = threading.Thread(target=lambda: done.append(llm.generate(["p", "q", "p"])))
        worker.start()
        worker.join(60)
        assert not worker.is_alive() and done
        assert [g[0].text for g in done[0].generations] == ["a", "b", "c"]
        assert not ours._thread.held  # every claim ended with its update
        again = llm.generate(["p", "q"])  # hits: the fake list is not asked again
        assert [g[0].text for g in again.generations] in (["c", "b"], ["a", "b"])
        assert llm.i == 3


def test_a_legacy_llm_async_batch_with_one_prompt_twice_does_not_wait_for_itself() -> None:
    async def scenario(llm: FakeListLLM) -> list[str]:
        result = await asyncio.wait_for(llm.agenerate(["p", "q", "p"]), 60)
        return [g[0].text for g in result.generations]

    with llmcache.Cache(workspace="batch", tiers=["memory"], lock_wait=600) as c:
        ours = LangChainCache(c)
        llm = FakeListLLM(responses=["a", "b", "c", "d"], cache=ours)
        assert asyncio.run(scenario(llm)) == ["a", "b", "c"]
        assert not ours._tasks


def test_a_batch_keeps_its_claims_until_its_updates() -> None:
    """One `generate` batch passes one llm_string object to all its lookups: a later lookup
    of the batch does not let go of an earlier one's claim (its call is still to come)."""
    with llmcache.Cache(workspace="batch", tiers=["memory"], lock_wait=600) as c:
        ours = LangChainCache(c)
        llm_string = "".join(["model", "-1"])
        assert ours.lookup("p", llm_string) is None
        assert ours.lookup("q", llm_string) is None
        assert [p for p, _, _ in ours._thread.held] == ["p", "q"]
        got: list[Any] = []
        follower = threading.Thread(target=lambda: got.append(ours.lookup("p", "model-1")))
        before = misses(ours)
        follower.start()
        wait_for(lambda: misses(ours) >= before + 2, "the follower to wait")
        assert follower.is_alive()
        from langchain_core.outputs import Generation

        ours.update("p", llm_string, [Generation(text="P")])
        follower.join(60)
        assert got and got[0] == [Generation(text="P")]
        assert [p for p, _, _ in ours._thread.held] == ["q"]
        assert ours.lookup("r", "".join(["model", "-1"])) is None  # the next call
        assert [p for p, _, _ in ours._thread.held] == ["r"]
