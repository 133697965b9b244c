"""Hatch build hook: compile the optional C accelerator `llmcache._speedups`.

The extension is one C file (and the header it includes) with no dependency but Python's
headers, so it is compiled with
the compiler and flags Python itself was built with (sysconfig's CC, CFLAGS, CCSHARED and
LDSHARED; CC and LDSHARED in the environment override them, as with setuptools). Then:

  * a wheel gets the built module and a platform tag (cp311-cp311-linux_x86_64 and such);
  * an editable install imports llmcache from the source tree (dev-mode-dirs), so the module
    is put beside `llmcache/__init__.py` there.

A missing or failing compiler is a warning, not a failed install: llmcache then runs its
pure-Python scan, which gives the same keys. LLMCACHE_NO_EXTENSIONS=1 skips the build.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "llmcache/_speedups.c"
#: The headers SOURCE includes: the build's digest covers them too.
HEADERS = ("llmcache/_fresh_copy.h", "llmcache/_memory_hit.h", "llmcache/_xxh3.h")
MODULE = "llmcache/_speedups"
COMPILE_TIMEOUT = 300  # seconds; a compiler that hangs must not hang the install


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # an sdist ships the C source, not a build of it
        if os.environ.get("LLMCACHE_NO_EXTENSIONS") == "1":
            self._warn("LLMCACHE_NO_EXTENSIONS=1: not building llmcache._speedups")
            return
        self._workdir = Path(tempfile.mkdtemp(prefix="llmcache-build-"))
        built = self._workdir / ("_speedups" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
        try:
            _compile(Path(self.root) / SOURCE, built, self._workdir)
        except (OSError, subprocess.SubprocessError, CompileError) as error:
            self._warn(
                f"could not build the C accelerator llmcache._speedups ({error}); "
                f"llmcache will use its pure-Python scan (same keys, a slower cache hit)"
            )
            return
        target = f"{MODULE}{built.name.removeprefix('_speedups')}"
        if version == "editable":
            # Editable installs import the package from the source tree: the module must be
            # there. Replaced atomically, so a running process never maps a half-written file.
            destination = Path(self.root) / target
            staged = destination.with_name(destination.name + ".tmp")
            shutil.copyfile(built, staged)
            os.replace(staged, destination)
        else:
            build_data["force_include"][str(built)] = target
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        workdir = getattr(self, "_workdir", None)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def _warn(self, message: str) -> None:
        # pip shows a build backend's output only with -v; stderr at least reaches logs.
        self.app.display_warning(f"WARNING: {message}")
        print(f"WARNING: {message}", file=sys.stderr)


class CompileError(Exception):
    """The compiler is missing or refused the source."""


def _compile(source: Path, output: Path, workdir: Path) -> None:
    """Build `source` into the extension module `output`, as Python's own build would."""
    config = sysconfig.get_config_var
    cc = os.environ.get("CC") or config("CC")
    ldshared = os.environ.get("LDSHARED") or config("LDSHARED")
    if not cc or not ldshared:
        raise CompileError("this Python does not name a C compiler (sysconfig CC/LDSHARED)")
    if "CC" in os.environ and "LDSHARED" not in os.environ and config("CC"):
        # LDSHARED starts with the compiler Python was built with: link with the chosen one.
        ldshared = ldshared.replace(config("CC"), cc, 1)
    includes = {sysconfig.get_paths()["include"], sysconfig.get_paths()["platinclude"]}
    # What tests/test_speedups.py compares: the source, then each header, in this order.
    digest = hashlib.sha256(
        source.read_bytes() + b"".join((source.parent / Path(h).name).read_bytes() for h in HEADERS)
    ).hexdigest()
    obj = workdir / "_speedups.o"
    _run(
        [
            *shlex.split(cc),
            *shlex.split(config("CFLAGS") or ""),
            *shlex.split(config("CCSHARED") or ""),
            *(f"-I{path}" for path in sorted(includes)),
            f'-DLLMCACHE_SPEEDUPS_SOURCE="{digest}"',
            "-c",
            str(source),
            "-o",
            str(obj),
        ]
    )
    _run([*shlex.split(ldshared), str(obj), "-o", str(output)])


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
        )
    except FileNotFoundError as error:
        raise CompileError(f"{command[0]} not found") from error
    if done.returncode != 0:
        raise CompileError(f"{shlex.join(command)} failed: {done.stderr.strip()[-2000:]}")
