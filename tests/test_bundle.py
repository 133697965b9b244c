"""Sharing a cache: export a namespace from one workspace, import it into another.

Workspace A records calls (disk, or memory only), exports a namespace to a bundle file;
workspace B, with another secret (disk, a real redis-server, memory only), imports it; B's
identical calls are then hits that compute nothing, counted and priced like any hit. Import
checks the whole bundle before writing anything, and importing twice changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmcache
from llmcache import BundleError, Cache, CacheMiss, ConfigError
from llmcache._bundle import BundleReader, parse_key
from llmcache._imported import MARKER_REFRESH_S, ImportedCheck, PortableNames
from llmcache._record import decode_entry, encode_entry
from tests.clocks import FakeClock
from tests.servers.redis_server import RedisServer

SECRET_A = "secret-of-workspace-a-0123456789"
SECRET_B = "secret-of-workspace-b-9876543210"
QUESTIONS = ("what is a cache", "why sign keys", "how do tiers work")


def usage(result: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01}


class Recorder:
    """A cached 'LLM call' of one cache: it counts what it really computes."""

    def __init__(self, cache: Cache, namespace: str = "research") -> None:
        self.computed: list[str] = []

        @cache.cached(namespace=namespace, usage=usage)
        def ask(question: str, temperature: float = 0.0) -> dict[str, Any]:
            self.computed.append(question)
            return {"answer": question.upper(), "temperature": temperature}

        @cache.cached(namespace=namespace, usage=usage)
        async def aask(question: str) -> str:
            self.computed.append(question)
            return question[::-1]

        self.ask = ask
        self.aask = aask


# Both workspaces define the "same" function: the same module and qualified name, hence
# the same call site identity (what a request digest is made of).
def workspace(
    tmp_path: Path, name: str, secret: str, tiers: list[str] | None = None, **options: Any
) -> tuple[Cache, Recorder]:
    cache = Cache(
        name, secret=secret, tiers=tiers or ["memory", f"disk://{tmp_path}/{name}"], **options
    )
    return cache, Recorder(cache)


@pytest.fixture
def exported(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A bundle of namespace 'research' of workspace A (three calls, one of them async), and
    its key."""
    cache, a = workspace(tmp_path, "team-a", SECRET_A)
    for question in QUESTIONS[:2]:
        a.ask(question)
    asyncio.run(a.aask(QUESTIONS[2]))
    a.ask(QUESTIONS[0])  # a hit: in A's ledger, not a new entry
    summary = cache.export_bundle(tmp_path / "research.llmc", "research")
    assert (summary.entries, summary.without_digest, summary.namespace) == (3, 0, "research")
    assert summary.cost_usd == pytest.approx(0.03)
    assert summary.ledger_rows == 1
    assert summary.bytes == (tmp_path / "research.llmc").stat().st_size
    cache.close()
    yield summary.path, summary.key


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def entry_keys(cache: Cache) -> set[str]:
    """Every key of this workspace's entries in its tiers below memory."""
    prefix = cache._keys.workspace_prefix()
    return {key for tier in cache._tiers for key in tier.backend.scan(prefix)}


