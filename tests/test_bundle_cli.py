"""`llmcache export` and `llmcache import`, run as a user runs them (through `main`, in this
process: see tests/test_cli_inprocess.py), and a large bundle streamed in bounded memory."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import Cache
from tests.test_cli_inprocess import llmcache_main

SECRET_A = "cli-secret-of-workspace-a-012345"
SECRET_B = "cli-secret-of-workspace-b-543210"


def cli_cache(folder: Path, workspace: str, secret: str) -> tuple[Cache, list[str], Any]:
    cache = Cache(workspace, secret=secret, tiers=["memory", f"disk://{folder}"])
    computed: list[str] = []

    @cache.cached(namespace="research")
    def ask(question: str) -> str:
        computed.append(question)
        return question.upper()

    return cache, computed, ask


def options(folder: Path, workspace: str, secret: str) -> list[str]:
    return ["--tiers", f"memory,disk://{folder}", "--workspace", workspace, "--secret", secret]


def test_export_then_import(tmp_path: Path) -> None:
    cache, _, ask = cli_cache(tmp_path / "a", "team-a", SECRET_A)
    for question in ("one", "two"):
        ask(question)
    cache.close()
    bundle = tmp_path / "research.llmc"

    exported = llmcache_main(
        "export", "-n", "research", "-o", str(bundle), *options(tmp_path / "a", "team-a", SECRET_A)
    )
    assert exported.code == 0, exported.stderr
    assert "exported 2 entries of namespace 'research'" in exported.stdout
    key = exported.stdout.strip().splitlines()[-1]
    assert key.startswith("llmcb1_") and bundle.exists()

    b_options = options(tmp_path / "b", "team-b", SECRET_B)
    imported = llmcache_main("import", str(bundle), "--key", key, *b_options)
    assert imported.code == 0, imported.stderr
    assert "imported 2 entries" in imported.stdout
    assert "from workspace 'team-a' into namespace 'research' of workspace 'team-b'" in (
        imported.stdout
    )
    again = llmcache_main("import", str(bundle), *b_options, env={"LLMCACHE_BUNDLE_KEY": key})
    assert again.code == 0 and "imported 2 entries" in again.stdout  # idempotent

    cache, computed, ask = cli_cache(tmp_path / "b", "team-b", SECRET_B)
    assert [ask("one"), ask("two")] == ["ONE", "TWO"]
    assert computed == []
    cache.close()


def test_export_with_a_given_key_does_not_print_it(tmp_path: Path) -> None:
    cache, _, ask = cli_cache(tmp_path / "a", "team-a", SECRET_A)
    ask("one")
    cache.close()
    key = llmcache._bundle.format_key(os.urandom(32))
    bundle = tmp_path / "given.llmc"
    run = llmcache_main(
        "export", "-o", str(bundle), "-n", "research", "--key", key,
        *options(tmp_path / "a", "team-a", SECRET_A),
    )  # fmt: skip
    assert run.code == 0 and key not in run.stdout
    imported = llmcache_main(
        "import", str(bundle), "--key", key, *options(tmp_path / "b", "team-b", SECRET_B)
    )
    assert imported.code == 0


def test_left_out_entries_and_costs_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache("team-a", secret=SECRET_A, tiers=["memory", f"disk://{tmp_path / 'a'}"])

    @cache.cached(namespace="research", usage=lambda r: {"model": "m", "cost_usd": 0.25})
    def ask(question: str) -> str:
        return question

    ask("priced")
    with monkeypatch.context() as patched:  # as an llmcache that kept no request digests
        patched.setattr("llmcache._sync._flow.call_fields", lambda call: {})
        ask("digestless")
    cache.close()
    run = llmcache_main(
        "export", "-o", str(tmp_path / "x.llmc"), "-n", "research",
        *options(tmp_path / "a", "team-a", SECRET_A),
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "exported 1 entries" in run.stdout and "cost $0.2500 to make" in run.stdout
    assert "left out 1 entries recorded by an llmcache that did not keep request digests" in (
        run.stdout
    )
    key = run.stdout.strip().splitlines()[-1]
    imported = llmcache_main(
        "import", str(tmp_path / "x.llmc"), "--key", key,
        *options(tmp_path / "b", "team-b", SECRET_B),
    )  # fmt: skip
    assert "imported 1 entries (they cost $0.2500 to make) from" in imported.stdout


def test_an_empty_export_says_what_to_check(tmp_path: Path) -> None:
    run = llmcache_main(
        "export", "-o", str(tmp_path / "e.llmc"), "-n", "nothing-here",
        *options(tmp_path / "a", "team-a", SECRET_A),
    )  # fmt: skip
    assert run.code == 0
    assert "exported 0 entries" in run.stdout
    assert "no live entries in namespace 'nothing-here' of workspace 'team-a'" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{bundle}"], "import needs the bundle's key: pass --key"),
        (["import", "{bundle}", "--key", "nope"], "not a bundle key"),
        (["import", "{bundle}", "--key", "{wrong}"], "the key given does not open"),
        (["import", "{missing}", "--key", "{wrong}"], "cannot read the bundle"),
        (["export", "-n", "research", "-o", "{nofolder}"], "does not exist"),
        (["import", "{bundle}", "--key", "{wrong}", "--tiers", "memory"], "would vanish"),
        (["export", "-n", "bad name!", "-o", "{out}"], "namespace name 'bad name!' is not valid"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    cache, _, ask = cli_cache(tmp_path / "a", "team-a", SECRET_A)
    ask("one")
    summary = cache.export_bundle(tmp_path / "r.llmc", "research")
    cache.close()
    values = {
        "bundle": str(summary.path),
        "missing": str(tmp_path / "missing.llmc"),
        "wrong": llmcache._bundle.format_key(bytes(32)),
        "nofolder": str(tmp_path / "no" / "such" / "x.llmc"),
        "out": str(tmp_path / "out.llmc"),
    }
    argv = [a.format(**values) for a in args]
    given = options(tmp_path / "a", "team-a", SECRET_A)
    if "--tiers" in argv:
        given = given[2:]  # the case's own tiers
    run = llmcache_main(*argv, *given)
    assert run.code == 2
    assert message in run.one_line_failure()


# -- a large bundle: streamed, in bounded memory ---------------------------------------------------
ENTRIES = 5000
VALUE_BYTES = 2000


def test_a_large_bundle_streams_in_bounded_memory(tmp_path: Path) -> None:
    """5,000 entries of 2 KB (incompressible) each: export and import each hold about a
    chunk or two at a time (and about 70 bytes per entry to deduplicate), far less than
    the bundle."""
    cache = Cache("big-a", secret=SECRET_A, tiers=[f"disk://{tmp_path / 'a'}"])

    @cache.cached(namespace="research")
    def ask(i: int) -> str:
        return os.urandom(VALUE_BYTES // 2).hex()

    for i in range(ENTRIES):
        ask(i)
    bundle = tmp_path / "big.llmc"
    gc.collect()
    tracemalloc.start()
    try:
        summary = cache.export_bundle(bundle, "research")
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        importer = Cache("big-b", secret=SECRET_B, tiers=[f"disk://{tmp_path / 'b'}"])
        tracemalloc.reset_peak()
        result = importer.import_bundle(bundle, summary.key)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = bundle.stat().st_size
    assert summary.entries == result.entries == ENTRIES
    assert size > ENTRIES * VALUE_BYTES
    print(
        f"bundle {size:,} B; peak traced memory: export {export_peak:,} B, import {import_peak:,} B"
    )
    assert export_peak < size / 3, (export_peak, size)
    assert import_peak < size / 3, (import_peak, size)

    computed: list[int] = []

    @importer.cached(namespace="research")
    def ask(i: int) -> str:  # the same call site identity as the one above
        computed.append(i)
        return ""

    assert len(ask(0)) == VALUE_BYTES and len(ask(ENTRIES - 1)) == VALUE_BYTES
    assert computed == []
    cache.close()
    importer.close()
