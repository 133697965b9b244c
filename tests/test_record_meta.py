"""A record holds its metadata as JSON (a dict only when JSON cannot carry it), so that the
memory tier's entries stay small; reading it gives the same dict either way."""

from __future__ import annotations

import math

from llmcache._record import NOT_SHARED, Record

META = {"latency_s": 0.5, "call": {"site": "s", "digest": "d" * 64, "args": {"q": "h" * 16}}}


def test_metadata_is_held_as_json_of_its_own_size_and_read_back_equal() -> None:
    record = Record(b'"x"', "json", dict(META), 1.0, math.inf, "key", NOT_SHARED)
    assert record.meta_dict is None and record.meta == META
    assert record.meta is not record.meta  # parsed per read: nothing held but the JSON
    assert len(record.meta_json) == len(memoryview(record.meta_json).tobytes())
    assert record.meta_identity == record.meta_json


def test_metadata_json_cannot_carry_stays_a_dict_and_no_metadata_is_empty() -> None:
    odd = {"model": "m", "thing": object()}
    record = Record(b'"x"', "json", odd, 1.0, math.inf, "key", NOT_SHARED)
    assert record.meta_dict is odd and record.meta is odd and record.meta_json == b""
    empty = Record(b'"x"', "json", {}, 1.0, math.inf, "key", NOT_SHARED)
    assert empty.meta == {} and empty.meta_json == b"" and empty.meta_dict is None
