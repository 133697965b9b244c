"""The in-process sliding window (`LocalWindows`), on a fake clock."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcache._limits._window import LocalWindows
from tests.clocks import FakeClock


def test_a_slot_frees_exactly_one_window_after_it_was_taken() -> None:
    clock = FakeClock(1000.0)
    windows = LocalWindows(clock)
    assert windows.take("k", 10.0, 2, 1, "a") == 0.0
    clock.advance(3)
    assert windows.take("k", 10.0, 2, 1, "b") == 0.0
    assert windows.take("k", 10.0, 2, 1, "c") == pytest.approx(7.0)  # when "a" slides out
    clock.advance(7 - 1e-3)
    assert windows.take("k", 10.0, 2, 1, "c") == pytest.approx(1e-3)
    clock.advance(1e-3)
    assert windows.take("k", 10.0, 2, 1, "c") == 0.0
    assert windows.take("other", 10.0, 2, 1, "c") == 0.0  # windows are apart by key


def test_costs_settle_to_real_usage_or_go() -> None:
    clock = FakeClock(0.0)
    windows = LocalWindows(clock)
    assert windows.take("t", 60.0, 1000, 900, "a") == 0.0
    assert windows.take("t", 60.0, 1000, 200, "b") == pytest.approx(60.0)
    windows.settle("t", "a", 900, 100)  # it used 100 tokens, not the 900 reserved
    assert windows.take("t", 60.0, 1000, 200, "b") == 0.0
    windows.settle("t", "a", 100, None)
    assert windows.take("t", 60.0, 1000, 700, "c") == 0.0  # 200 + 700
    windows.settle("t", "missing", 1, 5)  # gone or never there: nothing happens
    windows.settle("no-window", "a", 1, 5)
    assert windows.take("t", 60.0, 1000, 101, "d") == pytest.approx(60.0)


# A sequence of takes: (seconds after the previous one, cost, settled to (None: kept)).
takes_strategy = st.lists(
    st.tuples(
        st.floats(0, 3, allow_nan=False),
        st.integers(1, 5),
        st.one_of(st.none(), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(takes=takes_strategy, limit=st.integers(5, 12), window=st.sampled_from([1.0, 2.5, 7.0]))
def test_no_window_ever_holds_more_than_the_limit(
    takes: list[tuple[float, int, int | None]], limit: int, window: float
) -> None:
    clock = FakeClock(0.0)
    windows = LocalWindows(clock)
    granted: dict[str, tuple[float, int]] = {}  # member: (when, cost now)
    for n, (gap, cost, settled) in enumerate(takes):
        clock.advance(gap)
        member = f"m{n}"
        retry = windows.take("k", window, limit, cost, member)
        inside = sum(c for t, c in granted.values() if t > clock.now - window)
        if retry == 0:
            assert inside + cost <= limit
            granted[member] = (clock.now, cost)
            if settled is not None and settled <= cost:  # a smaller real usage
                windows.settle("k", member, cost, settled)
                granted[member] = (clock.now, settled)
            continue
        # Refused: it would not fit now, and it fits after the time it was told.
        assert inside + cost > limit
        later = clock.now + retry + 1e-9  # (float rounding)
        assert sum(c for t, c in granted.values() if t > later - window) + cost <= limit
        # The window's running total is what its entries hold.
        (kept,) = windows._windows.values()
        assert kept.total == pytest.approx(sum(e.cost for e in kept.entries))
    # Every window (they are fullest where one starts at a take) holds at most the limit.
    for start, _ in granted.values():
        assert sum(c for t, c in granted.values() if start <= t < start + window) <= limit


def test_a_retried_take_keeps_its_own_entry() -> None:
    clock = FakeClock(0.0)
    windows = LocalWindows(clock)
    assert windows.take("k", 10.0, 2, 1, "a") == 0.0
    windows.settle("k", "a", 1, None)  # given back (another limit refused the call)
    clock.advance(5)
    assert windows.take("k", 10.0, 2, 1, "a") == 0.0  # the same call, tried again
    clock.advance(6)  # the given-back entry slides out; the retried one stays
    windows.settle("k", "a", 1, 2)
    assert windows.take("k", 10.0, 2, 1, "b") == pytest.approx(4.0)


def test_threads_never_take_more_than_the_limit() -> None:
    windows = LocalWindows(lambda: 0.0)  # time stands still: 100 slots in all
    granted: list[str] = []

    def take(prefix: str) -> None:
        for n in range(100):
            if windows.take("k", 1.0, 100, 1, f"{prefix}{n}") == 0:
                granted.append(prefix)

    threads = [threading.Thread(target=take, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_windows() -> None:
    windows = LocalWindows(lambda: 0.0)
    assert windows.take("k", 60.0, 1, 1, "parent") == 0.0
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its parent's call is not its own
        os.close(reader)
        taken = windows.take("k", 60.0, 1, 1, "child") == 0.0
        os.write(writer, b"1" if taken else b"0")
        os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"1"
    os.close(reader)
    os.waitpid(pid, 0)
    assert windows.take("k", 60.0, 1, 1, "again") > 0  # the parent's window is untouched
