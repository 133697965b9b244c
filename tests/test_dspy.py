"""llmcache as DSPy's cache: real `dspy.LM` programs against our loopback OpenAI server."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import litellm
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmcache_dspy import IGNORED_BY_DEFAULT, DSPyCache
from llmcache_dspy._values import MARK, decode, encode, usage_of
from llmcache_dspy._values import _class as value_class

import llmcache
from llmcache.ext import Usage
from llmcache.testing import FakeOpenAIServer
from tests.servers.redis_server import RedisServer

MODEL = "gpt-4o-mini"
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
KEYS_CACHE = llmcache.Cache(workspace="keys", tiers=["memory"])
# OpenAI's list price of gpt-4o-mini, per million tokens: what the savings are priced at.
INPUT_PER_MTOK, OUTPUT_PER_MTOK = 0.15, 0.60


pytest_plugins = ["tests.openai_fixtures"]  # server (a FakeOpenAIServer per test)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="dspy", tiers=["memory", f"disk://{tmp_path}/tier"]) as c:
        yield c


@pytest.fixture
def dspy_cache(cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch) -> DSPyCache:
    ours = DSPyCache(cache)
    monkeypatch.setattr(dspy, "cache", ours, raising=False)
    return ours


def make_lm(server: FakeOpenAIServer, **kwargs: Any) -> Any:
    return dspy.LM(f"openai/{MODEL}", api_base=server.base_url, api_key="x", **kwargs)


def priced(history: list[dict[str, Any]]) -> float:
    """The hand-computed price of the calls in `history`, at OpenAI's gpt-4o-mini prices."""
    total = 0.0
    for entry in history:
        usage = entry["usage"]
        total += usage["prompt_tokens"] * INPUT_PER_MTOK / 1e6
        total += usage["completion_tokens"] * OUTPUT_PER_MTOK / 1e6
    return total


