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

echo "== installing llmcache with every extra"
python -m pip install -q --disable-pip-version-check -e ".[all,dev]"

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy"
mypy

echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
