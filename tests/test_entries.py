"""Entries and the codec: faithful round trips, and every tampering is detected.

Encryption at rest (what a reader of Redis or the disk file sees) is in test_encryption.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llmcache._codec import Unstorable, ValueCodec
from llmcache._keys import KeySchedule
from llmcache._record import FORMAT_VERSION, IntegrityError, Record, decode_entry, encode_entry

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
json_scalars |= st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
KEYS = KeySchedule(b"k" * 32, "ws")
OTHER_WORKSPACE = KeySchedule(b"k" * 32, "ws2")
OTHER_SECRET = KeySchedule(b"j" * 32, "ws")


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class Answer(BaseModel):
    text: str
    score: float
    tags: list[str]
    usage: Usage | None = None
    at: datetime.datetime | None = None


def _entry(value_json: bytes, key: str, meta: dict[str, Any] | None = None) -> bytes:
    record = Record(value_json, "json", meta or {"model": "m"}, 1.0, 2e9, key)
    return encode_entry(record, KEYS.entry_aead, compress_above=64)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_values_round_trip(value: Any) -> None:
    codec = ValueCodec()
    tag, data, _ = codec.encode(value)
    assert codec.decode(tag, data) == value
    entry = _entry(data, "llmc:ws:ns:0.0:abc")
    record = decode_entry(entry, "llmc:ws:ns:0.0:abc", KEYS.entry_aead)
    assert codec.decode(record.tag, record.value_json) == value
    assert record.meta == {"model": "m"}


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        Answer,
        text=st.text(),
        score=st.floats(allow_nan=False, allow_infinity=False),
        tags=st.lists(st.text(max_size=5), max_size=4),
        usage=st.none()
        | st.builds(Usage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6)),
        at=st.none() | st.datetimes(timezones=st.just(datetime.UTC)),
    )
)
def test_pydantic_models_round_trip_with_their_type(answer: Answer) -> None:
    codec = ValueCodec(Answer)
    tag, data, immutable = codec.encode(answer)
    decoded = codec.decode(tag, data)
    assert type(decoded) is Answer and decoded == answer and not immutable
    assert ValueCodec(list[Answer]).decode(*ValueCodec(list[Answer]).encode([answer])[:2]) == [
        answer
    ]


def test_tuples_bytes_and_annotated_values_keep_their_type() -> None:
    codec = ValueCodec()
    for value in [(1, "a", [2]), b"\x00\xffbinary", "text", 3, None, True]:
        tag, data, _ = codec.encode(value)
        decoded = codec.decode(tag, data)
        assert decoded == value and type(decoded) is type(value)
    dated = ValueCodec(dict[str, datetime.date])
    value = {"d": datetime.date(2026, 1, 2)}
    assert dated.decode(*dated.encode(value)[:2]) == value


def test_values_that_would_not_come_back_equal_are_refused() -> None:
    codec = ValueCodec()
    for value in [{"x": object()}, {"t": datetime.datetime.now()}, {1: "non-str key"}, object()]:
        with pytest.raises(Unstorable):
            codec.encode(value)


def test_unknown_type_tag_is_not_imported() -> None:
    with pytest.raises(Unstorable):
        ValueCodec().decoder("model:os.system")


@settings(max_examples=300, deadline=None)
@given(json_values, st.data())
def test_any_bit_flip_is_detected(value: Any, data: st.DataObject) -> None:
    key = "llmc:ws:ns:0.0:0123"
    entry = bytearray(_entry(ValueCodec().encode(value)[1], key))
    position = data.draw(st.integers(0, len(entry) - 1))
    bit = data.draw(st.integers(0, 7))
    entry[position] ^= 1 << bit
    with pytest.raises(IntegrityError):
        decode_entry(bytes(entry), key, KEYS.entry_aead)


@settings(max_examples=200, deadline=None)
@given(json_values, st.data())
def test_any_truncation_or_extension_is_detected(value: Any, data: st.DataObject) -> None:
    key = "llmc:ws:ns:0.0:0123"
    entry = _entry(ValueCodec().encode(value)[1], key)
    cut = data.draw(st.integers(0, len(entry) - 1))
    with pytest.raises(IntegrityError):
        decode_entry(entry[:cut], key, KEYS.entry_aead)
    with pytest.raises(IntegrityError):
        decode_entry(entry + b"\x00", key, KEYS.entry_aead)


def test_moved_or_cross_workspace_entries_are_detected() -> None:
    entry = _entry(b'"answer"', "llmc:ws:ns:0.0:aaaa")
    assert decode_entry(entry, "llmc:ws:ns:0.0:aaaa", KEYS.entry_aead).value_json == b'"answer"'
    with pytest.raises(IntegrityError):
        decode_entry(entry, "llmc:ws:ns:0.0:bbbb", KEYS.entry_aead)  # copied to another key
    with pytest.raises(IntegrityError):
        decode_entry(entry, "llmc:ws:ns:0.0:aaaa", OTHER_WORKSPACE.entry_aead)
    with pytest.raises(IntegrityError):
        decode_entry(entry, "llmc:ws:ns:0.0:aaaa", OTHER_SECRET.entry_aead)


def test_entries_in_the_old_signed_format_are_integrity_misses() -> None:
    """A version-1 entry (header, 16-byte MAC, plain payload) left in a tier by an older
    release is never decoded, whatever follows its header."""
    entry = _entry(b'"answer"', "llmc:ws:ns:0.0:aaaa")
    assert entry[0] == FORMAT_VERSION == 2
    old = bytes((1, 0)) + bytes(16) + entry[2:]
    with pytest.raises(IntegrityError):
        decode_entry(old, "llmc:ws:ns:0.0:aaaa", KEYS.entry_aead)


def test_large_entries_are_compressed() -> None:
    value_json = ValueCodec().encode("word " * 5000)[1]
    entry = _entry(value_json, "k")
    assert len(entry) < len(value_json) / 5
    assert decode_entry(entry, "k", KEYS.entry_aead).value_json == value_json


class Stamped(BaseModel):
    text: str
    at: datetime.datetime = Field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


def test_models_round_trip_with_their_set_fields_and_factory_defaults() -> None:
    codec = ValueCodec(Answer)
    partial = Answer(text="t", score=1.0, tags=[])  # usage and at left unset
    back = codec.decode(*codec.encode(partial)[:2])
    assert back == partial and back.model_fields_set == partial.model_fields_set
    stamped_codec = ValueCodec(Stamped)
    stamped = Stamped(text="t")
    time_travelled = stamped_codec.decode(*stamped_codec.encode(stamped)[:2])
    assert time_travelled.at == stamped.at  # a factory default is stored, not recomputed
