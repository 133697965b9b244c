"""The bundle file (`llmcache._bundle`): what it holds comes back; anything else is refused.

A bundle is read whole before anything is imported, so the property that matters is that
every change to the file (a flipped bit anywhere, a cut at any point, chunks reordered,
dropped, duplicated or taken from another bundle, bytes appended) and every wrong key make
reading it fail with a `BundleError`, never with a wrong result or another exception.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcache import _bundle
from llmcache._bundle import (
    ENTRY,
    LEDGER,
    TRAILER,
    BundleError,
    BundleReader,
    BundleWriter,
    Entry,
    format_key,
    new_key,
    parse_key,
)

KEY = bytes(range(32))


def entry(i: int, size: int = 40) -> Entry:
    return Entry(
        site="tests.ask",
        digest=f"{i:064x}",
        tag="json",
        created=1000.0 + i,
        expires=None if i % 2 else 5000.0 + i,
        meta={"model": "m", "cost_usd": 0.5, "call": {"site": "tests.ask", "digest": f"{i:064x}"}},
        value_json=b'"' + b"v" * size + str(i).encode() + b'"',
    )


def make(entries: int = 3, rows: int = 1, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    writer = BundleWriter(out, key, {"namespace": "research", "workspace": "a"})
    for i in range(entries):
        writer.add_entry(entry(i))
    for i in range(rows):
        writer.add_ledger_row({"day": "2026-01-01", "model": f"m{i}", "calls": 2.0})
    writer.finish({"without_digest": 0})
    assert writer.written == len(out.getvalue())
    return out.getvalue()


def read(data: bytes, key: bytes = KEY) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    reader = BundleReader(io.BytesIO(data), key, "b.llmc")
    items = list(reader.items())
    assert reader.position == len(data)
    return reader.manifest, items


def chunks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each chunk of a bundle."""
    offset = _bundle._HEADER.size
    while offset < len(data):
        _, length = struct.unpack_from("<BI", data, offset)
        end = offset + 5 + length
        yield offset, end
        offset = end


def _multi_chunk_bundle() -> bytes:
    saved = _bundle.CHUNK_TARGET
    _bundle.CHUNK_TARGET = 200
    try:
        return make(entries=12)
    finally:
        _bundle.CHUNK_TARGET = saved


SMALL = make(entries=2, rows=1)  # one chunk
MULTI = _multi_chunk_bundle()  # several


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bundle, "CHUNK_TARGET", 200)


# -- what goes in comes out ---------------------------------------------------------------------
def test_round_trip() -> None:
    manifest, items = read(make(entries=3, rows=2))
    assert manifest == {"namespace": "research", "workspace": "a"}
    entries = [item for kind, item in items if kind == ENTRY]
    rows = [item for kind, item in items if kind == LEDGER]
    assert [e.digest for e in entries] == [entry(i).digest for i in range(3)]
    first = entries[0]
    assert (first.site, first.tag, first.created, first.expires) == (
        "tests.ask",
        "json",
        1000.0,
        5000.0,
    )
    assert entries[1].expires is None
    assert first.meta["cost_usd"] == 0.5
    assert first.value_json == entry(0).value_json
    assert [r["model"] for r in rows] == ["m0", "m1"]


def test_many_chunks_round_trip(small_chunks: None) -> None:
    data = make(entries=30)
    assert len(list(chunks(data))) > 5
    _, items = read(data)
    assert [e.digest for k, e in items if k == ENTRY] == [entry(i).digest for i in range(30)]


def test_an_entry_larger_than_a_chunk_is_one_chunk(small_chunks: None) -> None:
    out = io.BytesIO()
    writer = BundleWriter(out, KEY, {})
    writer.add_entry(entry(0, size=5000))
    writer.finish({})
    _, items = read(out.getvalue())
    assert items[0][1].value_json == entry(0, size=5000).value_json


def test_each_bundle_is_sealed_afresh() -> None:
    assert make() != make()  # a new salt, so new chunk keys, every time