# -- a real program: the second run makes no request, and the report shows the savings -------
def test_predict_second_run_makes_no_request_and_is_priced(
    dspy_cache: DSPyCache, cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    lm = make_lm(server)
    qa = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        first = qa(question="What does a cache do?")
        paid = server.requests
        assert paid >= 1
        misses = list(lm.history)
        second = qa(question="What does a cache do?")
    assert server.requests == paid  # no request
    assert second.answer == first.answer
    assert all(entry["usage"] for entry in misses)
    info = llmcache.last_info()
    assert info is not None and info.hit and info.model == MODEL
    cost = priced(misses)
    assert cost > 0
    totals = cache.report().totals
    assert (totals.calls, totals.hits, totals.misses) == (2 * paid, paid, paid)
    assert totals.spent_usd == pytest.approx(cost, rel=1e-9)
    assert totals.saved_usd == pytest.approx(cost, rel=1e-9)
    assert totals.unpriced_hits == 0
    assert totals.saved_s > 0  # the time the real calls took, from `get`'s miss to `put`
    assert totals.saved_input_tokens == sum(e["usage"]["prompt_tokens"] for e in misses)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (paid, paid)
    health = cache.health()
    assert health.ok and all(t.errors == 0 for t in health.tiers)


async def test_async_program_second_run_makes_no_request(
    dspy_cache: DSPyCache, cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    lm = make_lm(server)
    qa = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        first = await qa.acall(question="Why is the sky blue?")
        paid = server.requests
        second = await qa.acall(question="Why is the sky blue?")
        direct = await lm.acall("hello")
        again = await lm.acall("hello")
    assert second.answer == first.answer
    assert again == direct
    assert server.requests == paid + 1
    assert cache.stats().hits == paid + 1
    assert cache.report().totals.saved_usd > 0


def test_sync_and_async_calls_are_kept_apart_as_dspy_keys_them(
    dspy_cache: DSPyCache, server: FakeOpenAIServer
) -> None:
    # DSPy names the async door in the key (`_fn_identifier`): we keep its keys as they are.
    lm = make_lm(server)
    lm("one question")
    asyncio.run(lm.acall("one question"))
    assert server.requests == 2
    lm("one question")
    asyncio.run(lm.acall("one question"))
    assert server.requests == 2


# -- the LiteLLM engine: its response types come back as the same types ----------------------
@pytest.mark.parametrize("model_type", ["chat", "responses"])
def test_litellm_engine_values_round_trip_as_their_types(
    model_type: str, dspy_cache: DSPyCache, cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    lm = make_lm(server, engine="litellm", model_type=model_type)
    first = lm("Say something about caches")
    stored = lm.history[-1]["response"]
    assert server.requests == 1
    second = lm("Say something about caches")
    assert server.requests == 1
    assert second == first
    replayed = lm.history[-1]["response"]
    assert type(replayed) is type(stored)
    # LiteLLM's constructors leave out fields that are None (`logprobs`): compare the rest.
    dump = {"exclude": {"usage"}, "exclude_none": True}
    assert replayed.model_dump(**dump) == stored.model_dump(**dump)
    assert getattr(replayed, "cache_hit", False) is True  # marked as DSPy's own cache does
    totals = cache.report().totals
    assert totals.saved_usd == pytest.approx(priced_litellm(stored), rel=1e-9)


def priced_litellm(response: Any) -> float:
    usage = response.usage
    inputs = getattr(usage, "prompt_tokens", None) or usage.input_tokens
    outputs = getattr(usage, "completion_tokens", None) or usage.output_tokens
    return float(inputs * INPUT_PER_MTOK / 1e6 + outputs * OUTPUT_PER_MTOK / 1e6)


def test_a_hit_from_the_protocol_is_described_by_info(
    dspy_cache: DSPyCache, server: FakeOpenAIServer
) -> None:
    request = {"model": f"openai/{MODEL}", "_fn_identifier": "tests.chat"}
    response = litellm.completion(
        model=f"openai/{MODEL}",
        messages=[{"role": "user", "content": "hi"}],
        api_base=server.base_url,
        api_key="x",
    )
    assert dspy_cache.get(request) is None
    dspy_cache.put(request, response)
    hit = dspy_cache.get(request)
    assert type(hit) is type(response) and hit is not response
    assert hit.choices[0].message.content == response.choices[0].message.content
    assert hit.usage == {} and hit.cache_hit is True
    info = llmcache.info(hit)
    assert info is not None and info.hit and info.model == MODEL


# -- what is keyed ---------------------------------------------------------------------------
def test_rollout_id_keeps_samples_apart(dspy_cache: DSPyCache, server: FakeOpenAIServer) -> None:
    lm = make_lm(server, temperature=1.0)
    lm("Pick a number", rollout_id=1)
    lm("Pick a number", rollout_id=2)
    assert server.requests == 2
    lm("Pick a number", rollout_id=1)
    lm("Pick a number", rollout_id=2)
    assert server.requests == 2


def test_api_key_and_base_stay_out_of_the_key(
    dspy_cache: DSPyCache, server: FakeOpenAIServer
) -> None:
    with FakeOpenAIServer() as other:
        make_lm(server)("Where is the answer?")
        lm = dspy.LM(f"openai/{MODEL}", api_base=other.base_url, api_key="another-key")
        lm("Where is the answer?")
        assert other.requests == 0
    assert server.requests == 1
    request = {"model": "m", "messages": [], "api_key": "a", "api_base": "b", "base_url": "c"}
    assert dspy_cache.cache_key(request) == dspy_cache.cache_key({"model": "m", "messages": []})
    assert set(IGNORED_BY_DEFAULT) == {"api_key", "api_base", "base_url"}
    # The ignored list is DSPy's argument: an empty one keys everything.
    assert dspy_cache.cache_key(request, []) != dspy_cache.cache_key(request)


FIELD = st.text(min_size=1, max_size=6).filter(lambda name: name not in IGNORED_BY_DEFAULT)


@settings(max_examples=60, deadline=None)
@given(
    request=st.dictionaries(FIELD, JSON_SCALARS, max_size=4),
    credentials=st.dictionaries(st.sampled_from(IGNORED_BY_DEFAULT), st.text(max_size=8)),
    field=FIELD,
    value=JSON_SCALARS,
)
def test_keys_ignore_credentials_and_nothing_else(
    request: dict[str, Any], credentials: dict[str, str], field: str, value: Any
) -> None:
    ours = DSPyCache(KEYS_CACHE)
    key = ours.cache_key(request)
    assert ours.cache_key({**request, **credentials}) == key
    changed = {**request, field: value}
    same = orjson.dumps(changed, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        request, option=orjson.OPT_SORT_KEYS
    )  # as JSON: True and 1 are different values
    assert (ours.cache_key(changed) == key) == same


def test_keys_follow_dspy_transforms_and_unkeyable_requests_are_misses(
    dspy_cache: DSPyCache,
) -> None:
    import pydantic

    class Answer(pydantic.BaseModel):
        text: str

    class Other(pydantic.BaseModel):
        number: int

    def tool() -> None:
        """A tool."""

    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    schema = dspy_cache.cache_key({**base, "response_format": Answer})
    assert schema != dspy_cache.cache_key({**base, "response_format": Other})
    assert dspy_cache.cache_key({**base, "extra": {"format": Answer(text="a")}}) != (
        dspy_cache.cache_key({**base, "extra": {"format": Answer(text="b")}})
    )
    assert dspy_cache.cache_key({**base, "tool": tool}) == dspy_cache.cache_key(
        {**base, "tool": tool}
    )
    assert dspy_cache.cache_key({**base, "tool": len})  # a builtin has no source: its name
    unkeyable = {**base, "stop": object()}
    assert dspy_cache.get(unkeyable) is None  # a miss, never an exception
    dspy_cache.put(unkeyable, {"answer": 1})  # not stored, never an exception
    assert dspy_cache.get(unkeyable) is None


# -- values ----------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=st.dictionaries(st.sampled_from([MARK, "a", "data"]), JSON, max_size=3) | JSON)
def test_plain_values_read_back_exactly(value: Any) -> None:
    assert decode(encode(value)) == value


def test_values_round_trip_through_the_cache(dspy_cache: DSPyCache) -> None:
    values = [
        {MARK: "litellm.ModelResponse", "data": 1},  # a user's dict that looks like ours
        [[0.25, 0.5], [1.0, -2.0]],  # dspy.Embedder's vectors
        "text",
    ]
    for index, value in enumerate(values):
        request = {"_fn_identifier": f"tests.value{index}"}
        dspy_cache.put(request, value)
        assert dspy_cache.get(request) == value


def test_only_known_types_are_rebuilt() -> None:
    assert decode({MARK: "json", "data": {MARK: "x"}}) == {MARK: "x"}
    with pytest.raises(KeyError):
        value_class("builtins.eval")  # never an import by a name read from storage


def test_usage_of_reads_dspy_and_litellm_shapes() -> None:
    native = {
        "response_model": MODEL,
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40, "cache_creation_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }
    assert usage_of(native, f"openai/{MODEL}") == Usage(
        model=MODEL,
        provider="openai",
        input_tokens=100,
        output_tokens=20,
        cache_read_tokens=40,
        reasoning_tokens=5,
    )
    assert usage_of({"usage": {}}, "openai/x") is None
    assert usage_of([1.0, 2.0], "openai/x") is None
    assert usage_of({"usage": {"prompt_tokens": 1}}, None) is None  # no model: unpriced
    assert usage_of({"usage": {"prompt_tokens": 1}}, "bare-model") is None
    assert usage_of({"usage": {"prompt_tokens": 1}}, "openai/x") == Usage(
        model="x", provider="openai", input_tokens=1
    )
    responses_api = {
        "model": MODEL,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "input_tokens_details": {"cached_tokens": 1},
        },
    }
    assert usage_of(responses_api, None) == Usage(
        model=MODEL, input_tokens=3, output_tokens=4, cache_read_tokens=1
    )


# -- tenancy: signed and encrypted per workspace ---------------------------------------------
def test_workspaces_with_different_secrets_on_one_folder_see_nothing_of_each_other(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = f"disk://{tmp_path}/shared"
    answers = []
    for secret in ("secret-of-team-a-0123", "secret-of-team-b-0123", "secret-of-team-a-0123"):
        with llmcache.Cache(workspace="team", secret=secret, tiers=[folder]) as c:
            monkeypatch.setattr(dspy, "cache", DSPyCache(c), raising=False)
            answers.append(make_lm(server)("A shared question"))
    # b did not see a's entry (a request); a's second cache, same secret, did (no request).
    assert server.requests == 2
    assert answers[0] == answers[2]
    stored = b"".join(
        bytes(str(row), "utf-8")
        for db in Path(tmp_path, "shared").rglob("*")
        if db.is_file() and db.suffix in {".db", ".sqlite", ".sqlite3", ""}
        for row in _rows(db)
    )
    assert stored  # the entries are there ...
    assert answers[0][0].encode() not in stored  # ... encrypted
    assert b"A shared question" not in stored


def _rows(path: Path) -> list[Any]:
    try:
        with sqlite3.connect(path) as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            return [row for t in tables for row in db.execute(f"select * from {t}")]
    except sqlite3.DatabaseError:
        return []


# -- fail-open: a tier down never fails the program ------------------------------------------
def test_a_killed_redis_never_fails_the_program(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RedisServer() as redis_server:
        url = f"{redis_server.url}?timeout=0.2&connect_timeout=0.2"
        with llmcache.Cache(
            workspace="down", secret="a-secret-of-16-bytes-or-more", tiers=[url]
        ) as c:
            monkeypatch.setattr(dspy, "cache", DSPyCache(c), raising=False)
            lm = make_lm(server)
            qa = dspy.Predict("question -> answer")
            with dspy.context(lm=lm):
                first = qa(question="Is Redis up?")
                paid = server.requests
                assert qa(question="Is Redis up?").answer == first.answer
                assert server.requests == paid  # served from Redis
                redis_server.kill()
                again = qa(question="Is Redis up?")  # no exception: asked the server again
                other = qa(question="Is Redis still down?")
            assert again.answer == first.answer
            assert other.answer
            assert server.requests > paid
            health = c.health()
            assert not health.ok  # degraded, and says so
            assert health.tiers[-1].errors > 0 and health.tiers[-1].last_error


# -- single-flight ---------------------------------------------------------------------------
def test_identical_concurrent_calls_make_one_request(
    dspy_cache: DSPyCache, cache: llmcache.Cache
) -> None:
    with FakeOpenAIServer(base_latency=1.0) as slow:
        lm = make_lm(slow)
        answers: list[Any] = []

        def ask() -> None:
            answers.append(lm("One question for all"))

        leader = threading.Thread(target=ask)
        leader.start()
        _wait_for(lambda: slow.requests == 1, "the leader's request")
        followers = [threading.Thread(target=ask) for _ in range(4)]
        for thread in (*followers,):
            thread.start()
        for thread in (leader, *followers):
            thread.join(30)
        assert slow.requests == 1
        assert len(answers) == 5 and all(a == answers[0] for a in answers)


def test_a_failed_call_does_not_hold_other_threads(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failed call never reaches `put`: its thread's claim is released by that thread's
    # next `get`, so another thread asking the same does not wait out `lock_wait`.
    with llmcache.Cache(workspace="fails", tiers=["memory"], lock_wait=600) as c:
        monkeypatch.setattr(dspy, "cache", DSPyCache(c), raising=False)
        lm = make_lm(server, num_retries=0)
        server.fail_next(1, status=400)
        with pytest.raises(Exception, match=r"400|[Bb]ad|[Ii]nvalid"):
            lm("This one fails")
        lm("Another question")  # this thread's next call
        other = threading.Thread(target=lambda: lm("This one fails"))
        other.start()
        other.join(60)
        assert not other.is_alive()  # it did not wait for the failed call
        assert server.requests == 3
        assert lm("This one fails")  # stored by the other thread
        assert server.requests == 3


def test_a_waiter_gets_the_leaders_value(dspy_cache: DSPyCache, cache: llmcache.Cache) -> None:
    request = {"model": "openai/m", "_fn_identifier": "tests.flight"}
    assert dspy_cache.get(request) is None  # this thread leads
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(dspy_cache.get(request)))
    misses = dspy_cache.site.counters.memory_misses
    waiter.start()
    # The waiter has looked twice (its get and its claim) and found nothing.
    _wait_for(lambda: dspy_cache.site.counters.memory_misses >= misses + 2, "the waiter")
    dspy_cache.put(request, {"answer": 42})
    waiter.join(30)
    assert got == [{"answer": 42}]


def _wait_for(condition: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.01)


# -- DSPy's other methods --------------------------------------------------------------------
def test_dspy_maintenance_methods(dspy_cache: DSPyCache, tmp_path: Path) -> None:
    request = {"_fn_identifier": "tests.keep"}
    dspy_cache.put(request, {"v": 1})
    dspy_cache.reset_memory_cache()  # a disk tier below: the entry stays, as DSPy's disk does
    assert dspy_cache.get(request) == {"v": 1}
    assert "x" not in dspy_cache
    dspy_cache.clear()
    assert dspy_cache.get(request) is None
    with pytest.raises(NotImplementedError, match="tiers"):
        dspy_cache.save_memory_cache(str(tmp_path / "c.pkl"))
    with pytest.raises(NotImplementedError, match="pickle"):
        dspy_cache.load_memory_cache(str(tmp_path / "c.pkl"), allow_pickle=True)
    import copy

    assert copy.deepcopy(dspy_cache) is dspy_cache and copy.copy(dspy_cache) is dspy_cache
    assert "dspy.cache" in repr(dspy_cache)
    assert isinstance(dspy_cache, dspy.clients.Cache)


def test_reset_memory_cache_forgets_a_memory_only_cache() -> None:
    with llmcache.Cache(workspace="mem", tiers=["memory"]) as c:
        ours = DSPyCache(c)
        ours.put({"q": 1}, {"a": 1})
        ours.reset_memory_cache()
        assert ours.get({"q": 1}) is None


def test_one_site_per_cache_namespace_and_ttl(cache: llmcache.Cache) -> None:
    assert DSPyCache(cache).site is DSPyCache(cache).site
    assert DSPyCache(cache, namespace="other").site is not DSPyCache(cache).site


def test_a_wrong_cache_is_a_one_line_error() -> None:
    with pytest.raises(TypeError, match=r"DSPyCache\(llmcache.Cache"):
        DSPyCache(dspy.clients.Cache(False, True, None))  # type: ignore[arg-type]


# -- DSPy's other cached calls, and llmcache's per-call options --------------------------------
def test_embedder_and_request_cache_functions_are_cached(
    dspy_cache: DSPyCache, server: FakeOpenAIServer
) -> None:
    from dspy.clients.cache import request_cache

    embedder = dspy.Embedder("openai/text-embedding-3-small", api_base=server.base_url, api_key="x")
    first = embedder(["hello", "world"])
    second = embedder(["hello", "world"])
    assert server.requests == 1
    assert first.shape == second.shape and (first == second).all()

    calls: list[int] = []

    @request_cache()
    def double(x: int, label: str = "") -> dict[str, Any]:
        calls.append(x)
        return {"value": 2 * x, "label": label}

    assert double(3, label="a") == double(3, label="a") == {"value": 6, "label": "a"}
    assert double(3, label="b") == {"value": 6, "label": "b"}
    assert calls == [3, 3]


def test_llmcache_options_apply_to_dspy_calls(
    dspy_cache: DSPyCache, server: FakeOpenAIServer
) -> None:
    lm = make_lm(server)
    lm("Options question")
    with llmcache.options(refresh=True):
        lm("Options question")  # asked again, and stored
    assert server.requests == 2
    with llmcache.options(bypass=True):
        lm("Options question")
    assert server.requests == 3
    lm("Options question")
    assert server.requests == 3


def test_litellm_text_and_embedding_responses_read_back_as_their_types() -> None:
    # The loopback server has no /completions: these two are built as LiteLLM builds them.
    from litellm.types.utils import EmbeddingResponse, TextCompletionResponse

    text = TextCompletionResponse(
        model=MODEL,
        choices=[{"text": "hi", "index": 0, "finish_reason": "stop"}],
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    )
    text._hidden_params["response_cost"] = 1.5e-6
    vectors = EmbeddingResponse(
        model="text-embedding-3-small",
        data=[{"embedding": [0.5, 0.25], "index": 0, "object": "embedding"}],
        usage={"prompt_tokens": 2, "total_tokens": 2},
    )
    for value in (text, vectors):
        back = decode(encode(value))
        assert type(back) is type(value)
        assert back.model_dump(mode="json") == value.model_dump(mode="json")
    assert decode(encode(text))._hidden_params["response_cost"] == 1.5e-6
    assert usage_of(text, f"openai/{MODEL}") == Usage(
        model=MODEL, provider="openai", input_tokens=3, output_tokens=1
    )


def test_an_entry_that_no_longer_decodes_is_a_miss(dspy_cache: DSPyCache) -> None:
    request = {"_fn_identifier": "tests.stale"}
    # As if LiteLLM's ModelResponse no longer took the stored fields.
    stale = {MARK: "litellm.ModelResponse", "data": [1]}
    dspy_cache.site.put(dspy_cache._params(request, None), stale, latency_s=0.0)
    assert dspy_cache.site.get(dspy_cache._params(request, None)) == stale  # stored
    assert dspy_cache.get(request) is None  # a miss, never an exception