# -- the round trip -----------------------------------------------------------------------------
def test_round_trip_disk_to_disk_serves_hits_that_compute_nothing(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    summary = cache.import_bundle(path, key)
    assert (summary.entries, summary.namespace, summary.exported_from) == (3, "research", "team-a")
    assert summary.tiers == (cache._tiers[0].name,)
    assert summary.cost_usd == pytest.approx(0.03)
    assert [row["hits"] for row in summary.ledger] == [1.0]  # A's ledger came along

    answer = b.ask(QUESTIONS[0])
    assert answer == {"answer": QUESTIONS[0].upper(), "temperature": 0.0}
    described = llmcache.info(answer)
    assert described is not None and described.hit is True
    assert asyncio.run(b.aask(QUESTIONS[2])) == QUESTIONS[2][::-1]
    assert b.ask(QUESTIONS[1])["answer"] == QUESTIONS[1].upper()
    assert b.computed == []
    b.ask(QUESTIONS[0])  # now an ordinary hit under the call's own key (memory)
    b.ask("a question nobody asked")
    assert b.computed == ["a question nobody asked"]
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (4, 1)
    report = cache.report()
    assert report.totals.hits == 4
    assert report.totals.saved_usd == pytest.approx(0.04)  # imported hits save what they cost
    cache.close()


def test_the_shared_tier_shows_no_namespace_name_or_digest(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, _ = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    disk = cache._tiers[0].backend
    marker = disk.read_counters(PortableNames(cache._keys).marker)
    assert len(marker) == 1 and "research" not in next(iter(marker))
    with open(path, "rb") as source:
        digests = [
            item.digest
            for kind, item in BundleReader(source, parse_key(key), "b").items()
            if kind == llmcache._bundle.ENTRY
        ]
    names = " ".join(disk.scan(cache._keys.workspace_prefix()))
    assert not any(digest[:16] in names for digest in digests)
    cache.close()


def test_an_imported_entry_is_promoted_under_the_calls_own_key(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    before = entry_keys(cache)
    assert len(before) == 3 and all(":imp-" in k for k in before)
    b.ask(QUESTIONS[0])
    own = entry_keys(cache) - before
    assert len(own) == 1 and cache._keys.is_entry_key(own.pop())
    # Another process (a new cache, nothing in memory) hits the promoted entry directly.
    again, b2 = workspace(tmp_path, "team-b", SECRET_B)
    b2.ask(QUESTIONS[0])
    assert b2.computed == []
    assert again.stats().hits == 1
    cache.close()
    again.close()


def test_round_trip_into_a_real_redis_read_by_another_cache(
    tmp_path: Path, exported: tuple[Path, str], redis_server: RedisServer
) -> None:
    path, key = exported
    tiers = ["memory", redis_server.patient_url]
    importer, _ = workspace(tmp_path, "team-b-redis", SECRET_B, tiers)
    assert importer.import_bundle(path, key).tiers == (importer._tiers[0].name,)
    importer.close()
    # A cache that did not import learns of it from the mark in redis, on its first miss.
    reader, b = workspace(tmp_path, "team-b-redis", SECRET_B, tiers)
    assert [b.ask(q)["answer"] for q in QUESTIONS[:2]] == [q.upper() for q in QUESTIONS[:2]]
    assert asyncio.run(b.aask(QUESTIONS[2])) == QUESTIONS[2][::-1]
    assert b.computed == []
    assert reader.stats().hits == 3
    reader.close()


def test_export_from_a_real_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    tiers = ["memory", redis_server.patient_url]
    recorder, a = workspace(tmp_path, "team-a-redis", SECRET_A, tiers)
    for question in QUESTIONS:
        a.ask(question)
    recorder.close()
    exporter, _ = workspace(tmp_path, "team-a-redis", SECRET_A, tiers)  # nothing in memory
    summary = exporter.export_bundle(tmp_path / "r.llmc", "research")
    assert summary.entries == 3
    importer, b = workspace(tmp_path, "team-b", SECRET_B)
    importer.import_bundle(summary.path, summary.key)
    assert [b.ask(q)["answer"] for q in QUESTIONS] == [q.upper() for q in QUESTIONS]
    assert b.computed == []
    exporter.clear()
    exporter.close()
    importer.close()


def test_import_into_a_memory_only_cache(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B, ["memory"])
    assert cache.import_bundle(path, key).tiers == (cache.memory.name,)  # type: ignore[union-attr]
    assert b.ask(QUESTIONS[1])["answer"] == QUESTIONS[1].upper()
    assert asyncio.run(b.aask(QUESTIONS[2])) == QUESTIONS[2][::-1]
    assert b.computed == []


def test_export_from_memory_alone_and_one_copy_per_request(tmp_path: Path) -> None:
    cache, a = workspace(tmp_path, "team-a", SECRET_A, ["memory"])
    a.ask("only in memory")
    a.ask("only in memory", temperature=0.5)
    summary = cache.export_bundle(tmp_path / "m.llmc", "research")
    assert summary.entries == 2
    both, a2 = workspace(tmp_path, "team-a2", SECRET_A)  # memory and disk hold each entry
    a2.ask("in two tiers")
    assert both.export_bundle(tmp_path / "two.llmc", "research").entries == 1
    both.close()


def test_replay_mode_serves_imported_entries(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B, mode="replay")
    cache.import_bundle(path, key)
    assert b.ask(QUESTIONS[0])["answer"] == QUESTIONS[0].upper()
    with pytest.raises(CacheMiss):
        b.ask("never recorded")
    assert b.computed == []
    cache.close()


def test_import_into_another_namespace(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache = Cache("team-b", secret=SECRET_B, tiers=["memory", f"disk://{tmp_path}/b"])
    assert cache.import_bundle(path, key, namespace="shared").namespace == "shared"
    research, shared = Recorder(cache, "research"), Recorder(cache, "shared")
    shared.ask(QUESTIONS[0])
    research.ask(QUESTIONS[0])
    assert (shared.computed, research.computed) == ([], [QUESTIONS[0]])
    cache.close()


# -- checked before anything is written ----------------------------------------------------------
def nothing_written(cache: Cache) -> bool:
    names = PortableNames(cache._keys)
    return entry_keys(cache) == set() and cache.read_counters(names.marker) == {}


@pytest.mark.parametrize("damage", ["wrong key", "flipped byte", "truncated", "appended"])
def test_a_bad_bundle_is_a_clear_error_and_imports_nothing(
    tmp_path: Path, exported: tuple[Path, str], damage: str
) -> None:
    path, key = exported
    data = path.read_bytes()
    if damage == "wrong key":
        key = llmcache._bundle.format_key(bytes(32))
    elif damage == "flipped byte":
        path.write_bytes(data[:-40] + bytes([data[-40] ^ 0x10]) + data[-39:])
    elif damage == "truncated":
        path.write_bytes(data[:-7])
    else:
        path.write_bytes(data + b"more")
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    with pytest.raises(BundleError, match="nothing was imported") as raised:
        cache.import_bundle(path, key)
    assert str(path) in str(raised.value)
    assert nothing_written(cache)
    b.ask(QUESTIONS[0])
    assert b.computed == [QUESTIONS[0]]
    cache.close()


def test_a_bundle_changed_between_the_check_and_the_writing_says_so(
    tmp_path: Path, exported: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, key = exported
    cache, _ = workspace(tmp_path, "team-b", SECRET_B)
    data = path.read_bytes()
    opened: list[int] = []
    real_init = BundleReader.__init__

    def cut_before_the_second_read(self: BundleReader, *args: Any) -> None:
        opened.append(1)
        if len(opened) == 2:  # the file is truncated by someone between the two passes
            path.write_bytes(data[:-7])
        real_init(self, *args)

    monkeypatch.setattr(BundleReader, "__init__", cut_before_the_second_read)
    with pytest.raises(BundleError, match=r"changed while it was being imported, after \d+ "):
        cache.import_bundle(path, key)
    cache.close()


def test_what_is_not_there_or_not_a_tier_is_a_config_error(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, _ = workspace(tmp_path, "team-b", SECRET_B)
    with pytest.raises(ConfigError, match="cannot read the bundle"):
        cache.import_bundle(tmp_path / "absent.llmc", key)
    with pytest.raises(ConfigError, match=r"tier 'redis' is not one of this cache's tiers"):
        cache.import_bundle(path, key, tier="redis")
    with pytest.raises(ConfigError, match="cannot read the bundle"):
        cache.import_bundle(tmp_path, key)  # a folder
    assert nothing_written(cache)
    cache.close()


def test_re_importing_is_idempotent(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    first = entry_keys(cache)
    again = cache.import_bundle(path, key)
    assert again.entries == 3 and entry_keys(cache) == first
    assert [b.ask(q)["answer"] for q in QUESTIONS[:2]] == [q.upper() for q in QUESTIONS[:2]]
    assert b.computed == []
    cache.close()


def test_a_tier_can_be_chosen(
    tmp_path: Path, exported: tuple[Path, str], redis_server: RedisServer
) -> None:
    path, key = exported
    disk = f"disk://{tmp_path}/b"
    cache = Cache("team-b-tier", secret=SECRET_B, tiers=["memory", disk, redis_server.patient_url])
    disk_tier, redis_tier = cache._tiers
    assert cache.import_bundle(path, key, tier="disk").tiers == (disk_tier.name,)
    assert cache.import_bundle(path, key, tier=redis_server.url).tiers == (redis_tier.name,)
    assert cache.import_bundle(path, key, tier="memory").tiers == (cache.memory.name,)  # type: ignore[union-attr]
    prefix = cache._keys.workspace_prefix()
    assert len(list(redis_tier.backend.scan(prefix))) == 3
    cache.clear()
    cache.close()


# -- what an export leaves out -------------------------------------------------------------------
def test_old_generations_expired_and_digestless_entries_are_left_out(tmp_path: Path) -> None:
    clock = FakeClock()
    cache, a = workspace(tmp_path, "team-a", SECRET_A, clock=clock)
    a.ask("before the invalidation")
    cache.invalidate("research")
    a.ask("current")
    with llmcache.options(ttl=10):
        a.ask("expires soon")
    a.ask("recorded by an older llmcache")
    # An entry from before entries carried their request's digest: its metadata has no call.
    disk = cache._tiers[0].backend
    records = [
        decode_entry(disk.get(k) or b"", k, cache._entry_aead)
        for k in disk.scan(cache._keys.workspace_prefix())
    ]
    [record] = [r for r in records if b"OLDER" in r.value_json]
    old = record.signed_key
    record._meta = {k: v for k, v in record.meta.items() if k != "call"}
    disk.set(old, encode_entry(record, cache._entry_aead, 1024), None)
    cache.memory.clear()  # type: ignore[union-attr]
    clock.advance(11)
    summary = cache.export_bundle(tmp_path / "a.llmc", "research")
    assert (summary.entries, summary.without_digest) == (1, 1)
    with open(summary.path, "rb") as source:
        reader = BundleReader(source, parse_key(summary.key), "a.llmc")
        [(_, entry)] = [item for item in reader.items() if item[0] == llmcache._bundle.ENTRY]
    assert entry.value_json == b'{"answer":"CURRENT","temperature":0.0}'
    assert set(entry.meta["call"]) == {"site", "digest"}  # no keyed argument hashes
    cache.close()


def test_entries_that_expire_before_the_import_are_left_out(tmp_path: Path) -> None:
    clock = FakeClock()
    cache, a = workspace(tmp_path, "team-a", SECRET_A, clock=clock)
    with llmcache.options(ttl=60):
        a.ask("short lived")
    a.ask("long lived")
    summary = cache.export_bundle(tmp_path / "a.llmc", "research")
    importer, b = workspace(tmp_path, "team-b", SECRET_B, clock=clock)
    clock.advance(61)
    result = importer.import_bundle(summary.path, summary.key)
    assert (result.entries, result.expired) == (1, 1)
    b.ask("long lived")
    b.ask("short lived")
    assert b.computed == ["short lived"]
    cache.close()
    importer.close()


def test_an_imported_entry_keeps_its_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    cache, a = workspace(tmp_path, "team-a", SECRET_A, clock=clock)
    with llmcache.options(ttl=60):
        a.ask("short lived")
    summary = cache.export_bundle(tmp_path / "a.llmc", "research")
    importer, b = workspace(tmp_path, "team-b", SECRET_B, clock=clock)
    importer.import_bundle(summary.path, summary.key)
    clock.advance(30)
    b.ask("short lived")
    assert b.computed == []
    clock.advance(31)
    importer.memory.clear()  # type: ignore[union-attr]
    b.ask("short lived")
    assert b.computed == ["short lived"]
    cache.close()
    importer.close()


def test_invalidating_the_importing_namespace_drops_imported_entries(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    cache.invalidate("research")
    b.ask(QUESTIONS[0])
    assert b.computed == [QUESTIONS[0]]
    cache.close()


def test_refresh_mode_re_records_instead_of_serving_imported_entries(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    with llmcache.options(mode="refresh"):
        b.ask(QUESTIONS[0])
    assert b.computed == [QUESTIONS[0]]
    cache.close()


def test_a_tier_that_cannot_list_its_keys_cannot_be_exported(tmp_path: Path) -> None:
    class Unlisted(llmcache.Backend):
        """A third-party tier without the optional `scan`."""

        name = "unlisted://"

        def __init__(self) -> None:
            self.data: dict[str, bytes] = {}

        @classmethod
        def from_url(cls, url: str, **options: Any) -> Unlisted:  # pragma: no cover
            return cls()

        def get(self, key: str) -> bytes | None:
            return self.data.get(key)

        def set(self, key: str, value: bytes, ttl: float | None) -> None:
            self.data[key] = value

        def delete(self, key: str) -> None:  # pragma: no cover - not used here
            self.data.pop(key, None)

        def delete_prefix(self, prefix: str) -> int:  # pragma: no cover - not used here
            return 0

        def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
            pass

        def read_counters(self, key: str) -> dict[str, float]:
            return {}

        def close(self) -> None:
            pass

    cache = Cache("team-a", secret=SECRET_A, tiers=["memory", Unlisted()])
    with pytest.raises(ConfigError, match="cannot list its keys"):
        cache.export_bundle(tmp_path / "x.llmc", "research")
    assert not (tmp_path / "x.llmc").exists()


def test_a_tier_that_fails_is_a_clear_error(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache, a = workspace(tmp_path, "team-a", SECRET_A)
    a.ask("x")
    disk = cache._tiers[0].backend

    def broken(prefix: str) -> Iterator[str]:
        raise OSError("disk on fire")

    disk.scan = broken  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match=r"could not read tier .*disk on fire"):
        cache.export_bundle(tmp_path / "x.llmc", "research")
    assert not (tmp_path / "x.llmc").exists() and not (tmp_path / "x.llmc.partial").exists()
    disk.ping = broken  # type: ignore[method-assign, assignment]
    with pytest.raises(ConfigError, match="is unusable"):
        cache.import_bundle(path, key)

    def refuse(key: str, value: bytes, ttl: float | None) -> None:
        raise OSError("disk full")

    del disk.ping
    disk.set = refuse  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="after 0 entries; importing again is safe"):
        cache.import_bundle(path, key)
    cache.close()


# -- the check on the miss path ------------------------------------------------------------------
def test_a_miss_reads_the_import_mark_at_most_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, a = workspace(tmp_path, "team-b", SECRET_B)
    check = next(c for c in cache._gate.checks if isinstance(c, ImportedCheck))
    assert cache._gate.checks[0] is check  # before replay mode's
    reads: list[str] = []
    real = cache.read_counters

    def counting(key: str) -> dict[str, float]:
        reads.append(key)
        return real(key)

    monkeypatch.setattr(cache, "read_counters", counting)
    clock = FakeClock(start=1000.0)
    monkeypatch.setattr("llmcache._imported._monotonic", clock)
    for i in range(5):
        a.ask(f"q{i}")
        clock.advance(MARKER_REFRESH_S / 10)
    assert reads.count(check.names.marker) == 1
    clock.advance(MARKER_REFRESH_S / 2)
    a.ask("one more")
    assert reads.count(check.names.marker) == 2
    cache.close()


def test_an_unknown_type_or_a_foreign_entry_is_a_miss_not_an_error(
    tmp_path: Path, exported: tuple[Path, str]
) -> None:
    path, key = exported
    cache, b = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key)
    disk = cache._tiers[0].backend
    for portable in disk.scan(cache._keys.workspace_prefix()):
        disk.set(portable, b"\x02\x00" + os.urandom(60), None)  # not sealed by this secret
    b.ask(QUESTIONS[0])
    assert b.computed == [QUESTIONS[0]]
    cache.close()


def test_progress_bars_go_to_stderr(
    tmp_path: Path, exported: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = exported
    cache, _ = workspace(tmp_path, "team-b", SECRET_B)
    cache.import_bundle(path, key, progress=True)
    cache.export_bundle(tmp_path / "again.llmc", "research", progress=True)
    assert capsys.readouterr().out == ""
    cache.close()


def test_the_default_cache_functions(tmp_path: Path, exported: tuple[Path, str]) -> None:
    path, key = exported
    cache, _ = workspace(tmp_path, "team-b", SECRET_B)
    llmcache.set_default_cache(cache)
    assert llmcache.import_bundle(path, key).entries == 3
    summary = llmcache.export_bundle(tmp_path / "b.llmc", "research", key=key)
    assert summary.key == key and summary.entries == 3  # imported entries export again
    cache.close()


# -- every kind of value comes back as it was ----------------------------------------------------
class Answer(pydantic.BaseModel):
    text: str
    score: float
    tags: list[str] = []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
values = (
    json_values
    | st.binary(max_size=40)
    | st.tuples(st.integers(-(2**53), 2**53), st.text(max_size=5))
    | st.builds(
        Answer,
        text=st.text(max_size=20),
        score=st.floats(-1e6, 1e6),
        tags=st.lists(st.text(max_size=4), max_size=2),
    )
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answers=st.lists(values, min_size=1, max_size=6))
def test_every_kind_of_value_round_trips(tmp_path: Path, answers: list[Any]) -> None:
    folder = tmp_path / os.urandom(4).hex()
    a = Cache("team-a", secret=SECRET_A, tiers=["memory"])
    b = Cache("team-b", secret=SECRET_B, tiers=["memory"])
    computed: list[int] = []

    def define(cache: Cache) -> Any:
        @cache.cached(namespace="values")
        def produce(i: int) -> Any:
            computed.append(i)
            return answers[i]

        return produce

    produce = define(a)
    stored = [produce(i) for i in range(len(answers))]
    folder.mkdir()
    summary = a.export_bundle(folder / "v.llmc", "values")
    b.import_bundle(summary.path, summary.key)
    computed.clear()
    produce = define(b)
    assert [produce(i) for i in range(len(answers))] == stored
    assert computed == []