# -- keys --------------------------------------------------------------------------------------
def test_keys_round_trip_through_their_text() -> None:
    key = new_key()
    text = format_key(key)
    assert text.startswith("llmcb1_") and len(text) == 50
    assert parse_key(text) == key
    assert parse_key(f"  {text}\n") == key
    assert parse_key(key) == key  # the raw 32 bytes


@pytest.mark.parametrize(
    "text",
    ["", "llmcb1_", "llmcb1_short", "llmcb2_" + "A" * 43, "llmcb1_" + "!" * 43, b"short", 42],
)
def test_what_is_not_a_key_is_refused_with_what_one_looks_like(text: Any) -> None:
    with pytest.raises(BundleError, match=r"not a bundle key.*llmcb1_"):
        parse_key(text)


def test_a_wrong_key_says_so() -> None:
    with pytest.raises(BundleError, match=r"key given does not open b\.llmc"):
        read(make(), key=bytes(32))


# -- every change is refused ---------------------------------------------------------------------
def test_not_a_bundle() -> None:
    with pytest.raises(BundleError, match="not an llmcache bundle"):
        read(b"PK\x03\x04 a zip file")
    with pytest.raises(BundleError, match="not an llmcache bundle"):
        read(b"")


def test_a_newer_format_says_to_upgrade() -> None:
    data = bytearray(make())
    data[8] = 9
    with pytest.raises(BundleError, match=r"format 9.*upgrade llmcache"):
        read(bytes(data))


def test_every_flipped_byte_is_refused() -> None:
    data = make(entries=2, rows=1)
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(BundleError):
            read(bytes(damaged))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_any_byte_is_refused(data: st.DataObject) -> None:
    bundle = SMALL
    position = data.draw(st.integers(0, len(bundle) - 1))
    mask = data.draw(st.integers(1, 255))
    damaged = bytearray(bundle)
    damaged[position] ^= mask
    with pytest.raises(BundleError):
        read(bytes(damaged))


def test_a_cut_at_any_chunk_boundary_is_refused(small_chunks: None) -> None:
    data = make(entries=12)
    boundaries = [start for start, _ in chunks(data)]
    assert len(boundaries) > 3
    for cut in boundaries:
        with pytest.raises(BundleError, match=r"truncated|damaged"):
            read(data[:cut])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000))
def test_a_cut_anywhere_is_refused(cut: int) -> None:
    data = MULTI
    with pytest.raises(BundleError):
        read(data[: cut % len(data)])


def test_bytes_after_the_end_are_refused() -> None:
    with pytest.raises(BundleError, match="bytes after its final chunk"):
        read(make() + b"\x00")


def test_reordered_dropped_or_repeated_chunks_are_refused(small_chunks: None) -> None:
    data = make(entries=12)
    parts = list(chunks(data))
    head = data[: parts[0][0]]
    pieces = [data[s:e] for s, e in parts]
    swapped = [pieces[1], pieces[0], *pieces[2:]]
    dropped = [pieces[0], *pieces[2:]]
    repeated = [pieces[0], pieces[0], *pieces[1:]]
    for order in (swapped, dropped, repeated):
        with pytest.raises(BundleError, match="does not authenticate"):
            read(head + b"".join(order))


def test_a_chunk_from_another_bundle_with_the_same_key_is_refused(small_chunks: None) -> None:
    one, other = make(entries=12), make(entries=12)
    first = list(chunks(one))
    start, end = next(iter(chunks(other)))
    spliced = one[: first[0][0]] + other[start:end] + one[first[0][1] :]
    with pytest.raises(BundleError, match="does not authenticate"):
        read(spliced)


def test_a_chunk_header_out_of_bounds_is_refused() -> None:
    data = bytearray(make())
    start, _ = next(iter(chunks(bytes(data))))
    struct.pack_into("<BI", data, start, 0, 3)  # shorter than a tag
    with pytest.raises(BundleError, match=r"header of chunk \d+ is invalid"):
        read(bytes(data))
    struct.pack_into("<BI", data, start, 4, 100)  # an unknown flag
    with pytest.raises(BundleError, match=r"header of chunk \d+ is invalid"):
        read(bytes(data))


def test_a_cut_inside_a_chunk_header_is_refused() -> None:
    data = make()
    start, _ = next(iter(chunks(data)))
    with pytest.raises(BundleError, match="cut inside chunk 0"):
        read(data[: start + 2])


