"""After os.fork(), a child starts with its own per-process state (issue 9, item 14).

Real forks: the child runs a few calls, reports to the parent through a pipe as JSON lines
and always ends with os._exit (never returning into pytest). Covered: an identical call in
the child does not wait for the parent's in-flight call; the child sees the parent's
invalidations (it has a watcher of its own); parent and child counts add up exactly in the
shared ledger (the child neither loses its own counts nor flushes the parent's again).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import llmcache
from tests.clocks import wait_until
from tests.servers.redis_server import RedisServer

SECRET = "fork-test-secret-0123456789abcdef"
POLL = 0.5  # the caches' generation_poll: how often a watcher polls and flushes
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


class Child:
    """A forked child running `body(send, receive)`; messages are JSON lines over pipes."""

    def __init__(self, body: Callable[[Callable[..., None], Callable[[], str]], None]) -> None:
        up_read, up_write = os.pipe()
        down_read, down_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 0
            try:
                os.close(up_read)
                os.close(down_write)
                out = os.fdopen(up_write, "w")
                commands = os.fdopen(down_read)

                def send(**fields: Any) -> None:
                    out.write(json.dumps(fields) + "\n")
                    out.flush()

                body(send, commands.readline)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        self.exit_code: int | None = None
        os.close(up_write)
        os.close(down_read)
        self._from_child = os.fdopen(up_read)
        self._to_child = os.fdopen(down_write, "w")

    def read(self, timeout: float) -> dict[str, Any]:
        """The child's next message, or a failure if none comes within `timeout`."""
        ready, _, _ = select.select([self._from_child], [], [], timeout)
        assert ready, f"the child said nothing for {timeout} s (deadlocked?)"
        line = self._from_child.readline()
        assert line, "the child died"
        found: dict[str, Any] = json.loads(line)
        return found

    def tell(self, command: str) -> None:
        self._to_child.write(command + "\n")
        self._to_child.flush()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        """A child left running (a failed test) is killed: it must not outlive the test."""
        if self.exit_code is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)

    def finish(self, timeout: float = 30) -> int:
        def ended() -> bool:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
            return bool(pid)

        wait_until(ended, timeout, "the child ended", interval=0.01)
        assert self.exit_code is not None
        return self.exit_code


def test_an_identical_call_in_the_child_does_not_wait_for_the_parents_flight() -> None:
    cache = llmcache.Cache(workspace="fork", tiers=["memory"])
    parent = os.getpid()
    in_call, release = threading.Event(), threading.Event()

    @cache.cached
    def slow(question: str) -> str:
        if os.getpid() == parent:
            in_call.set()
            release.wait(30)
        return f"answer to {question} from {os.getpid()}"

    leader = threading.Thread(target=slow, args=("q",))
    leader.start()
    try:
        assert in_call.wait(30)

        def body(send: Callable[..., None], receive: Callable[[], str]) -> None:
            send(value=slow("q"))

        with Child(body) as child:
            # Without the reset, the child waits forever for a copy of the parent's flight.
            assert child.read(timeout=20) == {"value": f"answer to q from {child.pid}"}
            assert child.finish() == 0
    finally:
        release.set()
        leader.join(30)
        cache.close()


def test_the_child_sees_an_invalidation_made_in_the_parent(server: RedisServer) -> None:
    cache = llmcache.Cache(
        workspace=f"fork-{uuid.uuid4().hex[:8]}",
        secret=SECRET,
        tiers=["memory", server.patient_url],
        generation_poll=POLL,
    )
    calls: list[str] = []

    @cache.cached(namespace="watched")
    def numbered(question: str) -> str:
        calls.append(question)
        return f"{question}#{os.getpid()}-{len(calls)}"

    first = numbered("q")

    def body(send: Callable[..., None], receive: Callable[[], str]) -> None:
        assert numbered("q") == first  # the parent's entry, from the copied memory tier
        send(state="ready")
        receive()  # the parent has invalidated
        changed: list[tuple[float, str]] = []

        def served_anew() -> bool:
            value = numbered("q")
            if value != first:
                changed.append((time.time(), value))
            return bool(changed)

        with contextlib.suppress(AssertionError):  # not within 10 s: reported as None
            wait_until(served_anew, 10)
        if changed:
            send(changed_at=changed[0][0], value=changed[0][1])
        else:
            send(changed_at=None)

    try:
        with Child(body) as child:
            assert child.read(timeout=20) == {"state": "ready"}
            cache.invalidate(namespace="watched")
            invalidated_at = time.time()
            child.tell("invalidated")
            seen = child.read(timeout=20)
            assert seen["changed_at"] is not None, "the child kept serving the invalidated entry"
            assert seen["value"].startswith(f"q#{child.pid}-")
            # The child's watcher polls every POLL seconds; one more POLL covers a busy machine.
            assert seen["changed_at"] - invalidated_at < 2 * POLL + 1.0
            assert child.finish() == 0
    finally:
        cache.close()


