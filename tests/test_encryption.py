"""Entries at rest, on a real redis-server and real SQLite files: encrypted, bound to their key
and secret, and `Cache.delete` confined to this workspace's entries (issue 9, items 1 and 3).

What an attacker with read access sees: raw bytes with no answer and no prompt text, in entry
values, in keys and in ledger fields. What one with write access can do: delete, never forge:
a flipped, truncated, moved, other-secret or old-format entry is a counted miss.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmcache
from llmcache._codec import ValueCodec
from llmcache._keys import KeySchedule
from llmcache._record import IntegrityError, Record, decode_entry, encode_entry
from tests.servers.redis_server import RedisServer

SECRET = "encryption-secret-0123456789abcdef"
NEW_SECRET = "rotated-secret-fedcba9876543210xyz"
# Prompt and answer fragments with letters no hex digest or base64 of random bytes is likely
# to hold, so a match means the text itself is there.
PROMPT = "Which vault holds the PINEAPPLE-QUOKKA launch codes? Tell nobody."
PROMPT_FRAGMENTS = ("PINEAPPLE", "QUOKKA", "launch codes", "Tell nobody")
ANSWER = "Vault ZEBRAFISH-MARMALADE in the north tower. " * 60  # ~2.8 kB: lz4-compressed
ANSWER_FRAGMENTS = ("ZEBRAFISH", "MARMALADE", "north tower")
SHORT_ANSWER = "ZEBRAFISH-MARMALADE"  # below the compression threshold: stored as is


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _assert_no_secret_text(blob: bytes, where: str) -> None:
    for fragment in PROMPT_FRAGMENTS + ANSWER_FRAGMENTS:
        assert fragment.encode() not in blob, f"{fragment!r} readable in {where}"


def _ask_both(cache: llmcache.Cache, calls: list[str]) -> Any:
    @cache.cached(namespace="secrets")
    def ask(question: str, model: str = "gpt-4o-mini", short: bool = False) -> str:
        calls.append(question)
        return SHORT_ANSWER if short else ANSWER

    assert ask(PROMPT) == ANSWER and ask(PROMPT, short=True) == SHORT_ANSWER
    return ask


# -- item 1: nothing readable at rest -------------------------------------------------------------
def test_redis_holds_no_answer_or_prompt_text(server: RedisServer, raw: redis.Redis) -> None:
    workspace = unique("at-rest")
    cache = llmcache.Cache(workspace=workspace, secret=SECRET, tiers=[server.patient_url])
    calls: list[str] = []
    try:
        ask = _ask_both(cache, calls)
        assert ask(PROMPT) == ANSWER and len(calls) == 2  # served from Redis, decrypted
        cache.flush()  # the ledger's counters too
        keys = [k for k in raw.scan_iter(count=1000) if workspace.encode() in k]
        entry_keys = {ask.cache_key(PROMPT), ask.cache_key(PROMPT, short=True)}
        assert entry_keys <= {k.decode() for k in keys}
        assert len(keys) > len(entry_keys)  # the ledger (and generations) were written
        for key in keys:
            _assert_no_secret_text(key, f"key {key!r}")
            kind = raw.type(key)
            if kind == b"string":
                _assert_no_secret_text(raw.get(key) or b"", f"value of {key!r}")
            elif kind == b"hash":
                for field, value in raw.hgetall(key).items():
                    _assert_no_secret_text(field + b"=" + value, f"hash {key!r}")
            else:
                raise AssertionError(f"unexpected {kind!r} at {key!r}")
    finally:
        cache.close()


def test_sqlite_file_holds_no_answer_or_prompt_text(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = llmcache.Cache(workspace="at-rest", secret=SECRET, tiers=[f"disk://{folder}"])
    calls: list[str] = []
    try:
        ask = _ask_both(cache, calls)
        assert ask(PROMPT) == ANSWER and len(calls) == 2  # served from disk, decrypted
        cache.flush()
    finally:
        cache.close()
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:  # the database, its WAL and anything else in the folder
        _assert_no_secret_text(path.read_bytes(), str(path))
    database = next(p for p in files if _is_sqlite(p))
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        assert {"entries", "counters"} <= set(tables)
        keys = [key for (key,) in connection.execute("SELECT key FROM entries")]
        # The two calls' entries, beside the bookkeeping records the file also holds (the
        # workspace's and the namespace's generation records, signed, no text of the calls).
        assert len([key for key in keys if not key.startswith("llmc-meta:")]) == 2
        assert all(":gen:" in key for key in keys if key.startswith("llmc-meta:"))
        for table in tables:  # every row of every table: entries, generations, ledger, locks
            for row in connection.execute(f"SELECT * FROM {table}"):
                for column in row:
                    blob = column if isinstance(column, bytes) else str(column).encode()
                    _assert_no_secret_text(blob, f"{table} row")


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


# -- item 1: tampering of any kind is an integrity error -----------------------------------------
KEYS = KeySchedule(SECRET.encode(), "ws")
MUTATIONS = ("flip", "truncate", "extend", "move", "other secret", "other workspace", "version")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(MUTATIONS), st.data())
def test_any_change_to_an_entry_or_its_context_is_an_integrity_error(
    value: Any, mutation: str, data: st.DataObject
) -> None:
    key = KEYS.key_prefix("ns", "0") + "0" * 32
    record = Record(ValueCodec().encode(value)[1], "json", {"model": "m"}, 1.0, 2e9, key)
    compress_above = data.draw(st.sampled_from([0, 64, 1 << 20]))
    entry = encode_entry(record, KEYS.entry_aead, compress_above)
    assert decode_entry(entry, key, KEYS.entry_aead).value_json == record.value_json
    aead, read_key = KEYS.entry_aead, key
    if mutation == "flip":
        flipped = bytearray(entry)
        flipped[data.draw(st.integers(0, len(entry) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        entry = bytes(flipped)
    elif mutation == "truncate":
        entry = entry[: data.draw(st.integers(0, len(entry) - 1))]
    elif mutation == "extend":
        entry += data.draw(st.binary(min_size=1, max_size=32))
    elif mutation == "move":
        read_key = KEYS.key_prefix("ns", "0") + data.draw(
            st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda h: h != "0" * 32)
        )
    elif mutation == "other secret":
        other = data.draw(
            st.binary(min_size=16, max_size=80).filter(lambda s: s != SECRET.encode())
        )
        aead = KeySchedule(other, "ws").entry_aead
    elif mutation == "other workspace":
        aead = KeySchedule(SECRET.encode(), "ws2").entry_aead
    else:  # an entry claiming another format version, everything else intact
        entry = bytes((data.draw(st.integers(0, 255).filter(lambda v: v != entry[0])),)) + entry[1:]
    with pytest.raises(IntegrityError):
        decode_entry(entry, read_key, aead)


def test_tampered_entries_in_redis_are_counted_misses(
    server: RedisServer, raw: redis.Redis
) -> None:
    cache = llmcache.Cache(workspace=unique("tamper"), secret=SECRET, tiers=[server.patient_url])
    calls: list[str] = []
    try:
        ask = _ask_both(cache, calls)
        key, short_key = ask.cache_key(PROMPT), ask.cache_key(PROMPT, short=True)
        good = raw.get(key)
        assert good is not None
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x01
        for number, data in enumerate([bytes(flipped), good[:-1], raw.get(short_key)], 1):
            raw.set(key, data)  # type: ignore[arg-type]
            assert ask(PROMPT) == ANSWER  # recomputed, never an exception, never the moved one
            assert calls.count(PROMPT) == 2 + number
        assert cache._tiers[0].counters.integrity_failures == 3
        assert cache._tiers[0].counters.errors == 0
    finally:
        cache.close()


# -- item 1: rotating the secret ---------------------------------------------------------------
def test_rotating_the_secret_makes_every_old_entry_unreadable(
    server: RedisServer, raw: redis.Redis, tmp_path: Path
) -> None:
    workspace = unique("rotate")
    tiers = [f"disk://{tmp_path / 'cache'}", server.patient_url]
    questions = [f"question {n}" for n in range(6)]
    old = llmcache.Cache(workspace=workspace, secret=SECRET, tiers=tiers)
    new = llmcache.Cache(workspace=workspace, secret=NEW_SECRET, tiers=tiers)
    try:

        @old.cached(namespace="n")
        def old_ask(question: str) -> str:
            return f"OLD answer to {question}"

        new_calls: list[str] = []

        @new.cached(namespace="n")
        def new_ask(question: str) -> str:
            new_calls.append(question)
            return f"new answer to {question}"

        for question in questions:
            assert old_ask(question) == f"OLD answer to {question}"
        old_entries = {old_ask.cache_key(q): raw.get(old_ask.cache_key(q)) for q in questions}
        assert all(old_entries.values())
        # An attacker (or a stale deployment) copies each old entry to the key the new
        # secret reads, on both tiers: still never served, each one a counted miss.
        disk: Any = new._tiers[0].backend
        for question, (old_key, entry) in zip(questions, old_entries.items(), strict=True):
            assert entry is not None
            with pytest.raises(IntegrityError):
                decode_entry(entry, old_key, new._entry_aead)
            disk.set(new_ask.cache_key(question), entry, None)
            raw.set(new_ask.cache_key(question), entry)
        for question in questions:
            assert new_ask(question) == f"new answer to {question}"
        assert new_calls == questions
        assert sum(t.counters.integrity_failures for t in new._tiers) == 2 * len(questions)
        assert sum(t.counters.hits for t in new._tiers) == 0
        # The old cache still reads its own entries: rotation is per secret, not a wipe.
        assert all(old_ask(q) == f"OLD answer to {q}" for q in questions)
    finally:
        old.close()
        new.close()


# -- item 3: delete() only deletes this workspace's entries ----------------------------------------
def test_delete_refuses_every_key_but_this_workspaces_entries(
    server: RedisServer, raw: redis.Redis
) -> None:
    workspace = unique("delete")
    mine = llmcache.Cache(workspace=workspace, secret=SECRET, tiers=[server.patient_url])
    other_secret = llmcache.Cache(
        workspace=workspace, secret=NEW_SECRET, tiers=[server.patient_url]
    )
    other_workspace = llmcache.Cache(
        workspace=unique("other"), secret=SECRET, tiers=[server.patient_url]
    )
    calls: list[str] = []
    try:
        asks = []
        for cache in (mine, other_secret, other_workspace):

            @cache.cached(namespace="n")
            def ask(question: str) -> str:
                calls.append(question)
                return f"answer to {question}"

            assert ask("q") == "answer to q"
            cache.flush()  # generations and ledger records exist too
            asks.append(ask)
        own_key = asks[0].cache_key("q")
        raw.set("important:user:1", b"precious")
        # What a lock on an entry is called (on another question's entry: a lock on own_key
        # would make the miss below wait for its holder).
        raw.set(asks[0].cache_key("other") + ":lock", b"token")
        foreign = [k.decode() for k in raw.scan_iter(count=1000) if k.decode() != own_key]
        foreign += [
            own_key + "\n",
            own_key[:-1],
            own_key + "0",
            own_key.upper(),
            mine._keys.workspace_prefix(),
            mine._keys.workspace_prefix() + "*",
            "*",
        ]
        assert {"important:user:1", asks[1].cache_key("q"), asks[2].cache_key("q")} <= set(foreign)
        before = {k: raw.dump(k) for k in raw.scan_iter(count=1000)}
        for key in foreign:
            with pytest.raises(llmcache.ConfigError, match=r"fn\.cache_key") as refused:
                mine.delete(key)
            assert mine._keys.workspace_prefix() in str(refused.value)
        with pytest.raises(llmcache.ConfigError):
            mine.delete(None)  # type: ignore[arg-type]
        assert {k: raw.dump(k) for k in raw.scan_iter(count=1000)} == before  # nothing gone
        # Its own entry key is deleted, from Redis, and the next call is a miss.
        mine.delete(own_key)
        assert raw.exists(own_key) == 0
        assert asks[0]("q") == "answer to q" and calls == ["q"] * 4
        assert raw.get("important:user:1") == b"precious"
    finally:
        for cache in (mine, other_secret, other_workspace):
            cache.close()