# -- authentic but not readable (another version's bundle, or a bug) -----------------------------
def sealed(build: Any) -> bytes:
    """A bundle whose items `build(writer)` puts in, sealed properly (so it authenticates)."""
    out = io.BytesIO()
    writer = BundleWriter(out, KEY, {"namespace": "n"})
    build(writer)
    return out.getvalue()


def test_a_bundle_without_a_manifest_is_refused() -> None:
    def build(writer: BundleWriter) -> None:
        writer._pending, writer._pending_bytes = [], 0
        writer.finish({})

    with pytest.raises(BundleError, match=r"does not start with a manifest.*another version"):
        read(sealed(build))


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([(ord("Z"), b"{}")], "unknown kind"),
        ([(ENTRY, b"\x01")], "entry does not parse"),
        ([(ENTRY, struct.pack("<I", 99) + b"{}")], "entry does not parse"),
        ([(ENTRY, struct.pack("<I", 2) + b"{}")], "entry does not parse"),
        ([(LEDGER, b"[1, 2]")], "not a JSON object"),
        ([(LEDGER, b"{nope")], "not a JSON object"),
    ],
)
def test_items_that_do_not_parse_are_refused(items: list[tuple[int, bytes]], problem: str) -> None:
    def build(writer: BundleWriter) -> None:
        for kind, payload in items:
            writer._add(kind, payload)
        writer.finish({})

    with pytest.raises(BundleError, match=problem):
        read(sealed(build))


@pytest.mark.parametrize(
    "head",
    [
        {"site": 1, "digest": "d", "tag": "json", "created": 1.0, "expires": None, "meta": {}},
        {"site": "s", "digest": "d", "tag": "json", "created": "x", "expires": None, "meta": {}},
        {"site": "s", "digest": "d", "tag": "json", "created": 1.0, "expires": "x", "meta": {}},
        {"site": "s", "digest": "d", "tag": "json", "created": 1.0, "expires": None, "meta": []},
    ],
)
def test_entries_of_the_wrong_shape_are_refused(head: dict[str, Any]) -> None:
    import orjson

    body = orjson.dumps(head)

    def build(writer: BundleWriter) -> None:
        writer._add(ENTRY, struct.pack("<I", len(body)) + body + b"1")
        writer.finish({})

    with pytest.raises(BundleError, match="entry does not parse"):
        read(sealed(build))


def test_counts_that_do_not_match_are_refused() -> None:
    def build(writer: BundleWriter) -> None:
        writer.add_entry(entry(0))
        writer.entries += 1
        writer.finish({})

    with pytest.raises(BundleError, match="counts do not match"):
        read(sealed(build))


def test_a_trailer_before_the_end_is_refused() -> None:
    def build(writer: BundleWriter) -> None:
        writer._add(TRAILER, b'{"entries": 0, "ledger_rows": 0}', seal=False)
        writer._seal(0)  # not the final chunk
        writer.finish({})

    with pytest.raises(BundleError, match="trailer is not at its end"):
        read(sealed(build))


def test_a_final_chunk_without_a_trailer_is_refused() -> None:
    def build(writer: BundleWriter) -> None:
        writer._seal(1)

    with pytest.raises(BundleError, match="no trailer"):
        read(sealed(build))


def test_items_cut_inside_a_chunk_are_refused() -> None:
    def cut_head(writer: BundleWriter) -> None:
        writer._pending.append(b"E\x05")
        writer._seal(1)

    def runs_past(writer: BundleWriter) -> None:
        writer._pending.append(struct.pack("<BI", LEDGER, 50) + b"{}")
        writer._seal(1)

    with pytest.raises(BundleError, match="item header is cut"):
        read(sealed(cut_head))
    with pytest.raises(BundleError, match="runs past its chunk"):
        read(sealed(runs_past))


def test_a_chunk_that_claims_too_much_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make()
    monkeypatch.setattr(_bundle, "MAX_CHUNK_PLAIN", 10)
    with pytest.raises(BundleError, match="does not decompress"):
        read(data)