def test_parent_and_child_counts_add_up_exactly_in_the_shared_ledger(server: RedisServer) -> None:
    calls = 50
    cache = llmcache.Cache(
        workspace=f"fork-{uuid.uuid4().hex[:8]}",
        secret=SECRET,
        tiers=["memory", server.patient_url],
        generation_poll=POLL,
    )

    @cache.cached(namespace="counted")
    def ask(number: int) -> int:
        return number * 2

    def counted() -> tuple[int, int]:
        cache.flush()  # this process's counts; the report also reads unflushed ones
        totals = cache.report().totals
        return totals.calls, totals.misses

    try:
        for number in range(calls):
            ask(number)  # counted in the parent, most likely not flushed yet at the fork

        def body(send: Callable[..., None], receive: Callable[[], str]) -> None:
            for number in range(calls, 2 * calls):
                ask(number)
            send(state="done")
            receive()  # only the watcher may flush our counts; then told to watch it tick
            watcher = cache._watcher
            assert watcher is not None
            ticks, tick = threading.Semaphore(0), watcher._tick

            def counted_tick(of: llmcache.Cache) -> None:
                tick(of)
                ticks.release()

            watcher._tick = counted_tick  # type: ignore[method-assign]
            assert ticks.acquire(timeout=20) and ticks.acquire(timeout=20)
            send(state="ticked twice")
            receive()  # stay alive until told

        with Child(body) as child:
            assert child.read(timeout=30) == {"state": "done"}
            # The child's watcher flushes its counts within a poll or two.
            wait_until(
                lambda: counted()[0] >= 2 * calls,
                4 * POLL + 5.0,
                "the child's counts flushed",
                interval=0.05,
            )
            # And two more of its ticks (each one a flush) add no second copy of ours.
            child.tell("tick")
            assert child.read(timeout=30) == {"state": "ticked twice"}
            assert counted() == (2 * calls, 2 * calls)
            child.tell("exit")
            assert child.finish() == 0  # os._exit: no atexit flush in the child
        assert counted() == (2 * calls, 2 * calls)
    finally:
        cache.close()


@pytest.mark.parametrize("held", ["memory lock", "breaker lock", "queue lock", "flush"])
def test_what_another_thread_held_at_the_fork_is_free_in_the_child(
    server: RedisServer, held: str
) -> None:
    """A thread of the parent in the middle of a memory store, a breaker update or a flush
    when another forks: it does not exist in the child, so nothing it held may stay held
    there (the child's first miss would wait forever), and no flush may look under way."""
    cache = llmcache.Cache(
        workspace=f"fork-{uuid.uuid4().hex[:8]}",
        secret=SECRET,
        tiers=["memory", server.patient_url],
        generation_poll=POLL,
    )
    (tier,) = cache._tiers
    assert cache.memory is not None

    @cache.cached(namespace="held")
    def ask(question: str) -> str:
        return f"answer to {question}"

    ask("warm")
    # A write waiting in the queue, and one failed write on record (the breaker closed):
    # the child's first successful write then takes the breakers' lock, and replays the
    # queue through a flush of its own.
    queued_key = f"llmc:fork-queued:{uuid.uuid4().hex}"
    for _ in range(tier.failure_threshold):
        tier.writes.failed(llmcache.BackendError("refused"))
    assert tier.set(queued_key, b"queued", 60) is False  # the breaker is open: queued
    tier.writes.succeeded()
    tier.writes.failed(llmcache.BackendError("refused"))
    assert tier.writes.state == "closed" and tier.queued_writes == 1

    lock = {
        "memory lock": cache.memory._lock,
        "breaker lock": tier.writes._lock,
        "queue lock": tier._queue_lock,
        "flush": None,
    }[held]
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        if lock is None:
            tier._flushing = True  # what a flush thread running at the fork has set
            holding.set()
            release.wait(60)
            tier._flushing = False
            return
        with lock:
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert holding.wait(30)

    def body(send: Callable[..., None], receive: Callable[[], str]) -> None:
        send(value=ask("new in the child"))  # stores in memory, writes, maybe flushes
        with contextlib.suppress(AssertionError):  # not within 10 s: the parent says so
            wait_until(lambda: not tier.queued_writes, 10, interval=0.01)
        send(queued=tier.queued_writes)

    try:
        with Child(body) as child:
            assert child.read(timeout=20) == {"value": "answer to new in the child"}
            assert child.read(timeout=20) == {"queued": 0}  # replayed by the child
            assert child.finish() == 0
        client = server.client()
        try:
            assert client.exists(queued_key) == 1
        finally:
            client.close()
    finally:
        release.set()
        thread.join(30)
        cache.close()
