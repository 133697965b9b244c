#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run lint, types and tests.
# This is the README's test command, and .ci/run calls it unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real redis-server (and redis-cli, for the cluster tests): the tests start their own.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "== installing redis-server (apt-get)"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # The package starts a system service on 6379; the tests never use it.
fi

# A real headless browser for the dashboard's tests: Debian's chromium and its driver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (apt-get)"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
# Here a missing browser fails the browser tests instead of skipping them.
export LLMCACHE_REQUIRE_BROWSER=1

echo "== installing llmcache with every extra"
python -m pip install -q --disable-pip-version-check -e ".[all,dev]"

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy"
mypy

echo "== pytest, with line coverage of llmcache and the adapters ([tool.coverage.*] in pyproject)"
# Coverage's data and JSON report go to a folder of their own, not into the work tree.
coverage_dir="$(mktemp -d)"
trap 'rm -rf "$coverage_dir"' EXIT
COVERAGE_FILE="$coverage_dir/.coverage" python -m pytest -q -p no:cacheprovider \
  --cov --cov-report=term-missing --cov-report="json:$coverage_dir/coverage.json" "$@"

# Every file at 90% or more; only a run of the whole suite can tell.
if [ "$#" -eq 0 ]; then
  echo "== coverage floor (every file of llmcache/ and adapters/ at 90% of its lines)"
  python scripts/coverage_floor.py "$coverage_dir/coverage.json" --floor 90
else
  echo "== coverage floor not checked: the suite ran with arguments ($*)"
fi
