"""Replay mode's costs, each next to its floor, in one run.

    python benchmarks/bench_replay.py

* A hit in replay mode against the same hit in record mode: replay adds nothing to a hit
  (the mode is read on the miss path only). Ratio target: 1.0 (noise aside).
* A refused call with its hint (which arguments differ from the nearest recorded call),
  2,000 recorded calls of the function (the search's bound), against the floor of a
  refusal with nothing recorded (the miss path itself: the tier lookups, the lock, the
  gate), in memory and in a fresh process (memory empty, the disk tier below). The bare
  read of those 2,000 entries from disk (`get_many`, `decode_entry`) is shown beside.
The machine is shared and noisy: each pair is measured interleaved, in rounds; compare
within a run.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import measure_interleaved, table

import llmcache
from llmcache._record import decode_entry

RECORDED = 2_000


def _function(cache: llmcache.Cache) -> Callable[..., str]:
    @cache.cached(namespace="bench")
    def ask(prompt: str, temperature: float = 0.0, model: str = "m", seed: int = 0) -> str:
        return f"{prompt} {temperature} {model} {seed}"

    return ask


def _refusal(ask: Callable[..., str]) -> Callable[[], None]:
    def refused() -> None:
        try:
            ask("prompt 7", temperature=0.9)
        except llmcache.CacheMiss:
            return
        raise AssertionError("not refused")

    return refused


def _best(
    cases: dict[str, Callable[[], Any]], batch: int, rounds: int
) -> dict[str, tuple[float, float]]:
    return measure_interleaved(cases, batch=batch, rounds=rounds)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    tiers = ["memory", f"disk://{folder}"]
    with llmcache.Cache(tiers=tiers, mode="record") as recording:
        ask = _function(recording)
        for n in range(RECORDED):
            ask(f"prompt {n}")
        # Hits: the same call, replay mode against record mode.
        replaying = llmcache.Cache(tiers=tiers, mode="replay")
        hit_replay = _function(replaying)
        hit_replay("prompt 1")  # loaded into memory
        hits = _best(
            {"record": lambda: ask("prompt 1"), "replay": lambda: hit_replay("prompt 1")},
            batch=200,
            rounds=200,
        )
        # Refusals with the 2,000 records in memory, and with none recorded at all.
        recording.mode = "replay"

        @recording.cached(namespace="empty")
        def never(prompt: str, temperature: float = 0.0) -> str:
            return prompt

        in_memory = _best({"hint": _refusal(ask), "floor": _refusal(never)}, batch=1, rounds=40)
        # The same from disk: a cache whose memory is empty (a fresh process).
        cold = llmcache.Cache(tiers=tiers, mode="replay")
        cold_ask = _function(cold)
        cold_never = cold.cached(namespace="empty")(never.__wrapped__)  # type: ignore[attr-defined]
        on_disk = _best(
            {"hint": _refusal(cold_ask), "floor": _refusal(cold_never)}, batch=1, rounds=20
        )
        disk = cold.backends[1]
        keys = [key for key in disk.scan("llmc:") if cold._keys.is_entry_key(key)]  # type: ignore[attr-defined]
        assert len(keys) == RECORDED, len(keys)

        def read_and_decrypt() -> None:
            for key, data in zip(keys, disk.get_many(keys), strict=True):
                assert data is not None
                decode_entry(data, key, cold._entry_aead).meta.get("call")

        bare = _best({"read": read_and_decrypt}, batch=1, rounds=20)["read"]
        try:
            cold_ask("prompt 7", temperature=0.9)
        except llmcache.CacheMiss as error:
            message = str(error)

    def ratio(pair: dict[str, tuple[float, float]], name: str, floor: str) -> str:
        return f"{pair[name][0] / pair[floor][0]:.2f}x"

    rows = [
        ("hit, record mode", *hits["record"], "floor"),
        ("hit, replay mode", *hits["replay"], ratio(hits, "replay", "record")),
        ("refusal, none recorded (memory)", *in_memory["floor"], "floor"),
        ("refusal + hint, 2,000 in memory", *in_memory["hint"], ratio(in_memory, "hint", "floor")),
        ("refusal, none recorded (disk)", *on_disk["floor"], "floor"),
        ("refusal + hint, 2,000 on disk", *on_disk["hint"], ratio(on_disk, "hint", "floor")),
        ("  read + decrypt 2,000 from disk", *bare, "(the bare reads, for scale)"),
    ]
    print(table(rows))
    print(f"\nthe message:\n{message}")


if __name__ == "__main__":
    main()
